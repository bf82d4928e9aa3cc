/**
 * The floor of the event pipeline on this machine (run: `npx tsx
 * bench/events-floor.ts`; not a test): the same path as
 * bench/events-throughput.ts (writers commit rows → a relay publishes them
 * with Nats-Msg-Id and marks them sent → a consumer process records each
 * event id and one effect row per event in a transaction, then acks), built
 * from the same libraries and process layout but with none of the backbone's
 * features: no per-aggregate sequences or ordering check, no JSON rows, trace
 * context, metrics, spans, protobuf decoding, retries or dead letters, and one
 * index per table. What the backbone costs above this line is its features;
 * this line is what the same table + relay + consumer shape reaches on these
 * libraries without them (another design, e.g. a logical-decoding relay, is
 * not bounded by it).
 *
 * Env: EVENTS=20000 WRITERS=8 TX_EVENTS=10 AGGREGATES=1000 CONSUMER_BATCH=64
 *      CONCURRENCY=8 DATABASE_URL NATS_URL
 */
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { toBinary } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/nats-core";
import postgres from "postgres";
import { plainArray, textArray } from "../platform/db/pg-array.js";
import { connectNats } from "../platform/events/nats.js";
import { newEventId } from "../platform/events/outbox.js";
import { createAckPublisher } from "../platform/events/publish-acks.js";
import { domainStream, provisionStreams } from "../platform/events/streams.js";
import { testEvent } from "../platform/events/test-support/harness.js";
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
import { cpuMeter } from "./events-cpu.js";
import { rawPublishBaseline } from "./jetstream-raw-publish.js";

const CONSUMER_BATCH = env("CONSUMER_BATCH", 64);
const CONCURRENCY = env("CONCURRENCY", 8);

interface ConsumerArgs {
  schema: string;
  stream: string;
  consumer: string;
}

function connectSql(schema: string, max: number) {
  return postgres(DATABASE_URL, {
    max,
    onnotice: () => {},
    connection: { search_path: schema, application_name: schema },
  });
}

/** The consumer process: batches of deliveries, one transaction each, then acks. */
async function runConsumer(args: ConsumerArgs): Promise<void> {
  const sql = connectSql(args.schema, CONCURRENCY);
  const nc = await connectNats({ servers: NATS_URL, name: "bench-floor-consumer" });
  const consumer = await jetstream(nc).consumers.get(args.stream, args.consumer);
  const messages = await consumer.consume({ max_messages: CONCURRENCY * CONSUMER_BATCH });
  let running = 0;
  const slots: (() => void)[] = [];
  const process1 = async (batch: { id: string; ack: () => void }[]) => {
    await sql.begin(async (tx) => {
      await tx.unsafe(
        "insert into inbox (event_id) select unnest($1::uuid[]) on conflict do nothing",
        [plainArray(batch.map((m) => m.id))],
        { prepare: true },
      );
      await Promise.all(
        batch.map((m) => tx`insert into effects (event_id) values (${m.id}::uuid)`),
      );
    });
    for (const m of batch) m.ack();
  };
  let batch: { id: string; ack: () => void }[] = [];
  let scheduled = false;
  const dispatch = async () => {
    const current = batch;
    batch = [];
    if (current.length === 0) return;
    if (running >= CONCURRENCY) await new Promise<void>((resolve) => slots.push(resolve));
    running++;
    void process1(current).finally(() => {
      running--;
      slots.shift()?.();
    });
  };
  process.send?.("ready");
  for await (const msg of messages) {
    batch.push({ id: msg.headers?.get("Event-Id") ?? "", ack: () => msg.ack() });
    if (batch.length >= CONSUMER_BATCH) await dispatch();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        void dispatch();
      });
    }
  }
}

