import {
  type DescEnum,
  type DescField,
  type DescMessage,
  fromBinary,
  type Registry,
  ScalarType,
  toJson,
} from "@bufbuild/protobuf";
import { BinaryReader, base64Encode, WireType } from "@bufbuild/protobuf/wire";

/**
 * Proto3 JSON text straight from a message's binary encoding, with implicit
 * values emitted: the same text as
 * `JSON.stringify(toJson(desc, fromBinary(desc, bytes), { alwaysEmitImplicit: true, registry }))`
 * without building the message, the JSON object tree, or stringifying it.
 *
 * Why: answering a REST call from the upstream's binary answer went through
 * all three; in the edge they cost ~10 µs per call of the ~75 the edge spends
 * (bench/edge-rest.ts), because the shared, reflective writers are
 * megamorphic across the mesh's message types.
 *
 * Exactness is the rule: every value is read with the reader call
 * fromBinary uses for that field (wire types are not second-guessed, the
 * recursion limit of 100 applies), later scalars and oneof members win, map
 * keys keep JavaScript's key order as the object that toJson builds would.
 * What this does not reproduce itself goes through protobuf-es: well-known
 * types with a special JSON form other than Timestamp, groups and closed
 * enums (for that message), and — for the whole answer — unknown fields
 * (toJson may render them as extensions from the registry) and a message
 * field that occurs twice (the occurrences merge). binary-json.test.ts
 * compares both on every message type of the contracts with random contents.
 */
export type BinaryJsonWriter = (desc: DescMessage, bytes: Uint8Array) => string;

const RECURSION_LIMIT = 100;

/** Thrown inside a compiled reader to hand the message to protobuf-es. */
class UseLibrary extends Error {
  override readonly name = "UseLibrary";
}
const USE_LIBRARY = new UseLibrary("not handled by the binary JSON writer");

interface Ctx {
  depth: number;
  /** The bytes the reader reads (BinaryReader keeps its buffer private). */
  buf: Uint8Array;
}

type MessageWriter = (reader: BinaryReader, length: number, ctx: Ctx) => string;

