import { toBinary } from "@bufbuild/protobuf";
import { context, propagation } from "@opentelemetry/api";
import type { TransactionSql } from "postgres";
import { plainArray, textArray } from "../../../platform/db/pg-array.js";
import { EventTooLargeError, InvalidEventError } from "../../../platform/events/errors.js";
import {
  defaultEventName,
  defaultSchemaVersion,
  eventSubject,
  isSubjectToken,
} from "../../../platform/events/message-format.js";
import {
  DEFAULT_MAX_EVENT_BYTES,
  OUTBOX_SEQUENCES_CTE,
  type OutboxEvent,
} from "../../../platform/events/outbox.js";
import { uuidV7 } from "./uuid-v7.js";

/*
 * The import's outbox writer: the same rows as platform/events `appendEvents`
 * (same tables, per-aggregate gap-free sequences from `outbox_aggregates`,
 * one pg_notify per call), but a fixed statement over parallel arrays
 * (`unnest`) instead of a VALUES list with 12 bind parameters per event. At
 * ~2,000 events a batch that VALUES text differs from batch to batch, so
 * Postgres parsed and planned ~24k parameters every time and the client
 * prepared a new statement per batch; these are prepared once per
 * connection. The payloads travel as one bytea sliced by offset: a bytea[]
 * costs the client a hex string and an array-escaping pass per event; the
 * other arrays as literals (platform/db/pg-array.ts).
 *
 * Array parameters are declared as text[] where drizzle's postgres-js driver
 * replaces the client serializer of the element type with a pass-through
 * (timestamptz, jsonb).
 */
const EVENTS = `
ev as (
  select e.*, substring($9::bytea from e.payload_at + 1 for e.payload_len) as payload
  from unnest($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[],
              $7::int8[], $8::int8[], $11::int4[], $12::int4[], $10::text[]::timestamptz[])
    with ordinality as e(event_id, subject, event_type, schema_version, aggregate_type,
                         aggregate_id, nth, cnt, payload_at, payload_len, occurred_at, idx)
)`;

const RESULT = `
select (select count(*) from inserted)::int as appended,
       pg_notify('outbox_' || current_schema(), '') as notified`;

/**
 * Aggregates that may have history: sequences continue from `outbox_aggregates`,
 * handed out (and locked, in the same order) exactly as appendEvents does.
 */
const APPEND = `
with ${EVENTS},
${OUTBOX_SEQUENCES_CTE},
inserted as (
  insert into outbox (event_id, subject, event_type, schema_version, aggregate_type,
                      aggregate_id, aggregate_seq, payload, trace_context, occurred_at)
  select ev.event_id, ev.subject, ev.event_type, ev.schema_version, ev.aggregate_type,
         ev.aggregate_id, seqs.last_seq - ev.cnt + ev.nth, ev.payload, $13::text::jsonb, ev.occurred_at
  from ev join seqs using (aggregate_type, aggregate_id)
  order by ev.idx
  returning 1
)${RESULT}`;

/**
 * Aggregates created by the caller's transaction (ids it just generated):
 * their sequences start at 1, so plain inserts do — no speculative insertion
 * and no join back. Should such an aggregate exist after all, the insert
 * into outbox_aggregates fails on its primary key and the batch rolls back:
 * the rule "sequences are gap-free and unique" cannot be broken silently.
 */
const APPEND_NEW = `
with ${EVENTS},
seqs as (
  insert into outbox_aggregates (aggregate_type, aggregate_id, last_seq)
  select aggregate_type, aggregate_id, max(cnt) from ev
  group by aggregate_type, aggregate_id
  returning 1
),
inserted as (
  insert into outbox (event_id, subject, event_type, schema_version, aggregate_type,
                      aggregate_id, aggregate_seq, payload, trace_context, occurred_at)
  select ev.event_id, ev.subject, ev.event_type, ev.schema_version, ev.aggregate_type,
         ev.aggregate_id, ev.nth, ev.payload, $13::text::jsonb, ev.occurred_at
  from ev
  order by ev.idx
  returning 1
)${RESULT}, (select count(*) from seqs)::int as aggregates`;

/**
 * Appends `events` in the caller's transaction; returns how many rows were
 * written. `newAggregates`: every event's aggregate was created in this
 * transaction and has no earlier event (see APPEND_NEW).
 */
export async function appendImportEvents(
  tx: TransactionSql,
  domain: string,
  events: readonly OutboxEvent[],
  options: { newAggregates?: boolean } = {},
): Promise<number> {
  if (events.length === 0) return 0;
  const n = events.length;
  const ids: string[] = new Array(n);
  const subjects: string[] = new Array(n);
  const types: string[] = new Array(n);
  const versions: number[] = new Array(n);
  const aggregateTypes: string[] = new Array(n);
  const aggregateIds: string[] = new Array(n);
  const nths: number[] = new Array(n);
  const counts: number[] = new Array(n);
  const payloads: Uint8Array[] = new Array(n);
  const payloadAt: number[] = new Array(n);
  const payloadLength: number[] = new Array(n);
  const occurred: string[] = new Array(n);
  const perAggregate = new Map<string, number[]>();
  let payloadBytes = 0;
  const now = new Date().toISOString();
  for (let i = 0; i < n; i++) {
    const event = events[i]!;
    const type = event.schema.typeName;
    const eventName = event.eventName ?? defaultEventName(event.schema);
    const eventDomain = event.domain ?? domain;
    for (const token of [eventDomain, event.aggregateType, eventName]) {
      if (!isSubjectToken(token))
        throw new InvalidEventError(`${type}: "${token}" is not a subject token`);
    }
    if (
      event.aggregateId === "" ||
      event.aggregateId.length > 256 ||
      /[\r\n]/.test(event.aggregateId)
    ) {
      throw new InvalidEventError(`${type}: aggregateId must be 1-256 chars without line breaks`);
    }
    const bytes = toBinary(event.schema, event.message);
    if (bytes.byteLength > DEFAULT_MAX_EVENT_BYTES)
      throw new EventTooLargeError(type, bytes.byteLength, DEFAULT_MAX_EVENT_BYTES);
    ids[i] = event.eventId ?? uuidV7();
    subjects[i] = eventSubject(eventDomain, event.aggregateType, eventName);
    types[i] = type;
    versions[i] = event.schemaVersion ?? defaultSchemaVersion(event.schema);
    aggregateTypes[i] = event.aggregateType;
    aggregateIds[i] = event.aggregateId;
    payloads[i] = bytes;
    payloadAt[i] = payloadBytes;
    payloadLength[i] = bytes.byteLength;
    payloadBytes += bytes.byteLength;
    occurred[i] = event.occurredAt?.toISOString() ?? now;
    const key = `${event.aggregateType}\u0000${event.aggregateId}`;
    const group = perAggregate.get(key);
    if (group) group.push(i);
    else perAggregate.set(key, [i]);
  }
  for (const group of perAggregate.values()) {
    group.forEach((index, k) => {
      nths[index] = k + 1;
      counts[index] = group.length;
    });
  }
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  const [row] = await tx.unsafe<{ appended: number }[]>(
    options.newAggregates ? APPEND_NEW : APPEND,
    [
      textArray(ids),
      textArray(subjects),
      textArray(types),
      plainArray(versions),
      textArray(aggregateTypes),
      textArray(aggregateIds),
      plainArray(nths),
      plainArray(counts),
      Buffer.concat(payloads, payloadBytes),
      textArray(occurred),
      plainArray(payloadAt),
      plainArray(payloadLength),
      JSON.stringify(carrier),
    ] as never[],
    { prepare: true },
  );
  return row?.appended ?? 0;
}
