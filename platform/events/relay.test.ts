import { StructSchema } from "@bufbuild/protobuf/wkt";
import { sql } from "drizzle-orm";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startTcpProxy } from "../testing/tcp-proxy.js";
import {
  createEventConsumer,
  drizzleTransactions,
  type EventConsumer,
  eventHandlers,
  postgresTransactions,
} from "./consumer.js";
import { silentLogger } from "./logger.js";
import { appendEvents } from "./outbox.js";
import { createOutboxRelay, type OutboxRelay } from "./relay.js";
import {
  countRows,
  createEventsTestEnv,
  type EventsTestEnv,
  readStream,
  recordingHandlers,
  testEvent,
  waitFor,
} from "./test-support/harness.js";

type DrizzleTx = Parameters<Parameters<EventsTestEnv["database"]["db"]["transaction"]>[0]>[0];

let env: EventsTestEnv;
const cleanups: (() => Promise<unknown>)[] = [];

beforeEach(async () => {
  env = await createEventsTestEnv();
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  await env.close();
});

function relay(options: Partial<Parameters<typeof createOutboxRelay>[0]> = {}): OutboxRelay {
  const r = createOutboxRelay({
    sql: env.database.sql,
    schema: env.schema,
    nc: env.nc,
    registry: new Registry(),
    logger: silentLogger,
    ...options,
  });
  cleanups.push(() => r.stop());
  return r;
}

function consumer(name = `c_${env.id}`): EventConsumer {
  const c = createEventConsumer({
    nc: env.nc,
    stream: env.stream.name,
    name,
    transaction: postgresTransactions(env.database.sql),
    handlers: recordingHandlers(name),
    deadLetters: { subjectPrefix: env.dlq.subjectPrefix },
    metricsRegistry: new Registry(),
    logger: silentLogger,
  });
  cleanups.push(() => c.stop());
  return c;
}

