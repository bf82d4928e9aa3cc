import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { TransactionSql } from "postgres";
import { createDatabase, type Database, migrateDatabase } from "../../db/postgres.js";
import { type EventHandlers, eventHandlers } from "../consumer.js";
import type { DecodedEvent } from "../message-format.js";
import { connectNats } from "../nats.js";
import { outboxEvent } from "../outbox.js";
import {
  type DeadLetterStreamSpec,
  deadLetterStream,
  domainStream,
  provisionStreams,
  type StreamSpec,
} from "../streams.js";

export const TEST_DATABASE_URL =
  process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const TEST_NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";

/** The drizzle-kit migration generated from tables.ts (what a service would commit). */
export const EVENTS_MIGRATIONS = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  "migrations",
);

/**
 * One isolated world per test: its own Postgres schema (migrated with the
 * drizzle-kit output of tables.ts), its own domain stream, subject prefix and
 * DLQ stream, so test files run in parallel and repeatedly.
 */
export interface EventsTestEnv {
  id: string;
  schema: string;
  database: Database;
  nc: NatsConnection;
  jsm: JetStreamManager;
  domain: string;
  stream: StreamSpec;
  dlq: DeadLetterStreamSpec;
  /** A fresh connection to the same schema (a second replica, a crashed one). */
  openDatabase(max?: number): Database;
  /** A fresh NATS connection (optionally through a proxy address). */
  openNats(servers?: string): Promise<NatsConnection>;
  close(): Promise<void>;
}

export async function createEventsTestEnv(): Promise<EventsTestEnv> {
  const id = randomBytes(5).toString("hex");
  const schema = `t_ev_${id}`;
  await migrateDatabase({ url: TEST_DATABASE_URL, schema }, EVENTS_MIGRATIONS);
  const databases: Database[] = [];
  const connections: NatsConnection[] = [];
  const openDatabase = (max = 10) => {
    const db = createDatabase({ url: TEST_DATABASE_URL, schema, maxConnections: max });
    databases.push(db);
    return db;
  };
  const openNats = async (servers = TEST_NATS_URL) => {
    const nc = await connectNats({
      servers,
      name: `events-test-${id}`,
      reconnectTimeWaitMs: 250,
      pingIntervalMs: 2_000,
      maxPingOut: 2,
    });
    connections.push(nc);
    return nc;
  };
  const database = openDatabase();
  await database.sql.unsafe(`
    create table effects (
      id bigint generated always as identity primary key,
      consumer text not null,
      event_id uuid not null,
      aggregate_id text not null,
      aggregate_seq bigint not null,
      applied_at timestamptz not null default clock_timestamp()
    )`);
  const nc = await openNats();
  const jsm = await jetstreamManager(nc);
  const domain = `t${id}`;
  const stream = domainStream(
    domain,
    { maxAgeMs: 3_600_000, maxBytes: 256 * 1024 ** 2 },
    `T_${id}`,
  );
  const dlq = deadLetterStream({
    name: `T_${id}_DLQ`,
    subjectPrefix: `t${id}_dlq`,
    maxAgeMs: 3_600_000,
    maxBytes: 64 * 1024 ** 2,
  });
  await provisionStreams(jsm, [stream, dlq]);
  return {
    id,
    schema,
    database,
    nc,
    jsm,
    domain,
    stream,
    dlq,
    openDatabase,
    openNats,
    async close() {
      await jsm.streams.delete(stream.name).catch(() => {});
      await jsm.streams.delete(dlq.name).catch(() => {});
      await Promise.allSettled(connections.map((c) => c.close()));
      await database.sql.unsafe(`drop schema if exists "${schema}" cascade`).catch(() => {});
      await Promise.allSettled(databases.map((db) => db.close()));
    },
  };
}

/** Polls until `check` returns true; fails with `what` after the timeout. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 30_000,
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** A small real protobuf event (google.protobuf.Struct) for tests. */
export function testEvent(aggregateId: string, fields: JsonObject = {}, aggregateType = "thing") {
  return outboxEvent(StructSchema, fromJson(StructSchema, fields), { aggregateType, aggregateId });
}

/** Handlers that record every applied event in the `effects` table (no unique key). */
export function recordingHandlers(
  consumer: string,
  before?: (event: DecodedEvent<typeof StructSchema>, attempt: number) => Promise<void> | void,
): EventHandlers<TransactionSql> {
  return eventHandlers<TransactionSql>().on(StructSchema, async (event, { tx, attempt }) => {
    await before?.(event, attempt);
    await tx`insert into effects (consumer, event_id, aggregate_id, aggregate_seq)
             values (${consumer}, ${event.eventId}, ${event.aggregateId}, ${event.aggregateSeq})`;
  });
}

export async function countRows(db: Database, table: string, where = "true"): Promise<number> {
  const [row] = await db.sql.unsafe(`select count(*)::int as n from ${table} where ${where}`);
  return Number(row?.n ?? 0);
}

/** Every message of a stream in stream order (ordered consumer). */
export async function readStream(
  nc: NatsConnection,
  stream: string,
): Promise<{ seq: number; subject: string; headers: Record<string, string> }[]> {
  const js = jetstream(nc);
  const info = await (await jetstreamManager(nc)).streams.info(stream);
  const total = info.state.messages;
  const out: { seq: number; subject: string; headers: Record<string, string> }[] = [];
  if (total === 0) return out;
  const consumer = await js.consumers.get(stream);
  const iter = await consumer.consume();
  for await (const msg of iter) {
    const headers: Record<string, string> = {};
    for (const key of msg.headers?.keys() ?? []) headers[key] = msg.headers!.get(key);
    out.push({ seq: msg.seq, subject: msg.subject, headers });
    if (msg.info.pending === 0) break;
  }
  await iter.close();
  return out;
}
