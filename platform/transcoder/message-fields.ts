import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";

/** Fields by proto name and by JSON name (both are accepted everywhere). */
const indexes = new WeakMap<DescMessage, Map<string, DescField>>();

export function fieldByName(message: DescMessage, name: string): DescField | undefined {
  let index = indexes.get(message);
  if (!index) {
    index = new Map();
    for (const field of message.fields) {
      index.set(field.name, field);
      index.set(field.jsonName, field);
    }
    indexes.set(message, index);
  }
  return index.get(name);
}

/** Resolves ["item", "id"] against a message; throws naming the bad part. */
export function resolveFieldPath(message: DescMessage, path: readonly string[]): DescField[] {
  const out: DescField[] = [];
  let current: DescMessage | undefined = message;
  for (const name of path) {
    if (!current) throw new Error(`${path.join(".")}: ${out.at(-1)?.name} is not a message`);
    const field: DescField | undefined = current.fields.find((f) => f.name === name);
    if (!field) throw new Error(`${path.join(".")}: ${current.typeName} has no field ${name}`);
    out.push(field);
    current = field.fieldKind === "message" ? field.message : undefined;
  }
  return out;
}

/** Well-known types whose JSON form is a single string (or scalar). */
const STRING_WKT = new Set([
  "google.protobuf.Timestamp",
  "google.protobuf.Duration",
  "google.protobuf.FieldMask",
]);

const WRAPPERS = new Set([
  "google.protobuf.DoubleValue",
  "google.protobuf.FloatValue",
  "google.protobuf.Int64Value",
  "google.protobuf.UInt64Value",
  "google.protobuf.Int32Value",
  "google.protobuf.UInt32Value",
  "google.protobuf.BoolValue",
  "google.protobuf.StringValue",
  "google.protobuf.BytesValue",
]);

export function isWellKnown(message: DescMessage): boolean {
  return message.typeName.startsWith("google.protobuf.");
}

/** Messages a query parameter or path variable can set from text. */
export function hasScalarJsonForm(message: DescMessage): boolean {
  return STRING_WKT.has(message.typeName) || WRAPPERS.has(message.typeName);
}

export function isWrapper(message: DescMessage): boolean {
  return WRAPPERS.has(message.typeName);
}

/** Reason a message field cannot be traversed by a dotted query name, if any. */
export function isTraversable(field: DescField): field is DescField & { fieldKind: "message" } {
  return field.fieldKind === "message" && !isWellKnown(field.message);
}

const BOOL_TEXT: Record<string, boolean> = {
  true: true,
  false: false,
  "1": true,
  "0": false,
  True: true,
  False: false,
  TRUE: true,
  FALSE: false,
};

/** Thrown for text that cannot be a value of the field at all. */
export class TextValueError extends Error {
  override name = "TextValueError";
}

function scalarFromText(scalar: ScalarType, text: string): unknown {
  if (scalar === ScalarType.BOOL) {
    const value = BOOL_TEXT[text];
    if (value === undefined) throw new TextValueError(`expected true or false, got "${text}"`);
    return value;
  }
  // Strings, bytes (base64) and every number type accept a JSON string in
  // proto3 JSON, so fromJson does the range and syntax checks.
  return text;
}

/**
 * The proto3 JSON value for a path variable or query parameter text, so the
 * whole request can be decoded by one fromJson call with its checks.
 */
export function jsonFromText(field: DescField, text: string): unknown {
  switch (field.fieldKind) {
    case "scalar":
      return scalarFromText(field.scalar, text);
    case "enum":
      return /^-?\d+$/.test(text) ? Number(text) : text;
    case "list":
      if (field.listKind === "scalar") return scalarFromText(field.scalar, text);
      if (field.listKind === "enum") return /^-?\d+$/.test(text) ? Number(text) : text;
      throw new TextValueError("a repeated message cannot be set from text");
    case "message": {
      const name = field.message.typeName;
      if (name === "google.protobuf.FieldMask") {
        // Accept proto (snake_case) paths too; the JSON form is lowerCamelCase.
        return text
          .split(",")
          .map((p) => p.trim().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()))
          .join(",");
      }
      if (STRING_WKT.has(name)) return text;
      if (WRAPPERS.has(name)) return scalarFromText(field.message.fields[0]!.scalar!, text);
      throw new TextValueError(`a ${name} cannot be set from text`);
    }
    case "map":
      throw new TextValueError("a map cannot be set from text");
  }
}