describe("outbox relay", () => {
  it("delivers a committed event exactly once and publishes nothing for a rolled-back one", async () => {
    await relay().start();
    // drizzle all the way: append in a drizzle transaction, consume in one.
    const name = `c_${env.id}`;
    const c = createEventConsumer({
      nc: env.nc,
      stream: env.stream.name,
      name,
      transaction: drizzleTransactions(env.database.db),
      handlers: eventHandlers<DrizzleTx>().on(StructSchema, async (event, { tx }) => {
        await tx.execute(sql`insert into effects (consumer, event_id, aggregate_id, aggregate_seq)
          values (${name}, ${event.eventId}, ${event.aggregateId}, ${event.aggregateSeq})`);
      }),
      deadLetters: { subjectPrefix: env.dlq.subjectPrefix },
      metricsRegistry: new Registry(),
      logger: silentLogger,
    });
    cleanups.push(() => c.stop());
    await c.start();

    await expect(
      env.database.sql.begin(async (tx) => {
        await appendEvents(tx, [testEvent("order-1", { step: "rolled back" })], {
          domain: env.domain,
        });
        throw new Error("business rule failed");
      }),
    ).rejects.toThrow("business rule failed");

    // drizzle transaction path
    const appended = await env.database.db.transaction((tx) =>
      appendEvents(tx, [testEvent("order-1", { step: "committed" })], { domain: env.domain }),
    );
    expect(appended).toHaveLength(1);
    expect(appended[0]!.aggregateSeq).toBe(1);
    expect(appended[0]!.subject).toBe(`${env.domain}.thing.struct`);

    await waitFor("effect", async () => (await countRows(env.database, "effects")) === 1);
    await waitFor(
      "outbox drained",
      async () => (await countRows(env.database, "outbox", "sent_at is null")) === 0,
    );
    const effects = await env.database.sql`select event_id::text as id from effects`;
    expect(effects.map((r) => r.id)).toEqual([appended[0]!.eventId]);
    const messages = await readStream(env.nc, env.stream.name);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.headers).toMatchObject({
      "Event-Type": "google.protobuf.Struct",
      "Event-Id": appended[0]!.eventId,
      "Nats-Msg-Id": appended[0]!.eventId,
      "Aggregate-Type": "thing",
      "Aggregate-Id": "order-1",
      "Aggregate-Seq": "1",
      "Schema-Version": "1",
    });
    expect(await countRows(env.database, "outbox")).toBe(1);
    expect(c.stats.processed).toBe(1);

    // A burst goes through the batched (multi-event transaction) path.
    await env.database.db.transaction((tx) =>
      appendEvents(
        tx,
        Array.from({ length: 5 }, (_, i) => testEvent(`order-${i + 2}`)),
        { domain: env.domain },
      ),
    );
    await waitFor("burst", async () => (await countRows(env.database, "effects")) === 6);
    expect(c.stats.processed).toBe(6);
  });

  it("keeps every event written while NATS is unreachable and delivers each once after it returns", async () => {
    const proxy = await startTcpProxy({ host: "127.0.0.1", port: 4222 });
    cleanups.push(() => proxy.close());
    const relayNc = await env.openNats(`nats://${proxy.address}`);
    const registry = new Registry();
    const r = relay({ nc: relayNc, registry, publishTimeoutMs: 1_000, retryMaxMs: 1_000 });
    await r.start();
    const c = consumer();
    await c.start();

    // 1,000 events in 200 transactions over 40 aggregates. A quarter of the
    // way in, the network to NATS turns into a black hole (publishes time
    // out, bytes stay in flight), later the connection is cut and refused.
    for (let t = 0; t < 200; t++) {
      if (t === 50) proxy.pause();
      await env.database.sql.begin((tx) =>
        appendEvents(
          tx,
          Array.from({ length: 5 }, (_, i) => testEvent(`agg-${(t * 5 + i) % 40}`, { t, i })),
          { domain: env.domain },
        ),
      );
    }
    await waitFor("a failed publish", () => r.stats.failed > 0);
    proxy.down();
    const pendingDuringOutage = await countRows(env.database, "outbox", "sent_at is null");
    expect(pendingDuringOutage).toBeGreaterThan(0);
    const metrics = await registry.getSingleMetricAsString("events_outbox_pending");
    expect(metrics).toContain(
      `events_outbox_pending{schema="${env.schema}"} ${pendingDuringOutage}`,
    );
    const age = await registry.getSingleMetric("events_outbox_oldest_pending_age_seconds")!.get();
    expect(age.values[0]!.value).toBeGreaterThan(0);

    proxy.up();
    await waitFor(
      "1000 effects",
      async () => (await countRows(env.database, "inbox")) === 1_000,
      60_000,
    );
    await waitFor(
      "outbox drained",
      async () => (await countRows(env.database, "outbox", "sent_at is null")) === 0,
    );
    expect(await countRows(env.database, "effects")).toBe(1_000);
    const [distinct] = await env.database.sql`
      select count(distinct event_id)::int as n from effects`;
    expect(distinct!.n).toBe(1_000);
    const info = await env.jsm.streams.info(env.stream.name);
    expect(info.state.messages).toBe(1_000);
    expect(r.stats.published).toBe(1_000);
  });

  it("does not duplicate when the relay crashes after publishing but before marking sent", async () => {
    let crash = true;
    const crashing = relay({
      hooks: {
        beforeMarkSent: () => {
          if (crash) throw new Error("simulated crash before mark-sent");
        },
      },
    });
    const appended = await env.database.sql.begin((tx) =>
      appendEvents(
        tx,
        Array.from({ length: 10 }, (_, i) => testEvent(`agg-${i % 3}`, { i })),
        { domain: env.domain },
      ),
    );
    await expect(crashing.publishBatch()).rejects.toThrow("simulated crash");
    // The messages reached JetStream, the rows are still pending.
    expect((await env.jsm.streams.info(env.stream.name)).state.messages).toBe(10);
    expect(await countRows(env.database, "outbox", "sent_at is null")).toBe(10);

    crash = false;
    const c = consumer();
    await c.start();
    const second = relay();
    const result = await second.publishBatch();
    expect(result).toMatchObject({ selected: 10, published: 10, failed: 0 });
    expect(await countRows(env.database, "outbox", "sent_at is null")).toBe(0);
    // JetStream dropped the republished copies (Nats-Msg-Id = event id).
    expect((await env.jsm.streams.info(env.stream.name)).state.messages).toBe(10);
    await waitFor("10 effects", async () => (await countRows(env.database, "effects")) === 10);
    const ids = await env.database.sql`select event_id::text as id from effects order by id`;
    expect(ids.map((r) => r.id)).toEqual(appended.map((a) => a.eventId).sort());
  });

  it("two relays on one outbox publish every event once and keep each aggregate in order", async () => {
    const a = relay({ sql: env.openDatabase(4).sql, batchSize: 7, nc: await env.openNats() });
    const b = relay({ sql: env.openDatabase(4).sql, batchSize: 7, nc: await env.openNats() });
    await Promise.all([a.start(), b.start()]);
    const writers = env.openDatabase(8);
    const aggregates = 12;
    const perAggregate = 40;
    // Concurrent writers, interleaving aggregates, 1-4 events per transaction.
    await Promise.all(
      Array.from({ length: 6 }, async (_, w) => {
        for (let round = 0; round < (aggregates * perAggregate) / 6 / 2; round++) {
          const agg = `agg-${(w * 2 + (round % 2)) % aggregates}`;
          await writers.sql.begin((tx) =>
            appendEvents(tx, [testEvent(agg, { w, round }), testEvent(agg, { w, round, n: 2 })], {
              domain: env.domain,
            }),
          );
        }
      }),
    );
    const total = aggregates * perAggregate;
    await waitFor(
      "outbox drained",
      async () => (await countRows(env.database, "outbox", "sent_at is null")) === 0,
    );
    const messages = await readStream(env.nc, env.stream.name);
    expect(messages).toHaveLength(total);
    expect(new Set(messages.map((m) => m.headers["Event-Id"])).size).toBe(total);
    const lastSeq = new Map<string, number>();
    for (const m of messages) {
      const agg = m.headers["Aggregate-Id"]!;
      const seq = Number(m.headers["Aggregate-Seq"]);
      expect(seq, `order of ${agg}`).toBe((lastSeq.get(agg) ?? 0) + 1);
      lastSeq.set(agg, seq);
    }
    expect(a.stats.published + b.stats.published).toBe(total);
  });

  it("prunes sent rows after the retention without resetting aggregate sequences", async () => {
    const r = relay({ retentionMs: 0 });
    await env.database.sql.begin((tx) =>
      appendEvents(tx, [testEvent("agg-1"), testEvent("agg-1")], { domain: env.domain }),
    );
    await r.publishBatch();
    await env.database.sql.begin((tx) =>
      appendEvents(tx, [testEvent("agg-1")], { domain: env.domain }),
    );
    // Only the two sent rows are old enough; the pending one stays.
    expect(await r.pruneSent()).toBe(2);
    expect(await countRows(env.database, "outbox")).toBe(1);
    const [next] = await env.database.sql.begin((tx) =>
      appendEvents(tx, [testEvent("agg-1")], { domain: env.domain }),
    );
    expect(next!.aggregateSeq).toBe(4);
  });
});