export function createBinaryJsonWriter(registry: Registry): BinaryJsonWriter {
  const jsonOptions = { alwaysEmitImplicit: true, registry } as const;
  const compiled = new Map<DescMessage, MessageWriter | null>();

  const viaLibrary = (desc: DescMessage, bytes: Uint8Array): string =>
    JSON.stringify(toJson(desc, fromBinary(desc, bytes), jsonOptions));

  /** A message this writer renders field by field, or null for protobuf-es. */
  const writerFor = (desc: DescMessage): MessageWriter | null => {
    const known = compiled.get(desc);
    if (known !== undefined) return known;
    // Field types are looked up when their bytes arrive, so a recursive
    // type needs no placeholder while it compiles.
    const write = !handled(desc)
      ? null
      : desc.typeName === "google.protobuf.Timestamp"
        ? timestampWriter()
        : compileMessage(desc);
    compiled.set(desc, write);
    return write;
  };

  /** Renders the length-delimited message at the reader's position. */
  const messageText = (desc: DescMessage, reader: BinaryReader, ctx: Ctx): string => {
    const write = writerFor(desc);
    if (write !== null) return write(reader, reader.uint32(), ctx);
    // Same recursion budget as fromBinary's: the child starts one deeper.
    if (ctx.depth >= RECURSION_LIMIT) throw recursionError(desc);
    return viaLibrary(desc, reader.bytes());
  };

  /** What toJson writes for a message with no field set (a map entry without value). */
  const emptyText = (desc: DescMessage, ctx: Ctx): string => {
    const write = writerFor(desc);
    return write === null
      ? viaLibrary(desc, EMPTY_BYTES)
      : write(new BinaryReader(EMPTY_BYTES), 0, { depth: ctx.depth, buf: EMPTY_BYTES });
  };

  function compileMessage(desc: DescMessage): MessageWriter {
    const fields = desc.fields.concat().sort((a, b) => a.number - b.number);
    const slotOf = new Map(fields.map((field, slot) => [field.number, slot]));
    const oneofs = desc.oneofs;
    const oneofOf = fields.map((field) => (field.oneof ? oneofs.indexOf(field.oneof) : -1));
    const readers = fields.map((field, slot) => compileFieldReader(field, slot, oneofOf[slot]!));
    const emitters = fields.map((field, slot) => compileFieldEmitter(field, slot, oneofOf[slot]!));
    const descString = String(desc);
    return (reader, length, ctx) => {
      if (++ctx.depth > RECURSION_LIMIT) throw recursionError(descString);
      const slots: unknown[] = new Array(fields.length);
      // Per oneof: the slot of the member set last (-1: none).
      const cases: number[] = oneofs.length === 0 ? EMPTY : new Array(oneofs.length).fill(-1);
      const end = reader.pos + length;
      while (reader.pos < end) {
        const [fieldNo, wireType] = reader.tag();
        const slot = slotOf.get(fieldNo);
        if (slot === undefined) throw USE_LIBRARY;
        readers[slot]!(reader, wireType, slots, cases, ctx);
      }
      let out = "{";
      for (let i = 0; i < emitters.length; i++) {
        const part = emitters[i]!(slots, cases, ctx);
        if (part === undefined) continue;
        out += out.length === 1 ? part : `,${part}`;
      }
      ctx.depth--;
      return `${out}}`;
    };
  }

  type FieldReader = (
    reader: BinaryReader,
    wireType: WireType,
    slots: unknown[],
    cases: number[],
    ctx: Ctx,
  ) => void;

  function compileFieldReader(field: DescField, slot: number, oneof: number): FieldReader {
    switch (field.fieldKind) {
      case "scalar":
      case "enum": {
        const { read } = valueCodec(field, field.fieldKind);
        if (oneof >= 0) {
          return (reader, _w, slots, cases) => {
            slots[slot] = read(reader);
            cases[oneof] = slot;
          };
        }
        return (reader, _w, slots) => {
          slots[slot] = read(reader);
        };
      }
      case "message": {
        const desc = field.message;
        // Rendered at once, on the same reader. A second occurrence would
        // merge into the first; protobuf-es does that (rare: no protobuf-es
        // or Go writer splits a message).
        return (reader, _w, slots, cases, ctx) => {
          if (oneof >= 0) {
            if (cases[oneof] === slot) throw USE_LIBRARY;
            cases[oneof] = slot;
          } else if (slots[slot] !== undefined) throw USE_LIBRARY;
          slots[slot] = messageText(desc, reader, ctx);
        };
      }
      case "list": {
        if (field.listKind === "message") {
          const desc = field.message;
          return (reader, _w, slots, _c, ctx) => {
            const text = messageText(desc, reader, ctx);
            const items = slots[slot] as string[] | undefined;
            if (items === undefined) slots[slot] = [text];
            else items.push(text);
          };
        }
        const { read } = valueCodec(field, field.listKind);
        const packedPossible =
          field.listKind === "enum" ||
          (field.scalar !== ScalarType.STRING && field.scalar !== ScalarType.BYTES);
        return (reader, wireType, slots) => {
          let items = slots[slot] as unknown[] | undefined;
          if (items === undefined) {
            items = [];
            slots[slot] = items;
          }
          if (wireType === WireType.LengthDelimited && packedPossible) {
            const end = reader.uint32() + reader.pos;
            while (reader.pos < end) items.push(read(reader));
          } else items.push(read(reader));
        };
      }
      case "map": {
        const readKey = scalarReader(field.mapKey, field.utf8Validation);
        const valueDesc = field.mapKind === "message" ? field.message : undefined;
        const readValue =
          field.mapKind === "message" ? undefined : valueCodec(field, field.mapKind).read;
        return (reader, _w, slots, _c, ctx) => {
          let record = slots[slot] as Record<string, unknown> | undefined;
          if (record === undefined) {
            // No prototype: a "__proto__" key is an ordinary key, as setOwn makes it.
            record = Object.create(null) as Record<string, unknown>;
            slots[slot] = record;
          }
          const end = reader.uint32() + reader.pos;
          let key: unknown;
          let value: unknown;
          while (reader.pos < end) {
            const [fieldNo, wireType] = reader.tag();
            if (fieldNo === 1) key = readKey(reader);
            else if (fieldNo === 2) {
              if (readValue) value = readValue(reader);
              else {
                // A repeated value field within one entry would merge: protobuf-es.
                if (value !== undefined) throw USE_LIBRARY;
                value = messageText(valueDesc!, reader, ctx);
              }
            } else reader.skip(wireType, fieldNo, RECURSION_LIMIT - ctx.depth);
          }
          record[key === undefined ? zeroKey(field.mapKey) : String(key)] =
            value === undefined ? MISSING : value;
        };
      }
    }
  }

  type FieldEmitter = (slots: unknown[], cases: number[], ctx: Ctx) => string | undefined;

  function compileFieldEmitter(field: DescField, slot: number, oneof: number): FieldEmitter {
    const key = `${JSON.stringify(field.jsonName)}:`;
    switch (field.fieldKind) {
      case "scalar":
      case "enum": {
        const { format, zero } = valueCodec(field, field.fieldKind);
        if (oneof >= 0) {
          return (slots, cases) => (cases[oneof] === slot ? key + format(slots[slot]) : undefined);
        }
        if (field.presence !== IMPLICIT) {
          return (slots) => (slots[slot] === undefined ? undefined : key + format(slots[slot]));
        }
        return (slots) => key + (slots[slot] === undefined ? zero : format(slots[slot]));
      }
      case "message":
        return (slots, cases) => {
          if (oneof >= 0 && cases[oneof] !== slot) return undefined;
          const text = slots[slot] as string | undefined;
          return text === undefined ? undefined : key + text;
        };
      case "list": {
        const item =
          field.listKind === "message"
            ? (text: unknown) => text as string
            : valueCodec(field, field.listKind).format;
        return (slots) => {
          const items = slots[slot] as unknown[] | undefined;
          if (items === undefined) return `${key}[]`;
          let out = "[";
          for (let i = 0; i < items.length; i++) {
            out += i === 0 ? item(items[i]) : `,${item(items[i])}`;
          }
          return `${key + out}]`;
        };
      }
      case "map": {
        let value: (raw: unknown, ctx: Ctx) => string;
        if (field.mapKind === "message") {
          const desc = field.message;
          value = (raw, ctx) => (raw === MISSING ? emptyText(desc, ctx) : (raw as string));
        } else {
          const { format, zero } = valueCodec(field, field.mapKind);
          value = (raw) => (raw === MISSING ? zero : format(raw));
        }
        return (slots, _c, ctx) => {
          const record = slots[slot] as Record<string, unknown> | undefined;
          if (record === undefined) return `${key}{}`;
          let out = "{";
          // Object.keys: integer-like keys first, as in the object toJson builds.
          for (const k of Object.keys(record)) {
            const entry = `${jsonString(k)}:${value(record[k], ctx)}`;
            out += out.length === 1 ? entry : `,${entry}`;
          }
          return `${key + out}}`;
        };
      }
    }
  }

  return (desc, bytes) => {
    const write = writerFor(desc);
    if (write === null) return viaLibrary(desc, bytes);
    try {
      return write(new BinaryReader(bytes), bytes.byteLength, { depth: 0, buf: bytes });
    } catch (error) {
      if (error === USE_LIBRARY) return viaLibrary(desc, bytes);
      throw error;
    }
  };
}

