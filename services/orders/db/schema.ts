import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  customType,
  foreignKey,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  smallint,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

export { inbox, outbox, outboxAggregates } from "../../../platform/events/tables.js";

const bytea = customType<{ data: Uint8Array; driverData: Buffer }>({ dataType: () => "bytea" });
const tstz = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

/**
 * The source of truth: every order's history, append-only. The primary key
 * (order_id, sequence) is the optimistic-concurrency check: two writers that
 * read the same version cannot both append the next sequence.
 */
export const orderEvents = pgTable(
  "order_events",
  {
    orderId: uuid("order_id").notNull(),
    sequence: bigint("sequence", { mode: "number" }).notNull(),
    eventId: uuid("event_id").notNull(),
    /** The OrderEvent `kind` field name, e.g. "placed", "confirmed". */
    eventType: text("event_type").notNull(),
    /** The binary OrderEvent envelope (what the bus, WatchOrder and webhooks carry). */
    payload: bytea("payload").notNull(),
    occurredAt: tstz("occurred_at").notNull(),
    /** Event (or request) that caused this one. */
    causationId: text("causation_id"),
    /** Request the whole checkout started from. */
    correlationId: text("correlation_id"),
  },
  (t) => [
    primaryKey({ name: "order_events_pkey", columns: [t.orderId, t.sequence] }),
    uniqueIndex("order_events_event_id_key").on(t.eventId),
    check("order_events_sequence_positive", sql`${t.sequence} >= 1`),
  ],
);

/** Read projection of order_events, updated in the same transaction; serves Get/List. */
export const orders = pgTable(
  "orders",
  {
    id: uuid("id").primaryKey(),
    userId: text("user_id").notNull(),
    /** commerce.orders.v1.OrderStatus number. */
    status: smallint("status").notNull(),
    totalMinor: bigint("total_minor", { mode: "bigint" }).notNull(),
    currency: text("currency").notNull(),
    /** Lines as priced at placement: [{productId, sku, name, quantity, unitPriceMinor, lineTotalMinor}]. */
    items: jsonb("items").notNull(),
    paymentId: text("payment_id").notNull().default(""),
    rejectionReason: smallint("rejection_reason"),
    lastSequence: bigint("last_sequence", { mode: "number" }).notNull(),
    /** The whole Order message (binary) as served by Get/List. */
    view: bytea("view").notNull(),
    createdAt: tstz("created_at").notNull(),
    updatedAt: tstz("updated_at").notNull(),
  },
  (t) => [
    // Keyset pages, newest first (ids are UUIDv7, so id order is creation order).
    index("orders_user_id_idx").on(t.userId, t.id.desc()),
    index("orders_status_id_idx").on(t.status, t.id.desc()),
    check("orders_total_nonnegative", sql`${t.totalMinor} >= 0`),
    check("orders_status_known", sql`${t.status} between 1 and 7`),
  ],
);

/** CreateOrder idempotency keys, scoped to the user, kept at least 24 hours. */
export const orderRequests = pgTable(
  "order_requests",
  {
    userId: text("user_id").notNull(),
    requestId: text("request_id").notNull(),
    /** SHA-256 of the request message: same key + other body is refused. */
    requestHash: bytea("request_hash").notNull(),
    orderId: uuid("order_id").notNull(),
    createdAt: tstz("created_at").notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ name: "order_requests_pkey", columns: [t.userId, t.requestId] }),
    index("order_requests_created_at_idx").on(t.createdAt),
  ],
);

/**
 * Private saga data that must never appear in events: the payment method
 * token (erased when the saga ends) and the deadline.
 */
export const orderSagas = pgTable(
  "order_sagas",
  {
    orderId: uuid("order_id").primaryKey(),
    paymentMethodToken: text("payment_method_token"),
    deadlineAt: tstz("deadline_at").notNull(),
    completedAt: tstz("completed_at"),
    createdAt: tstz("created_at").notNull().defaultNow(),
  },
  (t) => [
    index("order_sagas_open_deadline_idx").on(t.deadlineAt).where(sql`${t.completedAt} is null`),
    foreignKey({ name: "order_sagas_order_fk", columns: [t.orderId], foreignColumns: [orders.id] }),
  ],
);

