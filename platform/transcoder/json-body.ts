import { isUtf8 } from "node:buffer";
import { type DescField, type DescMessage, fromJson } from "@bufbuild/protobuf";
import { isFieldError } from "@bufbuild/protobuf/reflect";
import { Code } from "@connectrpc/connect";
import { fieldByName, isWellKnown } from "./message-fields.js";
import { badRequest, HttpError } from "./status.js";

/**
 * Request bodies: bytes → JSON value, with the checks JSON.parse does not do.
 * One pass over the bytes rejects nesting deeper than the limit (before any
 * recursive code sees it) and notices integer literals too long for a double;
 * only then is a reviver used, turning those literals into strings so int64
 * fields keep every digit (proto3 JSON accepts integers as strings).
 */

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function scan(bytes: Uint8Array, maxDepth: number): { tooDeep: boolean; longIntegers: boolean } {
  let depth = 0;
  let inString = false;
  let digits = 0;
  let longIntegers = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
      continue;
    }
    if (b >= 0x30 && b <= 0x39) {
      if (++digits >= 16) longIntegers = true;
      continue;
    }
    digits = 0;
    if (b === QUOTE) inString = true;
    else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      if (++depth > maxDepth) return { tooDeep: true, longIntegers };
    } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) depth--;
  }
  return { tooDeep: false, longIntegers };
}

const INTEGER = /^-?\d+$/;

function keepLongIntegers(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    const source = context?.source;
    if (source !== undefined && INTEGER.test(source)) return source;
  }
  return value;
}

export function parseJsonBody(bytes: Uint8Array, maxDepth: number): unknown {
  if (bytes.length === 0) return undefined;
  if (!isUtf8(bytes)) throw badRequest("request body is not valid UTF-8");
  const { tooDeep, longIntegers } = scan(bytes, maxDepth);
  if (tooDeep) {
    throw new HttpError(
      400,
      Code.InvalidArgument,
      `request body nests deeper than ${maxDepth} levels`,
    );
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  try {
    // The reviver's third argument (source text access) is in V8 since 11.4.
    return longIntegers
      ? JSON.parse(text, keepLongIntegers as (key: string, value: unknown) => unknown)
      : JSON.parse(text);
  } catch (error) {
    throw badRequest(`request body is not valid JSON: ${truncate((error as Error).message)}`);
  }
}

export function truncate(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function reason(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    if (isFieldError(cause)) return truncate(cause.message);
    return truncate(error.message.replace(/^cannot decode .*? from JSON: /, ""));
  }
  return "invalid value";
}

/**
 * Decodes the assembled request JSON. On failure (the slow path) it finds the
 * first offending field by walking the JSON along the schema, so the 400
 * names a path such as `item.count` or `items[2].size.width`.
 */
export function decodeRequestJson<T extends DescMessage>(schema: T, json: unknown) {
  try {
    return fromJson(schema, json as never);
  } catch (error) {
    const { field, description } = locate(schema, json, "", error);
    throw new HttpError(
      400,
      Code.InvalidArgument,
      `invalid request: ${field || "body"}: ${description}`,
      {
        violations: [{ field, description }],
        cause: error,
      },
    );
  }
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function fails(schema: DescMessage, json: unknown): unknown {
  try {
    fromJson(schema, json as never);
    return undefined;
  } catch (error) {
    return error ?? new Error("invalid");
  }
}

function locate(
  schema: DescMessage,
  json: unknown,
  path: string,
  original: unknown,
): { field: string; description: string } {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return { field: path, description: `expected a JSON object for ${schema.typeName}` };
  }
  if (isWellKnown(schema)) return { field: path, description: reason(original) };
  const record = json as Record<string, unknown>;
  const keys = Object.keys(record);
  for (const key of keys) {
    if (!fieldByName(schema, key)) return { field: join(path, key), description: "unknown field" };
  }
  for (const key of keys) {
    const field = fieldByName(schema, key)!;
    const value = record[key];
    const here = join(path, key);
    const nested = nestedMessage(field);
    if (nested && value !== null && typeof value === "object") {
      if (field.fieldKind === "message" && !Array.isArray(value)) {
        const error = fails(nested, value);
        if (error) return locate(nested, value, here, error);
        continue;
      }
      if (field.fieldKind === "list" && Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const error = fails(nested, value[i]);
          if (error) return locate(nested, value[i], `${here}[${i}]`, error);
        }
        continue;
      }
      if (field.fieldKind === "map" && !Array.isArray(value)) {
        for (const [k, v] of Object.entries(value)) {
          const error = fails(nested, v);
          if (error) return locate(nested, v, `${here}[${JSON.stringify(k)}]`, error);
        }
      }
    }
    const error = fails(schema, { [key]: value });
    if (error) return { field: here, description: reason(error) };
  }
  return { field: path, description: reason(original) };
}

function nestedMessage(field: DescField): DescMessage | undefined {
  let message: DescMessage | undefined;
  if (field.fieldKind === "message") message = field.message;
  else if (field.fieldKind === "list" && field.listKind === "message") message = field.message;
  else if (field.fieldKind === "map" && field.mapKind === "message") message = field.message;
  return message && !isWellKnown(message) ? message : undefined;
}