// google.protobuf.FeatureSet.FieldPresence values
const IMPLICIT = 2;
const LEGACY_REQUIRED = 3;
const EMPTY: number[] = [];
const EMPTY_BYTES = new Uint8Array(0);
const MISSING = Symbol("missing map value");

/**
 * Whether this writer renders the message's own fields; a message field whose
 * type it does not handle is rendered through protobuf-es on its own.
 */
function handled(desc: DescMessage): boolean {
  if (desc.typeName === "google.protobuf.Timestamp") return true;
  if (desc.typeName.startsWith("google.protobuf.") && hasSpecialJson(desc)) return false;
  for (const field of desc.fields) {
    if ("delimitedEncoding" in field && field.delimitedEncoding) return false;
    // toJson refuses a message without its required fields.
    if (field.presence === LEGACY_REQUIRED) return false;
    if (field.enum && !field.enum.open) return false;
  }
  return true;
}

function hasSpecialJson(desc: DescMessage): boolean {
  switch (desc.typeName) {
    case "google.protobuf.Any":
    case "google.protobuf.Duration":
    case "google.protobuf.FieldMask":
    case "google.protobuf.Struct":
    case "google.protobuf.Value":
    case "google.protobuf.ListValue":
    case "google.protobuf.DoubleValue":
    case "google.protobuf.FloatValue":
    case "google.protobuf.Int64Value":
    case "google.protobuf.UInt64Value":
    case "google.protobuf.Int32Value":
    case "google.protobuf.UInt32Value":
    case "google.protobuf.BoolValue":
    case "google.protobuf.StringValue":
    case "google.protobuf.BytesValue":
      return true;
    default:
      return false;
  }
}