export const webhookSubscriptions = pgTable(
  "webhook_subscriptions",
  {
    id: uuid("id").primaryKey(),
    url: text("url").notNull(),
    eventTypes: text("event_types").array().notNull(),
    description: text("description").notNull().default(""),
    enabled: boolean("enabled").notNull().default(true),
    /** Signing secret ("whsec_..."); needed in clear to compute HMACs. */
    secret: text("secret").notNull(),
    secretCreatedAt: tstz("secret_created_at").notNull(),
    previousSecret: text("previous_secret"),
    previousSecretExpiresAt: tstz("previous_secret_expires_at"),
    /** Per-endpoint circuit breaker, shared by all replicas. */
    consecutiveFailures: integer("consecutive_failures").notNull().default(0),
    circuitOpenUntil: tstz("circuit_open_until"),
    createdBy: text("created_by").notNull(),
    requestId: text("request_id"),
    requestHash: bytea("request_hash"),
    createdAt: tstz("created_at").notNull(),
    updatedAt: tstz("updated_at").notNull(),
    deletedAt: tstz("deleted_at"),
  },
  (t) => [
    index("webhook_subscriptions_live_idx").on(t.id.desc()).where(sql`${t.deletedAt} is null`),
    uniqueIndex("webhook_subscriptions_request_key")
      .on(t.createdBy, t.requestId)
      .where(sql`${t.requestId} is not null`),
  ],
);

export const webhookDeliveries = pgTable(
  "webhook_deliveries",
  {
    id: uuid("id").primaryKey(),
    subscriptionId: uuid("subscription_id").notNull(),
    eventId: uuid("event_id").notNull(),
    eventType: text("event_type").notNull(),
    orderId: uuid("order_id").notNull(),
    /** The JSON body, fixed at creation so every attempt signs the same bytes. */
    body: text("body").notNull(),
    /** commerce.orders.v1.WebhookDeliveryState number. */
    state: smallint("state").notNull(),
    attemptCount: integer("attempt_count").notNull().default(0),
    nextAttemptAt: tstz("next_attempt_at"),
    /** A worker owns the delivery until then (crash → another takes it over). */
    leaseUntil: tstz("lease_until"),
    /** No automatic attempts after this. */
    giveUpAt: tstz("give_up_at").notNull(),
    createdAt: tstz("created_at").notNull(),
    updatedAt: tstz("updated_at").notNull(),
  },
  (t) => [
    uniqueIndex("webhook_deliveries_subscription_event_key").on(t.subscriptionId, t.eventId),
    index("webhook_deliveries_subscription_idx").on(t.subscriptionId, t.id.desc()),
    index("webhook_deliveries_due_idx").on(t.nextAttemptAt).where(sql`${t.state} in (1, 2)`),
    foreignKey({
      name: "webhook_deliveries_subscription_fk",
      columns: [t.subscriptionId],
      foreignColumns: [webhookSubscriptions.id],
    }),
  ],
);

export const webhookAttempts = pgTable(
  "webhook_attempts",
  {
    deliveryId: uuid("delivery_id").notNull(),
    attemptNumber: integer("attempt_number").notNull(),
    attemptedAt: tstz("attempted_at").notNull(),
    httpStatus: integer("http_status").notNull(),
    latencyUs: integer("latency_us").notNull(),
    error: text("error").notNull().default(""),
  },
  (t) => [
    primaryKey({ name: "webhook_attempts_pkey", columns: [t.deliveryId, t.attemptNumber] }),
    foreignKey({
      name: "webhook_attempts_delivery_fk",
      columns: [t.deliveryId],
      foreignColumns: [webhookDeliveries.id],
    }),
  ],
);
