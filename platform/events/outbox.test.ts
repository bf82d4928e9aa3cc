import { fromJson, toBinary } from "@bufbuild/protobuf";
import { StructSchema, TimestampSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { eq } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EventTooLargeError, InvalidEventError } from "./errors.js";
import { defaultEventName, defaultSchemaVersion } from "./message-format.js";
import { appendEvents, createOutbox, outboxChannel, outboxEvent } from "./outbox.js";
import { outbox } from "./tables.js";
import {
  countRows,
  createEventsTestEnv,
  type EventsTestEnv,
  testEvent,
} from "./test-support/harness.js";

let env: EventsTestEnv;

beforeEach(async () => {
  env = await createEventsTestEnv();
});

afterEach(async () => {
  await env.close();
});

describe("outbox append", () => {
  it("refuses an oversized event at append time and writes nothing of that transaction", async () => {
    const big = testEvent("agg-1", { blob: "x".repeat(2 * 1024 * 1024) });
    const error = await env.database.sql
      .begin(async (tx) => {
        await appendEvents(tx, [testEvent("agg-1")], { domain: env.domain });
        await appendEvents(tx, [big], { domain: env.domain });
      })
      .catch((err: unknown) => err);
    expect(error).toBeInstanceOf(EventTooLargeError);
    expect((error as EventTooLargeError).eventType).toBe("google.protobuf.Struct");
    expect((error as EventTooLargeError).limitBytes).toBeLessThan(1024 * 1024);
    expect((error as Error).message).toMatch(/google\.protobuf\.Struct is \d+ bytes, above/);
    expect(await countRows(env.database, "outbox")).toBe(0);

    const small = createOutbox({ domain: env.domain, maxEventBytes: 64 });
    await expect(
      env.database.sql.begin((tx) =>
        small.append(tx, [testEvent("agg-1", { text: "y".repeat(100) })]),
      ),
    ).rejects.toBeInstanceOf(EventTooLargeError);
  });

  it("numbers each aggregate gap-free in commit order under concurrent writers", async () => {
    const writers = env.openDatabase(10);
    await Promise.all(
      Array.from({ length: 10 }, (_, w) =>
        writers.sql.begin(async (tx) => {
          await appendEvents(
            tx,
            [testEvent("hot", { w }), testEvent(`cold-${w}`, { w }), testEvent("hot", { w })],
            { domain: env.domain },
          );
          // Widen the window in which transactions overlap.
          await tx`select pg_sleep(0.01)`;
        }),
      ),
    );
    const hot = await env.database.sql`
      select aggregate_seq::int as seq from outbox where aggregate_id = 'hot' order by position`;
    expect(hot.map((r) => r.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const [cold] = await env.database.sql`
      select count(*)::int as n from outbox where aggregate_id like 'cold-%' and aggregate_seq = 1`;
    expect(cold!.n).toBe(10);
  });

  it("stores subject, type, version, trace context and payload through drizzle's table", async () => {
    const at = new Date("2026-01-02T03:04:05.678Z");
    const [appended] = await env.database.db.transaction((tx) =>
      appendEvents(
        tx,
        [
          outboxEvent(TimestampSchema, timestampFromDate(at), {
            aggregateType: "clock",
            aggregateId: "c-1",
            eventName: "ticked",
            occurredAt: at,
            schemaVersion: 3,
          }),
        ],
        { domain: env.domain },
      ),
    );
    const [row] = await env.database.db
      .select()
      .from(outbox)
      .where(eq(outbox.eventId, appended!.eventId));
    expect(row).toMatchObject({
      subject: `${env.domain}.clock.ticked`,
      eventType: "google.protobuf.Timestamp",
      schemaVersion: 3,
      aggregateType: "clock",
      aggregateId: "c-1",
      aggregateSeq: 1,
      sentAt: null,
    });
    expect(new Date(row!.occurredAt).toISOString()).toBe(at.toISOString());
    expect(row!.payload.byteLength).toBeGreaterThan(0);
    // UUIDv7: version nibble 7, time-ordered.
    expect(appended!.eventId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
  });

  it("stores any aggregate id, payload and trace context byte for byte, through postgres.js and drizzle", async () => {
    // The rows travel as one encoded parameter: values its syntax could misread must come back intact.
    const ids = [
      'quote"d',
      "back\\slash",
      "{braces},comma",
      "NULL",
      " spaced ",
      "ünïcødé ✓",
      '\\"{,}',
    ];
    const events = ids.map((id) => testEvent(id, { id }));
    // An empty Struct encodes to zero bytes.
    events.push(
      outboxEvent(StructSchema, fromJson(StructSchema, {}), {
        aggregateType: "thing",
        aggregateId: "empty",
      }),
    );
    const half = Math.ceil(events.length / 2);
    const viaSql = await env.database.sql.begin((tx) =>
      appendEvents(tx, events.slice(0, half), { domain: env.domain }),
    );
    const viaDrizzle = await env.database.db.transaction((tx) =>
      appendEvents(tx, events.slice(half), { domain: env.domain }),
    );
    const rows = await env.database.sql<
      {
        event_id: string;
        aggregate_id: string;
        aggregate_seq: string;
        payload: Buffer;
        trace_context: unknown;
      }[]
    >`select event_id::text, aggregate_id, aggregate_seq::text, payload, trace_context from outbox order by position`;
    expect(rows.map((row) => row.aggregate_id)).toEqual([...ids, "empty"]);
    expect(rows.map((row) => row.event_id)).toEqual(
      [...viaSql, ...viaDrizzle].map((e) => e.eventId),
    );
    expect(rows.every((row) => row.aggregate_seq === "1")).toBe(true);
    rows.forEach((row, i) => {
      expect(
        Buffer.compare(
          row.payload,
          Buffer.from(toBinary(StructSchema, events[i]!.message as never)),
        ),
      ).toBe(0);
      expect(row.trace_context).toEqual({});
    });
    expect(rows.at(-1)!.payload.byteLength).toBe(0);
  });

  it("rejects events whose subject tokens or ids would corrupt the message", async () => {
    const bad = [
      { ...testEvent("agg"), aggregateType: "has.dot" },
      { ...testEvent("agg"), eventName: "with space" },
      testEvent("line\nbreak"),
      { ...testEvent("agg"), message: fromJson(TimestampSchema, "2026-01-01T00:00:00Z") },
    ];
    for (const event of bad) {
      await expect(
        env.database.sql.begin((tx) => appendEvents(tx, [event], { domain: env.domain })),
      ).rejects.toBeInstanceOf(InvalidEventError);
    }
    await expect(
      env.database.sql.begin((tx) => appendEvents(tx, [testEvent("agg")], { domain: "a>b" })),
    ).rejects.toBeInstanceOf(InvalidEventError);
    expect(await countRows(env.database, "outbox")).toBe(0);
  });

  it("wakes relays of its own schema through NOTIFY only when the transaction commits", async () => {
    const listener = env.openDatabase(1);
    const received: string[] = [];
    await listener.sql.listen(outboxChannel(env.schema), (payload) => received.push(payload));
    await env.database.sql
      .begin(async (tx) => {
        await appendEvents(tx, [testEvent("agg")], { domain: env.domain });
        throw new Error("rollback");
      })
      .catch(() => {});
    await env.database.sql.begin((tx) =>
      appendEvents(tx, [testEvent("agg")], { domain: env.domain }),
    );
    // A later notification proves the earlier (rolled back) one would have arrived by now.
    await env.database.sql`select pg_notify(${outboxChannel(env.schema)}, 'barrier')`;
    const deadline = Date.now() + 5_000;
    while (!received.includes("barrier") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(received).toEqual(["", "barrier"]);
  });

  it("derives subject token and schema version from the protobuf descriptor", () => {
    expect(defaultEventName(StructSchema)).toBe("struct");
    expect(defaultEventName({ ...StructSchema, name: "OrderPlaced" })).toBe("order_placed");
    expect(defaultEventName({ ...StructSchema, name: "HTTPRequestSent" })).toBe(
      "http_request_sent",
    );
    expect(defaultSchemaVersion(StructSchema)).toBe(1);
    const v2 = {
      ...StructSchema,
      file: {
        ...StructSchema.file,
        proto: { ...StructSchema.file.proto, package: "commerce.orders.v2" },
      },
    } as unknown as typeof StructSchema;
    expect(defaultSchemaVersion(v2)).toBe(2);
  });
});
