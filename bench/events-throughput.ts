/**
 * Event backbone throughput (run: `npx tsx bench/events-throughput.ts`; not a test).
 *
 * 1. Ceiling: raw JetStream async publish from Node (same payload size,
 *    headers and Nats-Msg-Id as a relayed event), pipelined; measured before
 *    and after the pipeline and averaged, since a shared machine drifts.
 * 2. Pipeline at saturation: writers commit outbox rows as fast as they can;
 *    events/s from the first insert to the last consumer effect (relay →
 *    JetStream → consumer transaction with inbox + effect row).
 * 3. Pipeline at a steady open-loop rate (a quarter of 2 by default): p50/p99 of
 *    effect commit time − event occurred time, both on this host's clock.
 *
 * Env: EVENTS=20000 WRITERS=8 TX_EVENTS=10 AGGREGATES=1000 CONCURRENCY=8 CONSUMER_BATCH=64 PARALLEL=1
 *      CONSUMER_PROCESS=1 (the consumer in its own process, as in the mesh)
 *      HANDLER=event|batch (per-event handler, or a set-based onBatch one)
 *      STEADY_SECONDS=10 STEADY_RATE=<events/s> DATABASE_URL NATS_URL
 *      MAX_ACK_PENDING=10000 (the consumer's)
 *      CONSUMER_NODE_ARGS="--trace-gc …" (extra Node flags for the consumer process)
 */
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { toBinary } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { jetstreamManager } from "@nats-io/jetstream";
import { Registry } from "prom-client";
import { createDatabase, migrateDatabase } from "../platform/db/postgres.js";
import type { createEventConsumer } from "../platform/events/consumer.js";
import { silentLogger, stderrLogger } from "../platform/events/logger.js";
import { connectNats } from "../platform/events/nats.js";
import { appendEvents } from "../platform/events/outbox.js";
import { createOutboxRelay } from "../platform/events/relay.js";
import { deadLetterStream, domainStream, provisionStreams } from "../platform/events/streams.js";
import { EVENTS_MIGRATIONS, testEvent } from "../platform/events/test-support/harness.js";
import { type BenchHandlerKind, createBenchConsumer } from "./events-bench-consumer.js";
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
import type { ConsumerProcessConfig } from "./events-consumer-process.js";
import { cpuMeter, roleApplicationName } from "./events-cpu.js";
import { rawPublishBaseline } from "./jetstream-raw-publish.js";

const CONCURRENCY = env("CONCURRENCY", 8);
const CONSUMER_BATCH = env("CONSUMER_BATCH", 64);
// NOTIFY=0: writers skip pg_notify and the relay polls every POLL_MS instead.
const NOTIFY = env("NOTIFY", 1) === 1;
// PARALLEL=0: handlers of one batch run one after another (the consumer's default).
const PARALLEL = env("PARALLEL", 1) === 1;
// CONSUMER_PROCESS=0: the consumer runs in this process, sharing its one thread
// with the writers and the relay (1 = its own process, as in the mesh).
const CONSUMER_PROCESS = env("CONSUMER_PROCESS", 1) === 1;
// HANDLER=batch: the effect is written by a set-based onBatch handler.
const HANDLER: BenchHandlerKind = process.env.HANDLER === "batch" ? "batch" : "event";
const POLL_MS = env("POLL_MS", NOTIFY ? 1_000 : 20);
const STEADY_SECONDS = env("STEADY_SECONDS", 10);
const CONSUMER_NODE_ARGS = (process.env.CONSUMER_NODE_ARGS ?? "").split(" ").filter(Boolean);

const id = randomBytes(4).toString("hex");
const schema = `bench_ev_${id}`;
const domain = `bench${id}`;

function sampleEvent(i: number) {
  return testEvent(`agg-${i % AGGREGATES}`, { order: `o-${i}`, total: i, currency: "EUR" });
}

type Stats = Record<string, number>;
interface BenchConsumer {
  pid: number | undefined;
  /** Only for the in-process consumer; a consumer process starts by itself. */
  start?(): Promise<void>;
  stats(): Promise<Stats>;
  stop(): Promise<Stats>;
}

function inProcess(consumer: ReturnType<typeof createEventConsumer>): BenchConsumer {
  return {
    pid: undefined,
    start: () => consumer.start(),
    stats: async () => ({ ...consumer.stats }),
    stop: async () => {
      await consumer.stop();
      return { ...consumer.stats };
    },
  };
}

