/**
 * Capacity of each event-backbone stage on its own (run: `npx tsx
 * bench/events-stages.ts`; not a test), to see which one bounds
 * bench/events-throughput.ts:
 *   append  — outbox inserts only (relay stopped)
 *   relay   — publishing an existing backlog (no consumer)
 *   consume — consuming an existing stream backlog
 * Env: EVENTS=20000 WRITERS=8 TX_EVENTS=10 AGGREGATES=1000 CONCURRENCY=64 NOTIFY=1 PARALLEL=1
 */
import { randomBytes } from "node:crypto";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { jetstreamManager } from "@nats-io/jetstream";
import type { TransactionSql } from "postgres";
import { Registry } from "prom-client";
import { createDatabase, migrateDatabase } from "../platform/db/postgres.js";
import {
  createEventConsumer,
  eventHandlers,
  postgresTransactions,
} from "../platform/events/consumer.js";
import { silentLogger } from "../platform/events/logger.js";
import { connectNats } from "../platform/events/nats.js";
import { appendEvents } from "../platform/events/outbox.js";
import { createOutboxRelay } from "../platform/events/relay.js";
import { deadLetterStream, domainStream, provisionStreams } from "../platform/events/streams.js";
import { EVENTS_MIGRATIONS, testEvent } from "../platform/events/test-support/harness.js";
import {
  AGGREGATES,
  DATABASE_URL,
  EVENTS,
  env,
  NATS_URL,
  runWriters,
  TX_EVENTS,
  WRITERS,
} from "./events-bench-load.js";
import { cpuMeter, profiled } from "./events-cpu.js";

const CONCURRENCY = env("CONCURRENCY", 64);
const NOTIFY = env("NOTIFY", 1) === 1;
// PARALLEL=0: handlers of one batch run one after another (the consumer's default).
const PARALLEL = env("PARALLEL", 1) === 1;

const id = randomBytes(4).toString("hex");
const schema = `bench_ev_${id}`;
const domain = `bench${id}`;

// A closed pipe (`| head`) must not kill the run before it cleans up.
process.stdout.on("error", () => {});

async function main() {
  await migrateDatabase({ url: DATABASE_URL, schema }, EVENTS_MIGRATIONS);
  const db = createDatabase({ url: DATABASE_URL, schema, maxConnections: Math.max(WRITERS, 40) });
  await db.sql.unsafe(`create table effects (event_id uuid primary key)`);
  const nc = await connectNats({ servers: NATS_URL, name: "bench-stages" });
  const jsm = await jetstreamManager(nc);
  const limits = { maxAgeMs: 3_600_000, maxBytes: 1024 ** 3 };
  const stream = domainStream(domain, limits, `BENCH_${id}`);
  const dlq = deadLetterStream({
    name: `BENCH_${id}_DLQ`,
    subjectPrefix: `${domain}_dlq`,
    ...limits,
  });
  await provisionStreams(jsm, [stream, dlq]);
  const cleanup = async () => {
    for (const s of [stream, dlq]) await jsm.streams.delete(s.name).catch(() => {});
    await db.sql.unsafe(`drop schema if exists "${schema}" cascade`).catch(() => {});
    await db.close();
    await nc.close();
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => void cleanup().finally(() => process.exit(130)));
  }
  try {
    const cpu = cpuMeter(db.sql, schema);
    let c = await cpu.snapshot();
    let t = performance.now();
    await profiled("append", () =>
      runWriters(EVENTS, (from, count) =>
        db.sql.begin((tx) =>
          appendEvents(
            tx,
            Array.from({ length: count }, (_, k) =>
              testEvent(`agg-${(from + k) % AGGREGATES}`, {
                order: `o-${from + k}`,
                total: from + k,
              }),
            ),
            { domain, notify: NOTIFY },
          ),
        ),
      ),
    );
    let s = (performance.now() - t) / 1000;
    console.log(
      `append: ${(EVENTS / s).toFixed(0)} events/s (${WRITERS} writers × ${TX_EVENTS}/tx, notify ${NOTIFY}); ${cpu.report(c, await cpu.snapshot(), EVENTS)}`,
    );

    const relay = createOutboxRelay({
      sql: db.sql,
      schema,
      nc,
      registry: new Registry(),
      logger: silentLogger,
      batchSize: 1_000,
    });
    c = await cpu.snapshot();
    t = performance.now();
    let published = 0;
    await profiled("relay", async () => {
      while (published < EVENTS) published += (await relay.publishBatch()).published;
    });
    s = (performance.now() - t) / 1000;
    console.log(
      `relay: ${(EVENTS / s).toFixed(0)} events/s (batch 1000); ${cpu.report(c, await cpu.snapshot(), EVENTS)}`,
    );

    let done = 0;
    let resolveDone!: () => void;
    const finished = new Promise<void>((r) => {
      resolveDone = r;
    });
    const consumer = createEventConsumer({
      nc,
      stream: stream.name,
      name: `bench_${id}`,
      transaction: postgresTransactions(db.sql),
      handlers: eventHandlers<TransactionSql>().on(StructSchema, async (event, { tx }) => {
        await tx`insert into effects (event_id) values (${event.eventId})`;
        if (++done === EVENTS) resolveDone();
      }),
      concurrency: CONCURRENCY,
      maxAckPending: 10_000,
      parallelAggregates: PARALLEL,
      deadLetters: { subjectPrefix: dlq.subjectPrefix },
      metricsRegistry: new Registry(),
      logger: silentLogger,
    });
    c = await cpu.snapshot();
    t = performance.now();
    await profiled("consume", async () => {
      await consumer.start();
      await finished;
    });
    s = (performance.now() - t) / 1000;
    console.log(
      `consume: ${(EVENTS / s).toFixed(0)} events/s (concurrency ${CONCURRENCY}, parallel aggregates ${PARALLEL}); ${cpu.report(c, await cpu.snapshot(), EVENTS)}`,
    );
    await consumer.stop();
  } finally {
    await cleanup();
  }
}

await main();
