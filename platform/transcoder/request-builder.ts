import type { DescField, DescMessage } from "@bufbuild/protobuf";
import type { Binding, PathVariable } from "./bindings.js";
import {
  fieldByName,
  hasScalarJsonForm,
  isTraversable,
  jsonFromText,
  TextValueError,
} from "./message-fields.js";
import { badRequest } from "./status.js";

/**
 * Path variables, query parameters and the body are assembled into one
 * proto3 JSON object, which a single fromJson call then decodes with all of
 * its type and range checks. Precedence: the path wins over the body, the
 * body field excludes the query from that field, `body: "*"` excludes the
 * query entirely.
 */

type JsonObject = Record<string, unknown>;

const MAX_QUERY_DEPTH = 8;

function decodeComponent(text: string, what: string): string {
  if (text.indexOf("%") === -1) return text;
  try {
    return decodeURIComponent(text);
  } catch {
    throw badRequest(`${what} is not valid percent-encoded UTF-8`);
  }
}

/** Multi-segment variables keep "%2F" so a decoded "/" stays distinguishable. */
function decodeKeepingSlashes(text: string, what: string): string {
  if (text.indexOf("%") === -1) return text;
  return text
    .split(/%2F/i)
    .map((part) => decodeComponent(part, what))
    .join("%2F");
}

function setAt(root: JsonObject, jsonKeys: string[], protoKeys: string[], value: unknown): void {
  let target = root;
  const last = jsonKeys.length - 1;
  for (let i = 0; i < last; i++) {
    const key = jsonKeys[i]!;
    const alt = protoKeys[i]!;
    if (alt !== key && alt in target) {
      if (!(key in target)) target[key] = target[alt];
      delete target[alt];
    }
    let next = target[key];
    if (next === null || typeof next !== "object" || Array.isArray(next)) {
      next = {};
      target[key] = next;
    }
    target = next as JsonObject;
  }
  const key = jsonKeys[last]!;
  const alt = protoKeys[last]!;
  if (alt !== key) delete target[alt];
  target[key] = value;
}

export function applyPathVariables(
  root: JsonObject,
  variables: PathVariable[],
  segments: string[],
): void {
  for (const variable of variables) {
    const raw = variable.singleSegment
      ? segments[variable.start]!
      : segments.slice(variable.start, variable.end === -1 ? undefined : variable.end).join("/");
    const text = variable.singleSegment
      ? decodeComponent(raw, `path variable ${variable.name}`)
      : decodeKeepingSlashes(raw, `path variable ${variable.name}`);
    let value: unknown;
    try {
      value = jsonFromText(variable.leaf, text);
    } catch (error) {
      if (error instanceof TextValueError) {
        throw badRequest(
          `path variable ${variable.name}: ${error.message}`,
          variable.name,
          error.message,
        );
      }
      throw error;
    }
    setAt(root, variable.jsonKeys, variable.protoKeys, value);
  }
}

/** Parses `a=1&b.c=x&b.c=y` into the request JSON (proto3 JSON names). */
export function applyQuery(root: JsonObject, binding: Binding, query: string): void {
  if (query.length === 0) return;
  if (binding.body.kind === "all") {
    const first = query.split("&").find((p) => p.length > 0);
    if (first === undefined) return;
    const name = decodeComponent(first.split("=")[0]!.replace(/\+/g, " "), "query parameter name");
    throw badRequest(
      `unknown query parameter "${name}": this route takes every field in the body`,
      name,
      "unknown query parameter",
    );
  }
  const input = binding.method.input;
  const seen = new Set<string>();
  let start = 0;
  while (start <= query.length) {
    let end = query.indexOf("&", start);
    if (end === -1) end = query.length;
    if (end > start) {
      const pair = query.slice(start, end);
      const eq = pair.indexOf("=");
      const rawName = eq === -1 ? pair : pair.slice(0, eq);
      const rawValue = eq === -1 ? "" : pair.slice(eq + 1);
      // "+" is a space in application/x-www-form-urlencoded query strings.
      const name = decodeComponent(rawName.replace(/\+/g, " "), "query parameter name");
      const value = decodeComponent(rawValue.replace(/\+/g, " "), `query parameter "${name}"`);
      applyParameter(root, binding, input, name, value, seen);
    }
    start = end + 1;
  }
}

function applyParameter(
  root: JsonObject,
  binding: Binding,
  input: DescMessage,
  name: string,
  value: string,
  seen: Set<string>,
): void {
  const parts = name.split(".");
  if (parts.length > MAX_QUERY_DEPTH) throw unknownParameter(name);
  let message = input;
  let target = root;
  let protoPath = "";
  for (let i = 0; i < parts.length; i++) {
    const field = fieldByName(message, parts[i]!);
    if (!field) throw unknownParameter(name);
    protoPath = protoPath ? `${protoPath}.${field.name}` : field.name;
    if (binding.bound.has(protoPath)) {
      throw badRequest(
        `query parameter "${name}" sets a field bound by the ${
          binding.body.kind === "field" && binding.body.field.name === protoPath.split(".")[0]
            ? "body"
            : "path"
        }`,
        name,
        "field is bound by the path or body",
      );
    }
    const isLast = i === parts.length - 1;
    if (!isLast) {
      if (!isTraversable(field)) throw unknownParameter(name);
      let next = target[field.jsonName];
      if (next === undefined) {
        next = {};
        target[field.jsonName] = next;
      }
      target = next as JsonObject;
      message = field.message;
      continue;
    }
    setLeaf(target, field, name, value, protoPath, seen);
  }
}

function setLeaf(
  target: JsonObject,
  field: DescField,
  name: string,
  value: string,
  protoPath: string,
  seen: Set<string>,
): void {
  if (field.fieldKind === "message" && !hasScalarJsonForm(field.message)) {
    throw badRequest(
      `query parameter "${name}" names a message; set its fields with dotted names`,
      name,
      "not a scalar field",
    );
  }
  let json: unknown;
  try {
    json = jsonFromText(field, value);
  } catch (error) {
    if (error instanceof TextValueError) {
      throw badRequest(`query parameter "${name}": ${error.message}`, name, error.message);
    }
    throw error;
  }
  if (field.fieldKind === "list") {
    const list = target[field.jsonName];
    if (Array.isArray(list)) list.push(json);
    else target[field.jsonName] = [json];
    return;
  }
  if (seen.has(protoPath)) {
    throw badRequest(
      `query parameter "${name}" is repeated but the field is not`,
      name,
      "set more than once",
    );
  }
  seen.add(protoPath);
  target[field.jsonName] = json;
}

function unknownParameter(name: string) {
  return badRequest(`unknown query parameter "${name}"`, name, "unknown query parameter");
}

/**
 * AIP-134: a PATCH without `update_mask` updates the fields present in the
 * body. Nested messages contribute their own keys (`size.width`), except
 * well-known types and maps, which are replaced whole.
 */
export function maskFromBody(message: DescMessage, body: JsonObject, prefix = ""): string[] {
  const paths: string[] = [];
  for (const key of Object.keys(body)) {
    const field = fieldByName(message, key);
    if (!field) continue;
    const path = prefix ? `${prefix}.${field.jsonName}` : field.jsonName;
    const value = body[key];
    if (
      isTraversable(field) &&
      value !== null &&
      typeof value === "object" &&
      !Array.isArray(value) &&
      Object.keys(value).length > 0
    ) {
      paths.push(...maskFromBody(field.message, value as JsonObject, path));
    } else {
      paths.push(path);
    }
  }
  return paths;
}
