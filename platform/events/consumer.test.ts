import { StructSchema } from "@bufbuild/protobuf/wkt";
import { jetstream } from "@nats-io/jetstream";
import { type NatsConnection, headers as natsHeaders } from "@nats-io/nats-core";
import type { TransactionSql } from "postgres";
import { Registry } from "prom-client";
import { v7 as uuidv7 } from "uuid";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startTcpProxy } from "../testing/tcp-proxy.js";
import {
  createEventConsumer,
  type EventConsumer,
  type EventHandlers,
  eventHandlers,
  postgresTransactions,
  pruneInbox,
} from "./consumer.js";
import { listDeadLetters, replayDeadLetter } from "./dead-letters.js";
import { silentLogger } from "./logger.js";
import { appendEvents } from "./outbox.js";
import { createOutboxRelay } from "./relay.js";
import {
  countRows,
  createEventsTestEnv,
  type EventsTestEnv,
  recordingHandlers,
  testEvent,
  waitFor,
} from "./test-support/harness.js";

let env: EventsTestEnv;
const cleanups: (() => Promise<unknown>)[] = [];

beforeEach(async () => {
  env = await createEventsTestEnv();
  const relay = createOutboxRelay({
    sql: env.database.sql,
    schema: env.schema,
    nc: env.nc,
    registry: new Registry(),
    logger: silentLogger,
    pollIntervalMs: 200,
  });
  await relay.start();
  cleanups.push(() => relay.stop());
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  await env.close();
});

function consumer(
  handlers: EventHandlers<TransactionSql>,
  options: {
    name?: string;
    nc?: NatsConnection;
    maxAttempts?: number;
    ackWaitMs?: number;
    concurrency?: number;
    batchSize?: number;
    parallelAggregates?: boolean;
  } = {},
): EventConsumer {
  const c = createEventConsumer({
    nc: options.nc ?? env.nc,
    stream: env.stream.name,
    name: options.name ?? `c_${env.id}`,
    transaction: postgresTransactions(env.database.sql),
    handlers,
    maxAttempts: options.maxAttempts ?? 3,
    backoffMs: [50, 100],
    ackWaitMs: options.ackWaitMs ?? 30_000,
    concurrency: options.concurrency ?? 4,
    batchSize: options.batchSize ?? 32,
    parallelAggregates: options.parallelAggregates ?? false,
    deadLetters: { subjectPrefix: env.dlq.subjectPrefix },
    metricsRegistry: new Registry(),
    logger: silentLogger,
  });
  cleanups.push(() => c.stop());
  return c;
}