async function consumerProcess(config: ConsumerProcessConfig): Promise<BenchConsumer> {
  const child = fork(
    new URL("./events-consumer-process.ts", import.meta.url).pathname,
    [JSON.stringify(config)],
    { execArgv: ["--import", "tsx", ...CONSUMER_NODE_ARGS] },
  );
  let latest: Stats = {};
  let stopped: ((stats: Stats) => void) | undefined;
  child.on("message", (message: unknown) => {
    const m = message as { stats?: Stats; stopped?: boolean };
    if (m.stats) latest = m.stats;
    if (m.stopped) stopped?.(latest);
  });
  await new Promise<void>((resolve, reject) => {
    child.once("message", (m) => (m === "ready" ? resolve() : reject(new Error(String(m)))));
    child.once("exit", (code) => reject(new Error(`consumer process exited with ${code}`)));
  });
  return {
    pid: child.pid,
    async stats() {
      child.send("stats");
      await new Promise((resolve) => setTimeout(resolve, 5));
      return latest;
    },
    stop: () =>
      new Promise<Stats>((resolve) => {
        stopped = resolve;
        child.send("stop");
      }),
  };
}

// A closed pipe (`| head`) must not kill the run before it cleans up.
process.stdout.on("error", () => {});

async function main() {
  await migrateDatabase({ url: DATABASE_URL, schema }, EVENTS_MIGRATIONS);
  const writers = createDatabase({
    url: DATABASE_URL,
    schema,
    maxConnections: WRITERS,
    applicationName: roleApplicationName(schema, "writers"),
  });
  const relayDb = createDatabase({
    url: DATABASE_URL,
    schema,
    maxConnections: 2,
    applicationName: roleApplicationName(schema, "relay"),
  });
  const consumerDb = createDatabase({
    url: DATABASE_URL,
    schema,
    maxConnections: Math.min(CONCURRENCY, 40),
    applicationName: roleApplicationName(schema, "consumer"),
  });
  await writers.sql.unsafe(`create table effects (
    event_id uuid primary key, occurred_at timestamptz not null,
    applied_at timestamptz not null default clock_timestamp())`);
  const nc = await connectNats({ servers: NATS_URL, name: "bench-events" });
  const consumerNc = await connectNats({ servers: NATS_URL, name: "bench-events-consumer" });
  const jsm = await jetstreamManager(nc);
  const limits = { maxAgeMs: 3_600_000, maxBytes: 1024 ** 3 };
  const stream = domainStream(domain, limits, `BENCH_${id}`);
  const raw = domainStream(`${domain}raw`, limits, `BENCH_${id}_RAW`);
  const dlq = deadLetterStream({
    name: `BENCH_${id}_DLQ`,
    subjectPrefix: `${domain}_dlq`,
    ...limits,
  });
  await provisionStreams(jsm, [stream, raw, dlq]);

  const cleanup = async () => {
    for (const s of [stream, raw, dlq]) await jsm.streams.delete(s.name).catch(() => {});
    await writers.sql.unsafe(`drop schema if exists "${schema}" cascade`).catch(() => {});
    await Promise.allSettled([writers.close(), relayDb.close(), consumerDb.close()]);
    await Promise.allSettled([nc.close(), consumerNc.close()]);
  };

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    // ---- 1. raw JetStream async publish ceiling (again after the pipeline) ----
    const payload = toBinary(StructSchema, sampleEvent(1).message as never);
    const rawPublish = rawPublishBaseline(nc, {
      subject: `${domain}raw.thing.struct`,
      payload,
      count: EVENTS,
      aggregates: AGGREGATES,
    });
    const rawBefore = await rawPublish("before");

    // ---- pipeline components ----
    const relay = createOutboxRelay({
      sql: relayDb.sql,
      schema,
      nc,
      registry: new Registry(),
      logger: silentLogger,
      batchSize: 1_000,
      pollIntervalMs: POLL_MS,
    });
    const consumerConfig = {
      stream: stream.name,
      name: `bench_${id}`,
      dlqPrefix: dlq.subjectPrefix,
      concurrency: CONCURRENCY,
      batchSize: CONSUMER_BATCH,
      parallelAggregates: PARALLEL,
      handler: HANDLER,
    };
    const consumer = CONSUMER_PROCESS
      ? await consumerProcess({
          ...consumerConfig,
          databaseUrl: DATABASE_URL,
          natsUrl: NATS_URL,
          schema,
        })
      : inProcess(
          createBenchConsumer(consumerConfig, {
            nc: consumerNc,
            sql: consumerDb.sql,
            logger: process.env.DEBUG ? stderrLogger : silentLogger,
          }),
        );
    await relay.start();
    await consumer.start?.();

    const effects = async () => {
      const [row] = await writers.sql`select count(*)::int as n from effects`;
      return Number(row!.n);
    };
    const waitForEffects = async (n: number) => {
      for (;;) {
        if ((await effects()) >= n) return;
        const stats = await consumer.stats();
        if ((stats.dead_lettered ?? 0) > 0) {
          throw new Error(`consumer dead-lettered events: ${JSON.stringify(stats)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };

    // CPU of this process, nats-server and this run's Postgres backends.
    const cpu = cpuMeter(
      writers.sql,
      schema,
      consumer.pid === undefined ? {} : { consumer: consumer.pid },
    );

    // ---- 2. saturation ----
    const cpuStart = await cpu.snapshot();
    const satStart = performance.now();
    await runWriters(EVENTS, (from, count) =>
      writers.sql.begin((tx) =>
        appendEvents(
          tx,
          Array.from({ length: count }, (_, k) => sampleEvent(from + k)),
          { domain, notify: NOTIFY },
        ),
      ),
    );
    const insertSeconds = (performance.now() - satStart) / 1000;
    await waitForEffects(EVENTS);
    const satSeconds = (performance.now() - satStart) / 1000;
    const satRate = EVENTS / satSeconds;
    const cpuLine = cpu.report(cpuStart, await cpu.snapshot(), EVENTS);
    const [satLat] = await writers.sql`
      select percentile_cont(0.5) within group (order by extract(epoch from applied_at - occurred_at)) * 1000 as p50,
             percentile_cont(0.99) within group (order by extract(epoch from applied_at - occurred_at)) * 1000 as p99
      from effects`;
    console.log(
      `pipeline at saturation: ${EVENTS} events (${WRITERS} writers × ${TX_EVENTS}/tx, ${AGGREGATES} aggregates, ` +
        `notify ${NOTIFY}, consumer ${CONCURRENCY}×${CONSUMER_BATCH} ${CONSUMER_PROCESS ? "in its own process" : "in this process"}, ${HANDLER} handler, parallel aggregates ${PARALLEL}) ` +
        `inserted in ${insertSeconds.toFixed(2)} s, all effects after ${satSeconds.toFixed(2)} s = ${satRate.toFixed(0)} events/s ` +
        `(latency under backlog p50 ${Number(satLat!.p50).toFixed(0)} ms, p99 ${Number(satLat!.p99).toFixed(0)} ms)`,
    );
    console.log(`pipeline at saturation, writers + relay + consumer: ${cpuLine}`);

    // ---- 3. steady open-loop load ----
    const rate = env("STEADY_RATE", Math.max(100, Math.floor(satRate / 4)));
    const steadyTotal = Math.floor(rate * STEADY_SECONDS);
    const before = await effects();
    await writers.sql`truncate effects`;
    const tickMs = 10;
    const perTick = rate / (1000 / tickMs);
    let produced = 0;
    let carry = 0;
    const steadyStart = performance.now();
    const pending: Promise<unknown>[] = [];
    while (produced < steadyTotal) {
      const due = Math.floor(((performance.now() - steadyStart) / tickMs) * perTick) - produced;
      carry = Math.min(due, steadyTotal - produced);
      for (let k = 0; k < carry; k++) {
        const i = EVENTS + produced + k;
        // One event per transaction: the common shape of a command handler.
        pending.push(writers.sql.begin((tx) => appendEvents(tx, [sampleEvent(i)], { domain })));
      }
      produced += carry;
      await new Promise((resolve) => setTimeout(resolve, tickMs));
    }
    await Promise.all(pending);
    const offeredSeconds = (performance.now() - steadyStart) / 1000;
    await waitForEffects(steadyTotal);
    const [lat] = await writers.sql`
      select percentile_cont(0.5) within group (order by extract(epoch from applied_at - occurred_at)) * 1000 as p50,
             percentile_cont(0.99) within group (order by extract(epoch from applied_at - occurred_at)) * 1000 as p99,
             max(extract(epoch from applied_at - occurred_at)) * 1000 as max
      from effects`;
    void before;
    console.log(
      `pipeline at steady ${rate} events/s offered (achieved ${(steadyTotal / offeredSeconds).toFixed(0)}/s over ${offeredSeconds.toFixed(1)} s, ${steadyTotal} events, 1/tx): ` +
        `end-to-end p50 ${Number(lat!.p50).toFixed(1)} ms, p99 ${Number(lat!.p99).toFixed(1)} ms, max ${Number(lat!.max).toFixed(1)} ms`,
    );
    const finalStats = await consumer.stop();
    await relay.stop();
    const rawAfter = await rawPublish("after");
    const rawRate = (rawBefore + rawAfter) / 2;
    console.log(
      `ratio pipeline/raw = ${(satRate / rawRate).toFixed(2)} (raw = mean of before/after ${rawRate.toFixed(0)} msg/s; target ≥ 0.5); ` +
        `consumer stats ${JSON.stringify(finalStats)}`,
    );
  } finally {
    await cleanup();
  }
}

await main();
