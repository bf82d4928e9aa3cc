import { randomFillSync } from "node:crypto";
import { type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { context, propagation } from "@opentelemetry/api";
import { v7 as uuidv7 } from "uuid";
import { EventTooLargeError, InvalidEventError } from "./errors.js";
import {
  defaultEventName,
  defaultSchemaVersion,
  eventSubject,
  isSubjectToken,
} from "./message-format.js";
import { runQuery, type SqlExecutor } from "./sql-executor.js";

/**
 * NATS' default max_payload is 1 MiB and includes headers; keep room for them.
 * A deployment that raises max_payload can raise this too.
 */
export const DEFAULT_MAX_EVENT_BYTES = 1024 * 1024 - 16 * 1024;

// uuid's default draws 16 bytes from WebCrypto per id (about 3 µs, more than
// the rest of preparing an event); ids are minted per event on the write path,
// so they take their randomness from a pooled buffer instead.
const randomPool = new Uint8Array(16 * 256);
let randomOffset = randomPool.length;
function pooledRandom16(): Uint8Array {
  if (randomOffset === randomPool.length) {
    randomFillSync(randomPool);
    randomOffset = 0;
  }
  randomOffset += 16;
  return randomPool.subarray(randomOffset - 16, randomOffset);
}

/** A fresh UUIDv7 event id (time-ordered to the millisecond). */
export function newEventId(): string {
  return uuidv7({ rng: pooledRandom16 });
}

export interface OutboxEvent<Desc extends DescMessage = DescMessage> {
  schema: Desc;
  message: MessageShape<Desc>;
  aggregateType: string;
  aggregateId: string;
  /** Subject's first token; defaults to the outbox's domain. */
  domain?: string;
  /** Subject's last token; defaults to snake_case of the message name. */
  eventName?: string;
  /** Defaults to a fresh UUIDv7. */
  eventId?: string;
  occurredAt?: Date;
  /** Defaults to N of the package's `vN` suffix. */
  schemaVersion?: number;
}

/** Typed constructor: checks that `message` matches `schema` at compile time. */
export function outboxEvent<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
  fields: Omit<OutboxEvent<Desc>, "schema" | "message">,
): OutboxEvent {
  return { schema, message, ...fields } as unknown as OutboxEvent;
}

export interface AppendOptions {
  /** Default subject domain (the service's stream), e.g. "orders". */
  domain?: string;
  maxEventBytes?: number;
  /**
   * Wake relays through pg_notify in the same transaction (default true).
   * Postgres serialises the commits of notifying transactions (a global lock
   * held through the commit's WAL flush); some runs here showed half the
   * append rate with it, though the shared machine was too noisy to be sure.
   * With `false` the relay finds rows by polling (25 ms while busy,
   * pollIntervalMs when idle).
   */
  notify?: boolean;
}

export interface AppendedEvent {
  eventId: string;
  subject: string;
  eventType: string;
  aggregateType: string;
  aggregateId: string;
  aggregateSeq: number;
}

/**
 * One NOTIFY channel per schema: services sharing a database (one schema each
 * locally) do not wake each other's relays.
 */
export function outboxChannel(schema: string): string {
  return `outbox_${schema}`;
}

interface PreparedEvent {
  eventId: string;
  subject: string;
  eventType: string;
  schemaVersion: number;
  aggregateType: string;
  aggregateId: string;
  payload: Buffer;
  traceContext: Record<string, string>;
  occurredAt: string;
  /** 1-based position of this event among the same aggregate's in this call. */
  nth: number;
  /** Events of the same aggregate in this call. */
  count: number;
}

// One JSON parameter carries a chunk; bound the statement's size all the same.
const MAX_ROWS_PER_STATEMENT = 5_000;

function prepare(events: readonly OutboxEvent[], options: AppendOptions): PreparedEvent[] {
  const limit = options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  const traceContext = carrier;
  const perAggregate = new Map<string, PreparedEvent[]>();
  const prepared: PreparedEvent[] = [];
  for (const event of events) {
    const eventType = event.schema.typeName;
    const domain = event.domain ?? options.domain;
    const eventName = event.eventName ?? defaultEventName(event.schema);
    if (domain === undefined) throw new InvalidEventError(`${eventType}: no domain given`);
    for (const [what, token] of [
      ["domain", domain],
      ["aggregateType", event.aggregateType],
      ["eventName", eventName],
    ] as const) {
      if (!isSubjectToken(token)) {
        throw new InvalidEventError(`${eventType}: ${what} "${token}" is not a subject token`);
      }
    }
    // The id travels in a NATS header: no line breaks, bounded length.
    if (
      event.aggregateId === "" ||
      event.aggregateId.length > 256 ||
      /[\r\n]/.test(event.aggregateId)
    ) {
      throw new InvalidEventError(
        `${eventType}: aggregateId must be 1-256 chars without line breaks`,
      );
    }
    if (event.message.$typeName !== eventType) {
      throw new InvalidEventError(`message ${event.message.$typeName} does not match ${eventType}`);
    }
    const bytes = toBinary(event.schema, event.message);
    if (bytes.byteLength > limit) throw new EventTooLargeError(eventType, bytes.byteLength, limit);
    const key = `${event.aggregateType}\u0000${event.aggregateId}`;
    const group = perAggregate.get(key) ?? [];
    const row: PreparedEvent = {
      eventId: event.eventId ?? newEventId(),
      subject: eventSubject(domain, event.aggregateType, eventName),
      eventType,
      schemaVersion: event.schemaVersion ?? defaultSchemaVersion(event.schema),
      aggregateType: event.aggregateType,
      aggregateId: event.aggregateId,
      payload: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      traceContext,
      occurredAt: (event.occurredAt ?? new Date()).toISOString(),
      nth: group.length + 1,
      count: 0,
    };
    group.push(row);
    perAggregate.set(key, group);
    prepared.push(row);
  }
  for (const group of perAggregate.values()) for (const row of group) row.count = group.length;
  return prepared;
}

