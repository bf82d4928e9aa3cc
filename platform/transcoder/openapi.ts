import {
  type DescEnum,
  type DescField,
  type DescMessage,
  type DescMethod,
  getOption,
  ScalarType,
} from "@bufbuild/protobuf";
import { access } from "../../gen/commerce/options/v1/access_pb.js";
import { FieldBehavior, field_behavior } from "../../gen/google/api/field_behavior_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import type { Binding } from "./bindings.js";
import { isTraversable, isWellKnown } from "./message-fields.js";

/**
 * OpenAPI 3.1 from the same bindings the transcoder serves, so the document
 * cannot drift from the routes. Schemas follow the proto3 JSON mapping the
 * transcoder speaks: lowerCamelCase names, 64-bit integers as strings, enums
 * by name, well-known types in their JSON form.
 *
 * Descriptions come from `comments`, keyed by full name ("pkg.Message",
 * "pkg.Message.field", "pkg.Service.Method", "pkg.Enum.VALUE"): the
 * descriptors protoc-gen-es embeds carry no source info, so callers load them
 * from a build-time extract (see source-comments.ts).
 */
export interface OpenApiOptions {
  title: string;
  version: string;
  description?: string;
  servers?: { url: string; description?: string }[];
  comments?: (fullName: string) => string | undefined;
}

type Schema = Record<string, unknown>;

const REF_PREFIX = "#/components/schemas/";
const MAX_QUERY_DEPTH = 3;