function recursionError(desc: DescMessage | string): Error {
  return new Error(
    `cannot decode ${String(desc)} from binary: maximum recursion depth of ${RECURSION_LIMIT} reached`,
  );
}

/** How one scalar or enum value of a field (or of its list items, map values) is read and written. */
interface ValueCodec {
  read(reader: BinaryReader): unknown;
  format(value: unknown): string;
  /** The JSON of the zero value. */
  zero: string;
}

function valueCodec(field: DescField, kind: "scalar" | "enum"): ValueCodec {
  if (kind === "enum") {
    const format = enumFormatter(field.enum!);
    return { read: (r) => r.int32(), format, zero: format(field.enum!.values[0]!.number) };
  }
  const scalar = field.scalar!;
  const format = scalarFormatter(scalar);
  return {
    read: scalarReader(scalar, field.utf8Validation),
    format,
    zero: format(scalarZero(scalar)),
  };
}

function scalarReader(type: ScalarType, utf8Validation: boolean): (r: BinaryReader) => unknown {
  switch (type) {
    case ScalarType.STRING:
      return (r) => r.string(utf8Validation);
    case ScalarType.BOOL:
      return (r) => r.bool();
    case ScalarType.DOUBLE:
      return (r) => r.double();
    case ScalarType.FLOAT:
      return (r) => r.float();
    case ScalarType.INT32:
      return (r) => r.int32();
    case ScalarType.INT64:
      return (r) => r.int64();
    case ScalarType.UINT64:
      return (r) => r.uint64();
    case ScalarType.FIXED64:
      return (r) => r.fixed64();
    case ScalarType.BYTES:
      return (r) => r.bytes();
    case ScalarType.FIXED32:
      return (r) => r.fixed32();
    case ScalarType.SFIXED32:
      return (r) => r.sfixed32();
    case ScalarType.SFIXED64:
      return (r) => r.sfixed64();
    case ScalarType.SINT64:
      return (r) => r.sint64();
    case ScalarType.UINT32:
      return (r) => r.uint32();
    case ScalarType.SINT32:
      return (r) => r.sint32();
  }
}

function scalarZero(type: ScalarType): unknown {
  switch (type) {
    case ScalarType.STRING:
      return "";
    case ScalarType.BOOL:
      return false;
    case ScalarType.BYTES:
      return EMPTY_BYTES;
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
    case ScalarType.SINT64:
      return 0n;
    default:
      return 0;
  }
}

/** A map key as the object key fromBinary gives a missing key. */
function zeroKey(type: ScalarType): string {
  return String(scalarZero(type));
}

function scalarFormatter(type: ScalarType): (value: unknown) => string {
  switch (type) {
    case ScalarType.STRING:
      return (value) => jsonString(value as string);
    case ScalarType.BOOL:
      return (value) => (value ? "true" : "false");
    case ScalarType.BYTES:
      return (value) => `"${base64Encode(value as Uint8Array)}"`;
    case ScalarType.FLOAT:
    case ScalarType.DOUBLE:
      return (value) => {
        const n = value as number;
        if (Number.isNaN(n)) return '"NaN"';
        if (n === Number.POSITIVE_INFINITY) return '"Infinity"';
        if (n === Number.NEGATIVE_INFINITY) return '"-Infinity"';
        return JSON.stringify(n);
      };
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
    case ScalarType.SINT64:
      return (value) => `"${String(value)}"`;
    default:
      return (value) => String(value);
  }
}

