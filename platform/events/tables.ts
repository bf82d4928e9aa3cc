import { sql } from "drizzle-orm";
import {
  bigint,
  customType,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

/**
 * Event backbone tables. A service re-exports them from its own drizzle schema
 * (`export { outbox, outboxAggregates, inbox } from "../../platform/events/tables.js"`)
 * so drizzle-kit generates their migrations into the service's migration
 * folder. Declared without a pg schema: they live in the service's schema via
 * `search_path`, like every other service table.
 */

const bytea = customType<{ data: Uint8Array; driverData: Buffer }>({
  dataType: () => "bytea",
  toDriver: (value) => Buffer.from(value.buffer, value.byteOffset, value.byteLength),
  fromDriver: (value) => new Uint8Array(value),
});

export const outbox = pgTable(
  "outbox",
  {
    // Global insertion order; within one aggregate it follows the aggregate
    // sequence because sequences are handed out under a row lock (see
    // outboxAggregates) that is held until commit.
    position: bigint("position", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    eventId: uuid("event_id").notNull(),
    subject: text("subject").notNull(),
    eventType: text("event_type").notNull(),
    schemaVersion: integer("schema_version").notNull(),
    aggregateType: text("aggregate_type").notNull(),
    aggregateId: text("aggregate_id").notNull(),
    aggregateSeq: bigint("aggregate_seq", { mode: "number" }).notNull(),
    payload: bytea("payload").notNull(),
    // W3C trace context of the writing transaction (traceparent/tracestate).
    traceContext: jsonb("trace_context").$type<Record<string, string>>().notNull().default({}),
    occurredAt: timestamp("occurred_at", { withTimezone: true, mode: "date" }).notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    sentAt: timestamp("sent_at", { withTimezone: true, mode: "date" }),
    publishAttempts: integer("publish_attempts").notNull().default(0),
    lastError: text("last_error"),
  },
  (t) => [
    uniqueIndex("outbox_event_id_key").on(t.eventId),
    uniqueIndex("outbox_aggregate_seq_key").on(t.aggregateType, t.aggregateId, t.aggregateSeq),
    // The relay scans only unsent rows; the partial index stays small.
    index("outbox_pending_idx").on(t.position).where(sql`sent_at is null`),
    // The relay's "earlier unsent event of this aggregate?" check must not wade
    // through an aggregate's sent (not yet pruned) history.
    index("outbox_pending_aggregate_idx")
      .on(t.aggregateType, t.aggregateId, t.aggregateSeq)
      .where(sql`sent_at is null`),
    index("outbox_sent_at_idx").on(t.sentAt).where(sql`sent_at is not null`),
  ],
);

/**
 * Last sequence handed out per aggregate. Kept apart from the outbox so that
 * pruning sent rows never resets a sequence, and so that concurrent
 * transactions on one aggregate serialise on this row (commit order = sequence
 * order, which the relay relies on).
 */
export const outboxAggregates = pgTable(
  "outbox_aggregates",
  {
    aggregateType: text("aggregate_type").notNull(),
    aggregateId: text("aggregate_id").notNull(),
    lastSeq: bigint("last_seq", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.aggregateType, t.aggregateId] })],
);

/** Event ids a consumer has applied; written in the same transaction as the effect. */
export const inbox = pgTable(
  "inbox",
  {
    consumer: text("consumer").notNull(),
    eventId: uuid("event_id").notNull(),
    processedAt: timestamp("processed_at", { withTimezone: true, mode: "date" })
      .notNull()
      .defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.consumer, t.eventId] }),
    index("inbox_processed_at_idx").on(t.processedAt),
  ],
);