function append(aggregateId: string, fields = {}) {
  return env.database.sql.begin((tx) =>
    appendEvents(tx, [testEvent(aggregateId, fields)], { domain: env.domain }),
  );
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe("event consumer", () => {
  it("applies the effect once when the consumer crashes after committing but before acking", async () => {
    const name = `c_${env.id}`;
    const proxy = await startTcpProxy({ host: "127.0.0.1", port: 4222 });
    cleanups.push(() => proxy.close());
    const crashingNc = await env.openNats(`nats://${proxy.address}`);
    const reached = deferred();
    const gate = deferred();
    const first = consumer(
      recordingHandlers(name, async () => {
        reached.resolve();
        await gate.promise;
      }),
      { nc: crashingNc, ackWaitMs: 1_000 },
    );
    await first.start();
    const [event] = await append("agg-1");

    await reached.promise;
    // Hold everything the doomed consumer sends from now on (its ack).
    proxy.pause();
    gate.resolve();
    await waitFor("effect committed", async () => (await countRows(env.database, "effects")) === 1);
    await waitFor("handler finished", () => first.stats.processed === 1);
    // Crash: the held ack is lost with the connection.
    proxy.cut();
    await crashingNc.close();

    const second = consumer(recordingHandlers(name), { ackWaitMs: 1_000 });
    await second.start();
    await waitFor("redelivery seen as duplicate", () => second.stats.duplicate === 1);
    expect(await countRows(env.database, "effects")).toBe(1);
    expect(await countRows(env.database, "inbox", `event_id = '${event!.eventId}'`)).toBe(1);
    await waitFor("acked", async () => {
      const info = await env.jsm.consumers.info(env.stream.name, name);
      return info.num_ack_pending === 0 && info.num_pending === 0;
    });
  });

  it("dead-letters after max attempts with the error, keeps going, and a replay after the fix applies once", async () => {
    const name = `c_${env.id}`;
    // Attempts, not calls: when poison shares a batch with healthy, the rolled-back
    // batch run and the one-by-one rerun are the same delivery (same attempt).
    const attempts = new Set<number>();
    const broken = consumer(
      recordingHandlers(name, (event, attempt) => {
        if (event.aggregateId === "poison") {
          attempts.add(attempt);
          throw new Error("inventory service exploded\nwith a second line");
        }
      }),
      { maxAttempts: 3 },
    );
    await broken.start();
    const [poison] = await append("poison");
    await append("healthy");

    await waitFor("dead letter", async () => {
      const info = await env.jsm.streams.info(env.dlq.name);
      return info.state.messages === 1;
    });
    expect([...attempts].sort()).toEqual([1, 2, 3]);
    await waitFor(
      "healthy event applied",
      async () => (await countRows(env.database, "effects")) === 1,
    );
    const [letter] = await listDeadLetters(env.jsm, { stream: env.dlq.name });
    expect(letter).toMatchObject({
      reason: "handler_failed",
      attempts: 3,
      consumer: name,
      originalStream: env.stream.name,
      originalSubject: `${env.domain}.thing.struct`,
      eventId: poison!.eventId,
      eventType: "google.protobuf.Struct",
    });
    expect(letter!.error).toContain("Error: inventory service exploded");
    expect(letter!.error).not.toMatch(/[\r\n]/);
    // The original is terminated, not left pending.
    const info = await env.jsm.consumers.info(env.stream.name, name);
    expect(info.num_ack_pending).toBe(0);
    expect(broken.stats.dead_lettered).toBe(1);
    await broken.stop();

    const fixed = consumer(recordingHandlers(name));
    await fixed.start();
    // Keep the letter on the first replay to replay it twice: the inbox wins.
    await replayDeadLetter(env.jsm, jetstream(env.nc), {
      stream: env.dlq.name,
      seq: letter!.seq,
      keep: true,
    });
    await waitFor("replayed", () => fixed.stats.processed === 1);
    await replayDeadLetter(env.jsm, jetstream(env.nc), { stream: env.dlq.name, seq: letter!.seq });
    await waitFor("second replay deduplicated", () => fixed.stats.duplicate === 1);
    expect(await countRows(env.database, "effects", "aggregate_id = 'poison'")).toBe(1);
    expect((await env.jsm.streams.info(env.dlq.name)).state.messages).toBe(0);
  });

  it("a replay aimed at one consumer is skipped by the others on the stream", async () => {
    const other = consumer(recordingHandlers("other"), { name: `other_${env.id}` });
    await other.start();
    await append("agg-1");
    await waitFor("first delivery", () => other.stats.processed === 1);
    const js = jetstream(env.nc);
    const stored = await env.jsm.streams.getMessage(env.stream.name, { seq: 1 });
    const h = natsHeaders();
    for (const key of stored!.header.keys()) {
      if (key !== "Nats-Msg-Id") h.set(key, stored!.header.get(key));
    }
    h.set("Replay-Consumer", "somebody_else");
    await js.publish(stored!.subject, stored!.data, { headers: h, msgID: uuidv7() });
    await waitFor("skipped", () => other.stats.skipped === 1);
    expect(other.stats.duplicate).toBe(0);
  });

  it("dead-letters unknown types and malformed payloads with a reason and keeps consuming", async () => {
    const name = `c_${env.id}`;
    const c = consumer(recordingHandlers(name), { concurrency: 1 });
    await c.start();
    const js = jetstream(env.nc);
    const subject = `${env.domain}.thing.struct`;
    const poisonHeaders = (type: string | undefined, eventId = uuidv7()) => {
      const h = natsHeaders();
      if (type) h.set("Event-Type", type);
      h.set("Event-Id", eventId);
      h.set("Aggregate-Type", "thing");
      h.set("Aggregate-Id", "poisoned");
      return h;
    };
    await js.publish(subject, new Uint8Array([1, 2, 3]), {
      headers: poisonHeaders("commerce.nothing.v1.Unknown"),
    });
    // 0xff… is an invalid protobuf tag/varint.
    await js.publish(subject, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff]), {
      headers: poisonHeaders("google.protobuf.Struct"),
    });
    await js.publish(subject, new Uint8Array(), { headers: poisonHeaders(undefined) });
    await js.publish(subject, new Uint8Array(), {
      headers: poisonHeaders("google.protobuf.Struct", "not-a-uuid"),
    });
    const [good] = await append("healthy");

    await waitFor("good event after the poison", async () => {
      return (await countRows(env.database, "effects")) === 1;
    });
    await waitFor("four dead letters", async () => {
      return (await env.jsm.streams.info(env.dlq.name)).state.messages === 4;
    });
    const letters = await listDeadLetters(env.jsm, { stream: env.dlq.name, consumer: name });
    expect(letters.map((l) => [l.reason, l.attempts])).toEqual([
      ["unknown_type", 1],
      ["malformed", 1],
      ["unknown_type", 1],
      ["malformed", 1],
    ]);
    expect(letters[0]!.error).toContain('unknown event type "commerce.nothing.v1.Unknown"');
    expect(letters[1]!.error).toContain("payload is not a valid google.protobuf.Struct");
    expect(letters[2]!.error).toContain("no Event-Type header");
    expect(letters[3]!.error).toContain("Event-Id is missing or not a UUID");
    const effects = await env.database.sql`select event_id::text as id from effects`;
    expect(effects.map((r) => r.id)).toEqual([good!.eventId]);
  });

  it("on stop finishes the handler in flight and leaves undelivered work for the next instance", async () => {
    const name = `c_${env.id}`;
    const started = deferred();
    const release = deferred();
    const first = consumer(
      recordingHandlers(name, async (event) => {
        if (event.aggregateId === "slow") {
          started.resolve();
          await release.promise;
        }
      }),
      { concurrency: 1, ackWaitMs: 1_000 },
    );
    await first.start();
    await append("slow");
    await started.promise;
    for (let i = 0; i < 5; i++) await append(`later-${i}`);
    const stopping = first.stop();
    // The in-flight handler is still running, so stop has not resolved yet.
    let stopped = false;
    void stopping.then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(stopped).toBe(false);
    release.resolve();
    await stopping;
    expect(first.stats.processed).toBe(1);
    expect(await countRows(env.database, "effects")).toBe(1);

    const second = consumer(recordingHandlers(name), { ackWaitMs: 1_000 });
    await second.start();
    await waitFor("rest applied", async () => (await countRows(env.database, "effects")) === 6);
    expect(await countRows(env.database, "effects", "aggregate_id = 'slow'")).toBe(1);
  });

  it("sends long handlers' heartbeats so JetStream does not redeliver them", async () => {
    const name = `c_${env.id}`;
    let calls = 0;
    const c = consumer(
      recordingHandlers(name, async () => {
        calls++;
        // Three ack-wait periods.
        await new Promise((resolve) => setTimeout(resolve, 3_000));
      }),
      { ackWaitMs: 1_000 },
    );
    await c.start();
    await append("slow");
    await waitFor("applied", async () => (await countRows(env.database, "effects")) === 1, 20_000);
    const info = await env.jsm.consumers.info(env.stream.name, name);
    expect(info.num_redelivered).toBe(0);
    expect(calls).toBe(1);
  });

  it.each([false, true])(
    "handles a burst in shared transactions and isolates a failing event and in-batch duplicates (parallel aggregates: %s)",
    async (parallelAggregates) => {
      const name = `c_${env.id}`;
      let running = 0;
      let mostAtOnce = 0;
      const handlers = recordingHandlers(name, async (event) => {
        if (event.aggregateId === "poison") throw new Error("poison in a batch");
        running++;
        mostAtOnce = Math.max(mostAtOnce, running);
        // Long enough for handlers of other aggregates in the batch to start, if they may.
        await new Promise((resolve) => setTimeout(resolve, 5));
        running--;
      });
      // Create the durable consumer, then let a backlog build up while it is stopped.
      const setup = consumer(handlers);
      await setup.start();
      await setup.stop();
      const backlog = async (events: ReturnType<typeof testEvent>[]) => {
        const before = (await env.jsm.streams.info(env.stream.name)).state.messages;
        const appended = await env.database.sql.begin((tx) =>
          appendEvents(tx, events, { domain: env.domain }),
        );
        await waitFor("published", async () => {
          const info = await env.jsm.streams.info(env.stream.name);
          return info.state.messages === before + events.length;
        });
        return appended;
      };

      const healthy = await backlog(
        Array.from({ length: 12 }, (_, i) => testEvent(`agg-${i % 4}`, { i })),
      );
      // A second copy of event 3 (as a replay would send) right behind the originals.
      const stored = await env.jsm.streams.getMessage(env.stream.name, { seq: 4 });
      const h = natsHeaders();
      for (const key of stored!.header.keys()) {
        if (key !== "Nats-Msg-Id") h.set(key, stored!.header.get(key));
      }
      await jetstream(env.nc).publish(stored!.subject, stored!.data, {
        headers: h,
        msgID: uuidv7(),
      });
      // One transaction at a time: handlers overlap only inside a batch.
      const first = consumer(handlers, {
        batchSize: 50,
        maxAttempts: 2,
        concurrency: 1,
        parallelAggregates,
      });
      await first.start();
      await waitFor("burst applied", async () => (await countRows(env.database, "effects")) === 12);
      await waitFor("duplicate acked", () => first.stats.duplicate === 1);
      expect(first.stats.processed).toBe(12);
      expect(await countRows(env.database, "effects", `event_id = '${healthy[3]!.eventId}'`)).toBe(
        1,
      );
      // Some events shared a transaction (inbox rows of one transaction share now()).
      const [shared] = await env.database.sql`
      select count(distinct processed_at)::int as n from inbox where consumer = ${name}`;
      expect(shared!.n).toBeLessThan(12);
      // Per aggregate, effects were applied in sequence order.
      const rows = await env.database.sql`
      select aggregate_id, array_agg(aggregate_seq::int order by id) as seqs
      from effects group by aggregate_id`;
      for (const row of rows) expect(row.seqs).toEqual([1, 2, 3]);
      if (parallelAggregates) expect(mostAtOnce).toBeGreaterThan(1);
      else expect(mostAtOnce).toBe(1);
      await first.stop();

      await backlog(
        Array.from({ length: 10 }, (_, i) => testEvent(i === 4 ? "poison" : `agg-${i % 4}`, { i })),
      );
      const second = consumer(handlers, { batchSize: 50, maxAttempts: 2, parallelAggregates });
      await second.start();
      await waitFor("dead letter", () => second.stats.dead_lettered === 1);
      await waitFor(
        "healthy applied",
        async () => (await countRows(env.database, "effects")) === 21,
      );
      expect(second.stats.processed).toBe(9);
      const [agg] = await env.database.sql`
      select count(*)::int as n, count(distinct event_id)::int as ids from effects`;
      expect(agg).toEqual({ n: 21, ids: 21 });
    },
  );

  it("hands a set-based handler a transaction's events in one call, and one at a time after a failure", async () => {
    const name = `c_${env.id}`;
    const calls: string[][] = [];
    const handlers = eventHandlers<TransactionSql>().onBatch(
      StructSchema,
      async (events, { tx }) => {
        calls.push(events.map((e) => e.aggregateId));
        if (events.some((e) => e.aggregateId === "poison")) throw new Error("poison in a set");
        await tx`insert into effects (consumer, event_id, aggregate_id, aggregate_seq)
               select ${name}, e.id, e.agg, e.seq
               from unnest(${events.map((e) => e.eventId)}::uuid[],
                           ${events.map((e) => e.aggregateId)}::text[],
                           ${events.map((e) => e.aggregateSeq)}::int[]) as e(id, agg, seq)`;
      },
    );
    const setup = consumer(handlers);
    await setup.start();
    await setup.stop();
    const appendAll = (events: ReturnType<typeof testEvent>[]) =>
      env.database.sql.begin((tx) => appendEvents(tx, events, { domain: env.domain }));
    await appendAll(Array.from({ length: 12 }, (_, i) => testEvent(`agg-${i % 3}`, { i })));
    await waitFor("published", async () => {
      return (await env.jsm.streams.info(env.stream.name)).state.messages === 12;
    });
    const first = consumer(handlers, { batchSize: 50, concurrency: 1 });
    await first.start();
    await waitFor("applied", async () => (await countRows(env.database, "effects")) === 12);
    expect(first.stats.processed).toBe(12);
    expect(Math.max(...calls.map((call) => call.length))).toBeGreaterThan(1);
    const rows = await env.database.sql`
      select aggregate_id, array_agg(aggregate_seq::int order by id) as seqs
      from effects group by aggregate_id`;
    for (const row of rows) expect(row.seqs).toEqual([1, 2, 3, 4]);
    await first.stop();

    calls.length = 0;
    await appendAll(
      Array.from({ length: 6 }, (_, i) => testEvent(i === 2 ? "poison" : `agg-${i % 3}`, { i })),
    );
    const second = consumer(handlers, { batchSize: 50, concurrency: 1, maxAttempts: 1 });
    await second.start();
    await waitFor("dead letter", () => second.stats.dead_lettered === 1);
    await waitFor("rest applied", async () => (await countRows(env.database, "effects")) === 17);
    // However the deliveries were grouped, the poison event ended up alone
    // (a failed set is retried event by event) and the rest applied once each.
    expect(calls.some((call) => call.length === 1 && call[0] === "poison")).toBe(true);
    expect(second.stats.processed).toBe(5);
    const [distinct] = await env.database.sql`
      select count(*)::int as n, count(distinct event_id)::int as ids from effects`;
    expect(distinct).toEqual({ n: 17, ids: 17 });
  });

  it("prunes only the consumer's inbox rows older than the retention", async () => {
    const old = uuidv7();
    const fresh = uuidv7();
    const otherConsumer = uuidv7();
    await env.database.sql`
      insert into inbox (consumer, event_id, processed_at) values
        ('a', ${old}, now() - interval '40 days'),
        ('a', ${fresh}, now()),
        ('b', ${otherConsumer}, now() - interval '40 days')`;
    const removed = await pruneInbox(env.database.sql, {
      consumer: "a",
      olderThanMs: 30 * 24 * 3_600_000,
    });
    expect(removed).toBe(1);
    const rows = await env.database
      .sql`select event_id::text as id from inbox order by consumer, id`;
    expect(rows.map((r) => r.id)).toEqual([fresh, otherConsumer]);
  });

  it("dead-letters a message whose attempts all died without a result, without running the handler", async () => {
    const name = `c_${env.id}`;
    let calls = 0;
    const handlers = recordingHandlers(name, () => {
      calls++;
    });
    const setup = consumer(handlers, { maxAttempts: 1, ackWaitMs: 1_000 });
    await setup.start();
    await setup.stop();
    const [event] = await append("agg-1");
    // A worker takes the message and dies before finishing (no ack, no nak).
    const raw = await jetstream(env.nc).consumers.get(env.stream.name, name);
    const taken = await raw.next({ expires: 10_000 });
    expect(taken?.headers?.get("Event-Id")).toBe(event!.eventId);

    const c = consumer(handlers, { maxAttempts: 1, ackWaitMs: 1_000 });
    await c.start();
    await waitFor("dead letter", () => c.stats.dead_lettered === 1);
    const [letter] = await listDeadLetters(env.jsm, { stream: env.dlq.name });
    expect(letter).toMatchObject({ reason: "attempts_exhausted", attempts: 2, consumer: name });
    expect(calls).toBe(0);
    expect(await countRows(env.database, "effects")).toBe(0);
  });
});