export function generateOpenApi(bindings: readonly Binding[], options: OpenApiOptions) {
  const comment = (name: string) => clean(options.comments?.(name));
  const schemas: Record<string, Schema> = {};
  const pending: (DescMessage | DescEnum)[] = [];

  const ref = (desc: DescMessage | DescEnum): Schema => {
    if (!(desc.typeName in schemas)) {
      schemas[desc.typeName] = {};
      pending.push(desc);
    }
    return { $ref: `${REF_PREFIX}${desc.typeName}` };
  };

  const wkt = (message: DescMessage): Schema | undefined => {
    switch (message.typeName) {
      case "google.protobuf.Timestamp":
        return { type: "string", format: "date-time" };
      case "google.protobuf.Duration":
        return { type: "string", pattern: "^-?[0-9]+(\\.[0-9]{1,9})?s$", examples: ["3.5s"] };
      case "google.protobuf.FieldMask":
        return { type: "string", description: "Comma-separated lowerCamelCase field paths." };
      case "google.protobuf.Struct":
        return { type: "object", additionalProperties: true };
      case "google.protobuf.Value":
        return {};
      case "google.protobuf.ListValue":
        return { type: "array", items: {} };
      case "google.protobuf.Empty":
        return { type: "object", additionalProperties: false };
      case "google.protobuf.Any":
        return {
          type: "object",
          properties: { "@type": { type: "string" } },
          required: ["@type"],
          additionalProperties: true,
        };
      case "google.protobuf.NullValue":
        return { type: "null" };
      default:
        if (message.typeName.endsWith("Value") && message.fields.length === 1) {
          const inner = scalarSchema(message.fields[0]!.scalar!);
          return { ...inner, type: [inner.type as string, "null"] };
        }
        return undefined;
    }
  };

  const singleSchema = (field: DescField, kind: "scalar" | "enum" | "message"): Schema => {
    if (kind === "scalar") return scalarSchema(field.scalar!);
    if (kind === "enum") return ref(field.enum!);
    const message = field.message!;
    return (isWellKnown(message) && wkt(message)) || ref(message);
  };

  const fieldSchema = (field: DescField): Schema => {
    switch (field.fieldKind) {
      case "scalar":
      case "enum":
      case "message":
        return singleSchema(field, field.fieldKind);
      case "list":
        return { type: "array", items: singleSchema(field, field.listKind) };
      case "map":
        return {
          type: "object",
          additionalProperties: singleSchema(field, field.mapKind),
        };
    }
  };

  const describeField = (field: DescField, base: Schema): Schema => {
    const out: Schema = { ...base };
    const text = comment(`${field.parent.typeName}.${field.name}`);
    const behaviors = getOption(field, field_behavior);
    if (behaviors.includes(FieldBehavior.OUTPUT_ONLY)) out.readOnly = true;
    if (behaviors.includes(FieldBehavior.INPUT_ONLY)) out.writeOnly = true;
    // A $ref with siblings is allowed in 3.1 (JSON Schema 2020-12).
    if (text) out.description = text;
    return out;
  };

  const buildMessage = (message: DescMessage): Schema => {
    const wellKnown = isWellKnown(message) ? wkt(message) : undefined;
    if (wellKnown) return wellKnown;
    const properties: Record<string, Schema> = {};
    const required: string[] = [];
    for (const field of message.fields) {
      properties[field.jsonName] = describeField(field, fieldSchema(field));
      if (getOption(field, field_behavior).includes(FieldBehavior.REQUIRED)) {
        required.push(field.jsonName);
      }
    }
    const schema: Schema = { type: "object", properties, additionalProperties: false };
    if (required.length > 0) schema.required = required;
    const text = comment(message.typeName);
    if (text) schema.description = text;
    return schema;
  };

  const buildEnum = (desc: DescEnum): Schema => {
    const lines = desc.values
      .map((v) => {
        const text = comment(`${desc.typeName}.${v.name}`);
        return text ? `- \`${v.name}\`: ${text.replace(/\n/g, " ")}` : undefined;
      })
      .filter((l) => l !== undefined);
    const head = comment(desc.typeName);
    const description = [head, ...lines].filter(Boolean).join("\n");
    return {
      type: "string",
      enum: desc.values.map((v) => v.name),
      ...(description ? { description } : {}),
    };
  };

  const statusRef = ref(StatusSchema);
  const paths: Record<string, Record<string, unknown>> = {};
  // OpenAPI forbids two paths that differ only in parameter names; the first
  // binding of a shape names the placeholders for every method on it.
  const byShape = new Map<string, { key: string; names: string[] }>();
  const usedOperationIds = new Set<string>();

  for (const binding of bindings) {
    const { key, names } = openApiPath(binding, byShape);
    paths[key] ??= {};
    const item = paths[key];
    const parameters: Schema[] = [];
    binding.pathVariables.forEach((variable, i) => {
      const placeholder = names[i]!;
      const deep = variable.end === -1;
      const multi = !variable.singleSegment;
      const base = fieldSchema(variable.leaf);
      const fieldText = comment(`${variable.leaf.parent.typeName}.${variable.leaf.name}`);
      const notes = [
        placeholder !== variable.name ? `Sets \`${variable.name}\`.` : undefined,
        multi ? `Pattern \`${binding.template.source}\`; may contain "/".` : undefined,
        fieldText,
      ].filter(Boolean);
      parameters.push({
        name: placeholder,
        in: "path",
        required: true,
        schema: deep || multi ? { type: "string" } : base,
        ...(notes.length ? { description: notes.join(" ") } : {}),
      });
    });
    if (binding.body.kind !== "all") {
      for (const q of queryParameters(binding)) {
        const text = comment(`${q.field.parent.typeName}.${q.field.name}`);
        const schema = fieldSchema(q.field);
        parameters.push({
          name: q.name,
          in: "query",
          required: false,
          schema,
          ...(schema.type === "array" ? { style: "form", explode: true } : {}),
          ...(text ? { description: text } : {}),
        });
      }
    }
    const method = binding.method;
    const operation: Record<string, unknown> = {
      operationId: operationId(binding, usedOperationIds),
      tags: [method.parent.name],
    };
    const methodText = comment(`${method.parent.typeName}.${method.name}`);
    if (methodText) {
      operation.summary = methodText.split("\n")[0]!.replace(/\.$/, "").slice(0, 120);
      operation.description = methodText;
    }
    if (parameters.length > 0) operation.parameters = parameters;
    if (binding.body.kind !== "none") {
      const schema =
        binding.body.kind === "all" ? ref(method.input) : fieldSchema(binding.body.field);
      operation.requestBody = {
        required: binding.body.kind === "all",
        content: { "application/json": { schema } },
      };
    }
    const output = binding.responseField ? fieldSchema(binding.responseField) : ref(method.output);
    const errorResponse = {
      description: "Error: a google.rpc.Status (HTTP status from the gRPC code).",
      content: { "application/json": { schema: statusRef } },
    };
    operation.responses = binding.streaming
      ? {
          "200": {
            description:
              "Server-Sent Events: one `data:` event per message (JSON below), `id:` = sequence when resumable " +
              "(send `Last-Event-ID` to resume), a final `event: end` or `event: error` (Status). " +
              'The same route accepts a WebSocket upgrade: frames `{"result": …}` / `{"error": Status}`.',
            content: {
              // OpenAPI 3.1 cannot type the events themselves (3.2's itemSchema).
              "text/event-stream": { schema: { type: "string" }, "x-event-data-schema": output },
            },
          },
          default: errorResponse,
        }
      : {
          "200": { description: "OK", content: { "application/json": { schema: output } } },
          default: errorResponse,
        };
    applySecurity(operation, method);
    item[binding.httpMethod.toLowerCase()] = operation;
  }

  while (pending.length > 0) {
    const desc = pending.shift()!;
    schemas[desc.typeName] = desc.kind === "enum" ? buildEnum(desc) : buildMessage(desc);
  }

  const sortedSchemas = Object.fromEntries(
    Object.entries(schemas).sort(([a], [b]) => a.localeCompare(b)),
  );
  return {
    openapi: "3.1.0",
    info: {
      title: options.title,
      version: options.version,
      ...(options.description ? { description: options.description } : {}),
    },
    ...(options.servers ? { servers: options.servers } : {}),
    tags: [...new Set(bindings.map((b) => b.method.parent))].map((s) => ({
      name: s.name,
      ...(comment(s.typeName) ? { description: comment(s.typeName) } : {}),
    })),
    paths: customMethodsLast(paths),
    components: {
      schemas: sortedSchemas,
      securitySchemes: {
        bearerAuth: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description: "Access token issued by IdentityService.SignIn / RefreshToken.",
        },
      },
    },
  };
}