/*
 * One statement text for any number of events: the rows travel as a single
 * JSON parameter, so the statement is parsed and planned once per connection
 * (a VALUES list with a parameter per column made every batch size a new text
 * and cost ~12 bind parameters of client work per event).
 * Sequence rows are locked in one fixed order (C collation) so two
 * transactions touching the same aggregates cannot deadlock.
 */
const EVENT_COLUMNS = `idx int, event_id uuid, subject text, event_type text, schema_version int,
  aggregate_type text, aggregate_id text, nth bigint, cnt bigint, payload text,
  trace_context jsonb, occurred_at timestamptz`;

/**
 * The CTE `seqs` that hands out per-aggregate sequences to the events of a
 * CTE `ev` (aggregate_type, aggregate_id, cnt = that aggregate's events in
 * the statement): it returns each aggregate's new last_seq, so an event's
 * sequence is `last_seq - cnt + nth`. Rows lock in one order (C collation).
 */
export const OUTBOX_SEQUENCES_CTE = `seqs as (
  insert into outbox_aggregates (aggregate_type, aggregate_id, last_seq)
  select aggregate_type, aggregate_id, max(cnt) from ev
  group by aggregate_type, aggregate_id
  order by aggregate_type collate "C", aggregate_id collate "C"
  on conflict (aggregate_type, aggregate_id)
    do update set last_seq = outbox_aggregates.last_seq + excluded.last_seq
  returning aggregate_type, aggregate_id, last_seq
)`;

const APPEND = (notify: boolean) => `
with ev as materialized (
  select * from json_to_recordset($1::json) as e(${EVENT_COLUMNS})
),
${OUTBOX_SEQUENCES_CTE},
inserted as (
  insert into outbox (event_id, subject, event_type, schema_version, aggregate_type,
                      aggregate_id, aggregate_seq, payload, trace_context, occurred_at)
  select ev.event_id, ev.subject, ev.event_type, ev.schema_version, ev.aggregate_type,
         ev.aggregate_id, seqs.last_seq - ev.cnt + ev.nth, decode(ev.payload, 'base64'),
         ev.trace_context, ev.occurred_at
  from ev join seqs using (aggregate_type, aggregate_id)
  order by ev.idx
  returning event_id, aggregate_seq
)
select i.event_id::text as event_id, i.aggregate_seq::text as aggregate_seq${
  notify ? `, pg_notify('outbox_' || current_schema(), '') as notified` : ""
}
from inserted i`;

const APPEND_NOTIFY = APPEND(true);
const APPEND_SILENT = APPEND(false);

function rowsJson(rows: PreparedEvent[]): string {
  return JSON.stringify(
    rows.map((row, idx) => ({
      idx,
      event_id: row.eventId,
      subject: row.subject,
      event_type: row.eventType,
      schema_version: row.schemaVersion,
      aggregate_type: row.aggregateType,
      aggregate_id: row.aggregateId,
      nth: row.nth,
      cnt: row.count,
      payload: row.payload.toString("base64"),
      trace_context: row.traceContext,
      occurred_at: row.occurredAt,
    })),
  );
}

/**
 * Writes events into the outbox inside the caller's transaction, so they
 * commit (and are later published) only together with the state change.
 * Sequences are per aggregate and gap-free.
 */
export async function appendEvents(
  tx: SqlExecutor,
  events: readonly OutboxEvent[],
  options: AppendOptions = {},
): Promise<AppendedEvent[]> {
  if (events.length === 0) return [];
  const prepared = prepare(events, options);
  const seqById = new Map<string, number>();
  for (let start = 0; start < prepared.length; start += MAX_ROWS_PER_STATEMENT) {
    const chunk = prepared.slice(start, start + MAX_ROWS_PER_STATEMENT);
    // Later chunks of the same aggregate must continue its numbering.
    const renumbered = renumber(chunk);
    const rows = await runQuery<{ event_id: string; aggregate_seq: string }>(
      tx,
      options.notify === false ? APPEND_SILENT : APPEND_NOTIFY,
      [rowsJson(renumbered)],
    );
    for (const row of rows) seqById.set(row.event_id, Number(row.aggregate_seq));
  }
  return prepared.map((row) => ({
    eventId: row.eventId,
    subject: row.subject,
    eventType: row.eventType,
    aggregateType: row.aggregateType,
    aggregateId: row.aggregateId,
    aggregateSeq: seqById.get(row.eventId) ?? 0,
  }));
}

function renumber(chunk: PreparedEvent[]): PreparedEvent[] {
  const counts = new Map<string, number>();
  const out = chunk.map((row) => {
    const key = `${row.aggregateType}\u0000${row.aggregateId}`;
    const nth = (counts.get(key) ?? 0) + 1;
    counts.set(key, nth);
    return { ...row, nth };
  });
  for (const row of out) row.count = counts.get(`${row.aggregateType}\u0000${row.aggregateId}`)!;
  return out;
}

/** An outbox bound to a service's domain and limits. */
export interface Outbox {
  append(tx: SqlExecutor, events: readonly OutboxEvent[]): Promise<AppendedEvent[]>;
}

export function createOutbox(options: AppendOptions & { domain: string }): Outbox {
  return { append: (tx, events) => appendEvents(tx, events, options) };
}