/**
 * A JSON string literal. Most strings need no escape, and quoting them here
 * took this writer from 5.9 to 3.0 µs per product; anything with a quote, a
 * backslash, a control character or a surrogate goes to JSON.stringify (which
 * escapes lone surrogates exactly as it does inside toJson's object).
 */
function jsonString(value: string): string {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) {
      return JSON.stringify(value);
    }
  }
  return `"${value}"`;
}

function enumFormatter(desc: DescEnum): (value: unknown) => string {
  if (desc.typeName === "google.protobuf.NullValue") return () => "null";
  // An unknown value of an open enum is written as its number.
  return (value) => {
    const known = desc.value[value as number];
    return known === undefined ? String(value) : JSON.stringify(known.jsonName);
  };
}

/**
 * google.protobuf.Timestamp as RFC 3339, as protobuf-es writes it (it also
 * words the refusals: out of range, negative or too large nanos). The date is
 * computed with integer arithmetic instead of Date#toISOString + replace, and
 * small seconds are read without a BigInt: two timestamps per product were a
 * third of this writer's time.
 */
function timestampWriter(): MessageWriter {
  const SECONDS_MIN = -62_135_596_800; // 0001-01-01T00:00:00Z
  const SECONDS_MAX = 253_402_300_799; // 9999-12-31T23:59:59Z
  return (reader, length, ctx) => {
    if (++ctx.depth > RECURSION_LIMIT) throw recursionError("google.protobuf.Timestamp");
    let seconds = 0;
    let nanos = 0;
    const end = reader.pos + length;
    while (reader.pos < end) {
      const [fieldNo] = reader.tag();
      if (fieldNo === 1) seconds = readInt64AsNumber(reader, ctx.buf);
      else if (fieldNo === 2) nanos = reader.int32();
      else throw USE_LIBRARY;
    }
    ctx.depth--;
    if (seconds < SECONDS_MIN || seconds > SECONDS_MAX || nanos < 0 || nanos > 999_999_999) {
      throw USE_LIBRARY;
    }
    let fraction = "";
    if (nanos > 0) {
      const digits = (nanos + 1_000_000_000).toString().substring(1);
      if (digits.substring(3) === "000000") fraction = `.${digits.substring(0, 3)}`;
      else if (digits.substring(6) === "000") fraction = `.${digits.substring(0, 6)}`;
      else fraction = `.${digits}`;
    }
    return `"${rfc3339Seconds(seconds)}${fraction}Z"`;
  };
}

/** An int64 varint as a number: small values without a BigInt, others through the reader. */
function readInt64AsNumber(reader: BinaryReader, buf: Uint8Array): number {
  let pos = reader.pos;
  let value = 0;
  let scale = 1;
  // Seven bytes hold 49 bits: every second from year 1 to 9999 (and any non-negative one).
  for (let i = 0; i < 7 && pos < buf.length; i++) {
    const byte = buf[pos++]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      reader.pos = pos;
      return value;
    }
    scale *= 128;
  }
  return Number(reader.int64());
}

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** "YYYY-MM-DDTHH:MM:SS" of Unix seconds (years 1–9999), proleptic Gregorian like Date. */
function rfc3339Seconds(seconds: number): string {
  const days = Math.floor(seconds / 86_400);
  const secondOfDay = seconds - days * 86_400;
  // Civil date from days since 1970-01-01 (eras of 400 years, March-based years).
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor(
    (dayOfEra -
      Math.floor(dayOfEra / 1_460) +
      Math.floor(dayOfEra / 36_524) -
      Math.floor(dayOfEra / 146_096)) /
      365,
  );
  const dayOfYear =
    dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const monthIndex = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * monthIndex + 2) / 5) + 1;
  const month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  const hour = Math.floor(secondOfDay / 3_600);
  const minute = Math.floor((secondOfDay % 3_600) / 60);
  const second = secondOfDay % 60;
  return `${String(year).padStart(4, "0")}-${pad2(month)}-${pad2(day)}T${pad2(hour)}:${pad2(minute)}:${pad2(second)}`;
}