/** OpenAPI defines only the standard methods; custom ones ride in an extension. */
const STANDARD = new Set(["get", "put", "post", "delete", "options", "head", "patch", "trace"]);

function customMethodsLast(paths: Record<string, Record<string, unknown>>) {
  for (const item of Object.values(paths)) {
    for (const key of Object.keys(item)) {
      if (STANDARD.has(key) || key.startsWith("x-")) continue;
      const op = item[key];
      delete item[key];
      item["x-custom-methods"] ??= {};
      const custom = item["x-custom-methods"] as Record<string, unknown>;
      custom[key.toUpperCase()] = op;
    }
  }
  return paths;
}

function applySecurity(operation: Record<string, unknown>, method: DescMethod) {
  const policy = getOption(method, access);
  if (policy.public) {
    operation.security = [];
    return;
  }
  operation.security = [{ bearerAuth: [] }];
  if (policy.roles.length > 0) {
    operation["x-required-roles"] = policy.roles;
    const note = `Requires one of the roles: ${policy.roles.join(", ")}.`;
    operation.description = operation.description ? `${operation.description}\n\n${note}` : note;
  }
}

function operationId(binding: Binding, used: Set<string>): string {
  const base = `${binding.method.parent.name}_${binding.method.name}`;
  let id = binding.bindingIndex === 0 ? base : `${base}_${binding.bindingIndex}`;
  let n = 2;
  while (used.has(id)) id = `${base}_${n++}`;
  used.add(id);
  return id;
}