async function main(): Promise<void> {
  const id = randomBytes(4).toString("hex");
  const schema = `bench_floor_${id}`;
  const domain = `benchfloor${id}`;
  const sql = connectSql(schema, WRITERS + 2);
  await sql.unsafe(`create schema ${schema}`);
  await sql.unsafe(`
    create table outbox (
      position bigint generated always as identity primary key,
      event_id uuid not null, aggregate_id text not null, payload bytea not null,
      occurred_at timestamptz not null default now(), sent_at timestamptz);
    create index outbox_pending_idx on outbox (position) where sent_at is null;
    create table inbox (event_id uuid primary key);
    create table effects (event_id uuid primary key);`);
  const nc = await connectNats({ servers: NATS_URL, name: "bench-floor" });
  const jsm = await jetstreamManager(nc);
  const limits = { maxAgeMs: 3_600_000, maxBytes: 1024 ** 3 };
  const stream = domainStream(domain, limits, `BENCH_FLOOR_${id}`);
  const raw = domainStream(`${domain}raw`, limits, `BENCH_FLOOR_${id}_RAW`);
  await provisionStreams(jsm, [stream, raw]);
  const consumerName = `floor_${id}`;
  await jsm.consumers.add(stream.name, {
    durable_name: consumerName,
    ack_policy: AckPolicy.Explicit,
    max_ack_pending: 10_000,
  });
  const payload = toBinary(
    StructSchema,
    testEvent("agg-1", { order: "o-1", total: 1, currency: "EUR" }).message as never,
  );
  const child = fork(new URL(import.meta.url).pathname, ["consumer"], {
    execArgv: ["--import", "tsx"],
    env: {
      ...process.env,
      FLOOR_CONSUMER: JSON.stringify({ schema, stream: stream.name, consumer: consumerName }),
    },
  });
  const cleanup = async () => {
    child.kill();
    for (const s of [stream, raw]) await jsm.streams.delete(s.name).catch(() => {});
    await sql.unsafe(`drop schema if exists ${schema} cascade`).catch(() => {});
    await sql.end({ timeout: 5 });
    await nc.close();
  };
  try {
    await new Promise<void>((resolve, reject) => {
      child.once("message", () => resolve());
      child.once("exit", (code) => reject(new Error(`consumer exited with ${code}`)));
    });
    const rawPublish = rawPublishBaseline(nc, {
      subject: `${domain}raw.thing.struct`,
      payload,
      count: EVENTS,
      aggregates: AGGREGATES,
    });
    const rawBefore = await rawPublish("before");

    const acks = createAckPublisher(nc, 5_000);
    let relayDone = false;
    const relay = (async () => {
      while (!relayDone) {
        const sent = await sql.begin(async (tx) => {
          const rows = await tx.unsafe(
            `select position::text as position, event_id::text as event_id, aggregate_id, payload,
                    to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as occurred_at
             from outbox where sent_at is null order by position limit 1000 for update skip locked`,
          );
          await Promise.all(
            rows.map((row) => {
              const h = natsHeaders();
              h.append("Event-Type", "google.protobuf.Struct");
              h.append("Event-Id", row.event_id);
              h.append("Event-Time", row.occurred_at);
              h.append("Aggregate-Type", "thing");
              h.append("Aggregate-Id", row.aggregate_id);
              h.append("Aggregate-Seq", row.position);
              h.append("Schema-Version", "1");
              h.append("Nats-Msg-Id", row.event_id);
              return acks.publish(`${domain}.thing.struct`, row.payload, h);
            }),
          );
          if (rows.length > 0) {
            await tx.unsafe(
              "update outbox set sent_at = now() where position = any($1::bigint[])",
              [plainArray(rows.map((row) => row.position))],
            );
          }
          return rows.length;
        });
        if (sent === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    const cpu = cpuMeter(sql, schema, child.pid === undefined ? {} : { consumer: child.pid });
    const cpuStart = await cpu.snapshot();
    const started = performance.now();
    await runWriters(EVENTS, (from, count) => {
      const ids = Array.from({ length: count }, () => newEventId());
      const aggregates = ids.map((_, k) => `agg-${(from + k) % AGGREGATES}`);
      return sql.begin((tx) =>
        tx.unsafe(
          `insert into outbox (event_id, aggregate_id, payload)
           select unnest($1::uuid[]), unnest($2::text[]), $3::bytea`,
          [plainArray(ids), textArray(aggregates), Buffer.from(payload)],
          { prepare: true },
        ),
      );
    });
    for (;;) {
      const [row] = await sql`select count(*)::int as n from effects`;
      if (Number(row!.n) >= EVENTS) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const seconds = (performance.now() - started) / 1000;
    const cpuLine = cpu.report(cpuStart, await cpu.snapshot(), EVENTS);
    relayDone = true;
    await relay;
    acks.close();
    const rate = EVENTS / seconds;
    console.log(
      `floor pipeline: ${EVENTS} events (${WRITERS} writers × ${TX_EVENTS}/tx, consumer ${CONCURRENCY}×${CONSUMER_BATCH} in its own process) ` +
        `all effects after ${seconds.toFixed(2)} s = ${rate.toFixed(0)} events/s; ${cpuLine}`,
    );
    const rawAfter = await rawPublish("after");
    const rawRate = (rawBefore + rawAfter) / 2;
    console.log(
      `ratio floor/raw = ${(rate / rawRate).toFixed(2)} (raw = mean of before/after ${rawRate.toFixed(0)} msg/s)`,
    );
  } finally {
    await cleanup();
  }
}

if (process.argv[2] === "consumer") {
  await runConsumer(JSON.parse(process.env.FLOOR_CONSUMER ?? "{}") as ConsumerArgs);
} else {
  await main();
}
