import { readdirSync } from "node:fs";
import {
  create,
  createFileRegistry,
  createRegistry,
  type DescEnum,
  type DescField,
  type DescFile,
  type DescMessage,
  fromBinary,
  type Registry,
  ScalarType,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import { reflect } from "@bufbuild/protobuf/reflect";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import * as wkt from "@bufbuild/protobuf/wkt";
import {
  anyPack,
  DurationSchema,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  TimestampSchema,
} from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { ProductSchema } from "../../gen/commerce/catalog/v1/product_pb.js";
import { OrderEventSchema } from "../../gen/commerce/orders/v1/events_pb.js";
import { createBinaryJsonWriter } from "./binary-json.js";

// Every contract of the mesh, plus the well-known types (and descriptor.proto,
// whose proto2 closed enums and explicit presence take the protobuf-es path).
const genRoot = new URL("../../gen/", import.meta.url);
const files = Object.entries(wkt)
  .filter(([name]) => name.startsWith("file_google_protobuf_"))
  .map(([, file]) => file as DescFile);
for (const path of readdirSync(genRoot, { recursive: true, encoding: "utf8" })) {
  if (!path.endsWith("_pb.ts")) continue;
  const exports = (await import(new URL(path, genRoot).href)) as Record<string, unknown>;
  for (const [name, value] of Object.entries(exports)) {
    if (name.startsWith("file_")) files.push(value as DescFile);
  }
}
const registry = createRegistry(...files);
const messages: DescMessage[] = [];
const collect = (desc: DescMessage) => {
  messages.push(desc);
  for (const nested of desc.nestedMessages) collect(nested);
};
for (const file of files) for (const desc of file.messages) collect(desc);

const write = createBinaryJsonWriter(registry);
const expected = (desc: DescMessage, bytes: Uint8Array, reg: Registry = registry) =>
  JSON.stringify(
    toJson(desc, fromBinary(desc, bytes), { alwaysEmitImplicit: true, registry: reg }),
  );
const outcome = (fn: () => string): string => {
  try {
    return fn();
  } catch (error) {
    return `threw: ${(error as Error).message}`;
  }
};

/** mulberry32: the same contents on every run. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STRINGS = [
  "",
  "a",
  "héllo",
  'quote " and \\ slash',
  "line\nbreak\t\u0001",
  "😀",
  "__proto__",
  "10",
  "2",
];
const DOUBLES = [
  0,
  -0,
  1.5,
  -2.25,
  1e21,
  5e-324,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  0.1,
];
const INT64 = [0n, 1n, -1n, 9007199254740993n, -9223372036854775808n, 9223372036854775807n];
const UINT64 = [0n, 1n, 18446744073709551615n, 9007199254740993n];

function randomScalar(type: ScalarType, rnd: () => number): unknown {
  const pick = <T>(values: readonly T[]) => values[Math.floor(rnd() * values.length)]!;
  switch (type) {
    case ScalarType.STRING:
      return pick(STRINGS);
    case ScalarType.BOOL:
      return rnd() < 0.5;
    case ScalarType.BYTES:
      return new Uint8Array(Math.floor(rnd() * 5)).map(() => Math.floor(rnd() * 256));
    case ScalarType.DOUBLE:
      return pick(DOUBLES);
    case ScalarType.FLOAT:
      return Math.fround(pick(DOUBLES));
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return pick(INT64);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return pick(UINT64);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return pick([0, 1, 4294967295, 123456]);
    default:
      return pick([0, 1, -1, 2147483647, -2147483648]);
  }
}

function randomEnum(desc: DescEnum, rnd: () => number): number {
  // Open enums may carry numbers they do not name.
  if (rnd() < 0.15 && desc.open) return 9999;
  return desc.values[Math.floor(rnd() * desc.values.length)]!.number;
}

function randomMessage(
  desc: DescMessage,
  rnd: () => number,
  depth: number,
): ReturnType<typeof create> {
  switch (desc.typeName) {
    case "google.protobuf.Timestamp":
      return create(TimestampSchema, {
        seconds: BigInt(Math.floor(rnd() * 4e9) - 1e9),
        nanos: [0, 5_000_000, 123_000, 7][Math.floor(rnd() * 4)]!,
      });
    case "google.protobuf.Duration":
      return create(DurationSchema, {
        seconds: BigInt(Math.floor(rnd() * 1e6)),
        nanos: 500_000_000,
      });
    case "google.protobuf.Any":
      return anyPack(TimestampSchema, create(TimestampSchema, { seconds: 1_700_000_000n }));
  }
  const message = create(desc);
  const r = reflect(desc, message);
  for (const field of desc.fields) {
    if (rnd() < 0.25) continue;
    if (field.oneof && r.oneofCase(field.oneof) !== undefined && rnd() < 0.5) continue;
    fill(r, field, rnd, depth);
  }
  return message;
}

function fill(r: ReturnType<typeof reflect>, field: DescField, rnd: () => number, depth: number) {
  const value = (kind: "scalar" | "enum" | "message", f: DescField) =>
    kind === "scalar"
      ? randomScalar(f.scalar!, rnd)
      : kind === "enum"
        ? randomEnum(f.enum!, rnd)
        : reflect(f.message!, randomMessage(f.message!, rnd, depth + 1));
  switch (field.fieldKind) {
    case "scalar":
    case "enum":
      r.set(field, value(field.fieldKind, field));
      return;
    case "message":
      if (depth < 4) r.set(field, value("message", field));
      return;
    case "list": {
      if (field.listKind === "message" && depth >= 4) return;
      const list = r.get(field);
      const n = Math.floor(rnd() * 4);
      for (let i = 0; i < n; i++) list.add(value(field.listKind, field));
      return;
    }
    case "map": {
      if (field.mapKind === "message" && depth >= 4) return;
      const map = r.get(field);
      const n = Math.floor(rnd() * 4);
      for (let i = 0; i < n; i++) {
        const key = randomScalar(field.mapKey, rnd);
        map.set(
          field.mapKey === ScalarType.STRING ? key : field.mapKey === ScalarType.BOOL ? key : key,
          value(field.mapKind, field),
        );
      }
      return;
    }
  }
}

describe("binary JSON writer", () => {
  it("reads the contracts' message types", () => {
    expect(messages.length).toBeGreaterThan(50);
    expect(messages.some((m) => m.typeName === "commerce.catalog.v1.Product")).toBe(true);
  });

  it("writes exactly what toJson + JSON.stringify write, for random contents of every message type", () => {
    const rnd = prng(20261126);
    let compared = 0;
    let unencodable = 0;
    for (const desc of messages) {
      for (let i = 0; i < 25; i++) {
        let bytes: Uint8Array;
        try {
          bytes = toBinary(desc, randomMessage(desc, rnd, 0));
        } catch {
          // descriptor.proto's proto2 messages with a required field left unset.
          unencodable++;
          continue;
        }
        const want = outcome(() => expected(desc, bytes));
        const got = outcome(() => write(desc, bytes));
        if (got !== want)
          expect({ type: desc.typeName, got }).toEqual({ type: desc.typeName, got: want });
        compared++;
      }
    }
    expect(compared + unencodable).toBe(messages.length * 25);
    expect(unencodable).toBeLessThan(compared / 20);
  });

  it("writes a product as the transcoder answered it before", () => {
    const product = create(ProductSchema, {
      id: "p-1",
      name: "Headphones",
      attributes: { color: "black", "10": "numeric-like key", "2": "sorted first" },
      active: true,
      createTime: { seconds: 1_700_000_000n, nanos: 120_000_000 },
    });
    const bytes = toBinary(ProductSchema, product);
    expect(write(ProductSchema, bytes)).toBe(expected(ProductSchema, bytes));
    expect(JSON.parse(write(ProductSchema, bytes))).toMatchObject({
      id: "p-1",
      sku: "",
      attributes: { "2": "sorted first", "10": "numeric-like key", color: "black" },
      createTime: "2023-11-14T22:13:20.120Z",
    });
  });

  it("writes timestamps across the whole range as protobuf-es does (and refuses the same)", () => {
    const rnd = prng(7);
    const seconds = [
      -62_135_596_800n,
      -62_135_596_801n,
      253_402_300_799n,
      253_402_300_800n,
      0n,
      -1n,
      59n,
      951_782_400n /* 2000-02-29 */,
      -2_203_891_200n /* 1900-03-01 */,
      -62_162_035_200n,
    ];
    for (let i = 0; i < 2_000; i++) {
      seconds.push(
        BigInt(Math.floor(-62_135_596_800 + rnd() * (253_402_300_799 + 62_135_596_800))),
      );
    }
    const nanos = [0, 1, 999_999_999, 120_000_000, 123_456_000, -1, 1_000_000_000];
    for (const [i, s] of seconds.entries()) {
      const bytes = toBinary(
        ProductSchema,
        create(ProductSchema, { createTime: { seconds: s, nanos: nanos[i % nanos.length]! } }),
      );
      expect(outcome(() => write(ProductSchema, bytes))).toBe(
        outcome(() => expected(ProductSchema, bytes)),
      );
    }
  });

  // Encodings a protobuf-es writer never produces but a peer may send.
  const product = ProductSchema;
  const field = (name: string) => product.fields.find((f) => f.name === name)!;
  const crafted: [string, (w: BinaryWriter) => void][] = [
    [
      "a repeated scalar field: the last value wins",
      (w) =>
        w
          .tag(field("name").number, WireType.LengthDelimited)
          .string("first")
          .tag(field("name").number, WireType.LengthDelimited)
          .string("second"),
    ],
    [
      "a message field in two occurrences: merged",
      (w) => {
        const ts = field("create_time").number;
        w.tag(ts, WireType.LengthDelimited).bytes(
          toBinary(TimestampSchema, create(TimestampSchema, { seconds: 100n })),
        );
        w.tag(ts, WireType.LengthDelimited).bytes(
          toBinary(TimestampSchema, create(TimestampSchema, { nanos: 5 })),
        );
      },
    ],
    [
      "an unknown field: rendered by protobuf-es",
      (w) =>
        w
          .tag(999, WireType.Varint)
          .int32(7)
          .tag(field("id").number, WireType.LengthDelimited)
          .string("x"),
    ],
    [
      "a map entry without key or value",
      (w) => {
        w.tag(field("attributes").number, WireType.LengthDelimited).bytes(new Uint8Array(0));
        w.tag(field("attributes").number, WireType.LengthDelimited)
          .fork()
          .tag(1, WireType.LengthDelimited)
          .string("k")
          .join();
      },
    ],
    [
      "a map key repeated: the later entry wins, in the first entry's place",
      (w) => {
        const m = field("attributes").number;
        for (const [k, v] of [
          ["b", "1"],
          ["a", "2"],
          ["b", "3"],
        ] as const) {
          w.tag(m, WireType.LengthDelimited)
            .fork()
            .tag(1, WireType.LengthDelimited)
            .string(k)
            .tag(2, WireType.LengthDelimited)
            .string(v)
            .join();
        }
      },
    ],
    [
      "a timestamp out of range: both refuse",
      (w) =>
        w
          .tag(field("create_time").number, WireType.LengthDelimited)
          .bytes(toBinary(TimestampSchema, create(TimestampSchema, { seconds: 253402300800n }))),
    ],
    [
      "a negative nanos: both refuse",
      (w) =>
        w
          .tag(field("create_time").number, WireType.LengthDelimited)
          .bytes(toBinary(TimestampSchema, create(TimestampSchema, { nanos: -1 }))),
    ],
    [
      "invalid UTF-8 in a string",
      (w) =>
        w
          .tag(field("name").number, WireType.LengthDelimited)
          .bytes(new Uint8Array([0x61, 0xff, 0xfe])),
    ],
    [
      "truncated bytes: both refuse",
      (w) =>
        w
          .tag(field("name").number, WireType.LengthDelimited)
          .uint32(10)
          .raw(new Uint8Array([65])),
    ],
  ];
  for (const [name, build] of crafted) {
    it(name, () => {
      const w = new BinaryWriter();
      build(w);
      const bytes = w.finish();
      const want = outcome(() => expected(product, bytes));
      expect(outcome(() => write(product, bytes))).toBe(want);
    });
  }

  it("writes the oneof member set last, and merges a member sent twice in a row", () => {
    const event = OrderEventSchema;
    const no = (name: string) => event.fields.find((f) => f.name === name)!.number;
    const cases: [string, (w: BinaryWriter) => void][] = [
      [
        "placed, then rejected",
        (w) => {
          w.tag(no("placed"), WireType.LengthDelimited).bytes(new Uint8Array(0));
          w.tag(no("rejected"), WireType.LengthDelimited).bytes(new Uint8Array(0));
        },
      ],
      [
        "placed, rejected, placed",
        (w) => {
          w.tag(no("placed"), WireType.LengthDelimited).bytes(new Uint8Array(0));
          w.tag(no("rejected"), WireType.LengthDelimited).bytes(new Uint8Array(0));
          w.tag(no("placed"), WireType.LengthDelimited).bytes(new Uint8Array(0));
        },
      ],
      [
        "placed twice",
        (w) => {
          w.tag(no("placed"), WireType.LengthDelimited).bytes(new Uint8Array(0));
          w.tag(no("placed"), WireType.LengthDelimited).bytes(new Uint8Array(0));
        },
      ],
    ];
    const kinds: string[] = [];
    for (const [, build] of cases) {
      const w = new BinaryWriter().tag(no("order_id"), WireType.LengthDelimited).string("o-1");
      build(w);
      const bytes = w.finish();
      const got = write(event, bytes);
      expect(got).toBe(expected(event, bytes));
      kinds.push(
        Object.keys(JSON.parse(got))
          .filter((k) => ["placed", "rejected"].includes(k))
          .join(),
      );
    }
    expect(kinds).toEqual(["rejected", "placed", "placed"]);
  });

  it("refuses nesting deeper than fromBinary does (recursive type)", () => {
    // No contract contains itself; a throw-away one does.
    const fileProto = create(FileDescriptorProtoSchema, {
      name: "node.proto",
      package: "binaryjson.test",
      syntax: "proto3",
      messageType: [
        {
          name: "Node",
          field: [
            {
              name: "child",
              jsonName: "child",
              number: 1,
              type: FieldDescriptorProto_Type.MESSAGE,
              typeName: ".binaryjson.test.Node",
              label: FieldDescriptorProto_Label.OPTIONAL,
            },
            {
              name: "n",
              jsonName: "n",
              number: 2,
              type: FieldDescriptorProto_Type.INT32,
              label: FieldDescriptorProto_Label.OPTIONAL,
            },
          ],
        },
      ],
    });
    const nodeRegistry = createFileRegistry(fileProto, () => undefined);
    const node = nodeRegistry.getMessage("binaryjson.test.Node")!;
    const writeNode = createBinaryJsonWriter(nodeRegistry);
    const results: string[] = [];
    for (const depth of [98, 99, 100, 101, 150]) {
      let bytes = new BinaryWriter().tag(2, WireType.Varint).int32(depth).finish();
      for (let i = 1; i < depth; i++) {
        bytes = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(bytes).finish();
      }
      const want = outcome(() => expected(node, bytes, nodeRegistry));
      expect(outcome(() => writeNode(node, bytes))).toBe(want);
      results.push(want.startsWith("threw") ? "threw" : "ok");
    }
    expect(results).toEqual(["ok", "ok", "ok", "threw", "threw"]);
  });
});