function openApiPath(
  binding: Binding,
  byShape: Map<string, { key: string; names: string[] }>,
): { key: string; names: string[] } {
  const { template } = binding;
  const starts = new Map(binding.pathVariables.map((v, i) => [v.start, i]));
  const shapeParts: string[] = [];
  const keyParts: string[] = [];
  let anonymous = 0;
  let i = 0;
  while (i < template.segments.length) {
    const index = starts.get(i);
    if (index !== undefined) {
      const variable = binding.pathVariables[index]!;
      shapeParts.push(`{${index}:${variable.end === -1 ? "**" : variable.end - variable.start}}`);
      keyParts.push(`{${variable.name}}`);
      i = variable.end === -1 ? template.segments.length : variable.end;
      continue;
    }
    const seg = template.segments[i]!;
    if (seg.kind === "literal") {
      shapeParts.push(seg.value);
      keyParts.push(seg.value);
    } else {
      // An unnamed wildcard has no field; OpenAPI still needs a name for it.
      shapeParts.push(seg.kind === "deep" ? "**" : "*");
      keyParts.push(`{_wildcard${++anonymous}}`);
    }
    i++;
  }
  const verb = template.verb ? `:${template.verb}` : "";
  const shape = `/${shapeParts.join("/")}${verb}`;
  const seen = byShape.get(shape);
  if (seen) return seen;
  const result = {
    key: `/${keyParts.join("/")}${verb}`,
    names: binding.pathVariables.map((v) => v.name),
  };
  byShape.set(shape, result);
  return result;
}

interface QueryParameter {
  name: string;
  field: DescField;
}

/** Every field a query parameter can set: not bound, scalar-like, maybe nested. */
export function queryParameters(binding: Binding): QueryParameter[] {
  const out: QueryParameter[] = [];
  const visit = (
    message: DescMessage,
    prefix: string,
    protoPrefix: string,
    depth: number,
    seen: Set<string>,
  ) => {
    for (const field of message.fields) {
      const protoPath = protoPrefix ? `${protoPrefix}.${field.name}` : field.name;
      if (binding.bound.has(protoPath)) continue;
      const name = prefix ? `${prefix}.${field.jsonName}` : field.jsonName;
      if (field.fieldKind === "map") continue;
      if (field.fieldKind === "list" && field.listKind === "message") continue;
      if (isTraversable(field)) {
        if (depth < MAX_QUERY_DEPTH && !seen.has(field.message.typeName)) {
          visit(
            field.message,
            name,
            protoPath,
            depth + 1,
            new Set([...seen, field.message.typeName]),
          );
        }
        continue;
      }
      if (field.fieldKind === "message" && !queryableWkt(field.message)) continue;
      out.push({ name, field });
    }
  };
  visit(binding.method.input, "", "", 1, new Set([binding.method.input.typeName]));
  return out;
}

function queryableWkt(message: DescMessage): boolean {
  return (
    message.typeName === "google.protobuf.Timestamp" ||
    message.typeName === "google.protobuf.Duration" ||
    message.typeName === "google.protobuf.FieldMask" ||
    (message.typeName.endsWith("Value") &&
      message.fields.length === 1 &&
      message.fields[0]!.fieldKind === "scalar")
  );
}

function scalarSchema(scalar: ScalarType): Schema {
  switch (scalar) {
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
    case ScalarType.DOUBLE:
      return { type: "number", format: "double" };
    case ScalarType.FLOAT:
      return { type: "number", format: "float" };
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return { type: "integer", format: "int32" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", format: "int64", minimum: 0, maximum: 4294967295 };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return { type: "string", format: "uint64", pattern: "^[0-9]+$" };
    default:
      // int64, sint64, sfixed64: strings in proto3 JSON.
      return { type: "string", format: "int64", pattern: "^-?[0-9]+$" };
  }
}

function clean(text: string | undefined): string | undefined {
  if (!text) return undefined;
  const trimmed = text
    .split("\n")
    .map((l) => l.replace(/^ /, "").trimEnd())
    .join("\n")
    .trim();
  return trimmed || undefined;
}
