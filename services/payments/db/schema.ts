import { sql } from "drizzle-orm";
import {
  bigint,
  check,
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

export { inbox, outbox, outboxAggregates } from "../../../platform/events/tables.js";

/*
 * Statuses and operations are stored as the proto enum names without their
 * prefix (AUTHORIZED, CAPTURE, ...): readable in SQL, stable across enum
 * renumbering, checked by constraints.
 */
const STATUSES = sql.raw(
  `'AUTHORIZATION_PENDING','AUTHORIZED','DECLINED','FAILED','CAPTURED','PARTIALLY_REFUNDED','REFUNDED','VOIDED'`,
);
const OPERATIONS = sql.raw(`'AUTHORIZE','CAPTURE','VOID','REFUND'`);

export const payments = pgTable(
  "payments",
  {
    id: uuid("id").primaryKey(),
    orderId: uuid("order_id").notNull(),
    provider: text("provider").notNull(),
    // Null until the provider answered the authorization.
    providerReference: text("provider_reference"),
    // The provider idempotency key of the authorization: a void can still
    // reach an authorization whose answer never arrived (timeouts).
    authorizationKey: uuid("authorization_key").notNull(),
    currency: text("currency").notNull(),
    amountMinor: bigint("amount_minor", { mode: "bigint" }).notNull(),
    capturedMinor: bigint("captured_minor", { mode: "bigint" }).notNull().default(sql`0`),
    refundedMinor: bigint("refunded_minor", { mode: "bigint" }).notNull().default(sql`0`),
    status: text("status").notNull(),
    declineReason: text("decline_reason"),
    failureCode: text("failure_code"),
    // A provider call in flight for this payment; serialises capture, void
    // and refund without holding a transaction open across the network call.
    // A crashed owner's lease expires and the operation can be resumed.
    pendingOperation: text("pending_operation"),
    pendingUntil: timestamp("pending_until", { withTimezone: true, mode: "date" }),
    createTime: timestamp("create_time", { withTimezone: true, mode: "date" })
      .notNull()
      .defaultNow(),
    updateTime: timestamp("update_time", { withTimezone: true, mode: "date" })
      .notNull()
      .defaultNow(),
  },
  (t) => [
    index("payments_order_id_idx").on(t.orderId),
    uniqueIndex("payments_provider_reference_key")
      .on(t.provider, t.providerReference)
      .where(sql`provider_reference is not null`),
    check("payments_status_valid", sql`${t.status} in (${STATUSES})`),
    check("payments_pending_operation_valid", sql`${t.pendingOperation} in (${OPERATIONS})`),
    check("payments_currency_format", sql`${t.currency} ~ '^[A-Z]{3}$'`),
    check("payments_amount_positive", sql`${t.amountMinor} > 0`),
    check(
      "payments_captured_bounds",
      sql`${t.capturedMinor} >= 0 and ${t.capturedMinor} <= ${t.amountMinor}`,
    ),
    check(
      "payments_refunded_bounds",
      sql`${t.refundedMinor} >= 0 and ${t.refundedMinor} <= ${t.capturedMinor}`,
    ),
  ],
);

/**
 * One row per idempotency key of a mutating RPC (kept ≥ 24 h). `provider_key`
 * is the idempotency key sent to the provider: it stays the same for every
 * retry of this RPC key, so the provider never executes the operation twice.
 */
export const idempotencyKeys = pgTable(
  "idempotency_keys",
  {
    key: text("key").primaryKey(),
    operation: text("operation").notNull(),
    requestHash: text("request_hash").notNull(),
    providerKey: uuid("provider_key").notNull(),
    paymentId: uuid("payment_id")
      .notNull()
      .references(() => payments.id),
    // in_progress: a request owns it until lease_until; completed: result
    // final (replays answer from it); released: the provider was not reached
    // or answered nothing final, the next request with the key resumes.
    state: text("state").notNull(),
    leaseUntil: timestamp("lease_until", { withTimezone: true, mode: "date" }),
    // A final error outcome replayed to later requests with the key.
    errorReason: text("error_reason"),
    errorMessage: text("error_message"),
    createTime: timestamp("create_time", { withTimezone: true, mode: "date" })
      .notNull()
      .defaultNow(),
    updateTime: timestamp("update_time", { withTimezone: true, mode: "date" })
      .notNull()
      .defaultNow(),
  },
  (t) => [
    index("idempotency_keys_create_time_idx").on(t.createTime),
    check(
      "idempotency_keys_state_valid",
      sql`${t.state} in ('in_progress','completed','released')`,
    ),
    check("idempotency_keys_operation_valid", sql`${t.operation} in (${OPERATIONS})`),
  ],
);

/** The ledger: every call made to a provider, whatever its outcome. */
export const paymentAttempts = pgTable(
  "payment_attempts",
  {
    id: uuid("id").primaryKey(),
    paymentId: uuid("payment_id")
      .notNull()
      .references(() => payments.id),
    operation: text("operation").notNull(),
    idempotencyKey: text("idempotency_key").notNull(),
    providerKey: uuid("provider_key").notNull(),
    provider: text("provider").notNull(),
    currency: text("currency").notNull(),
    amountMinor: bigint("amount_minor", { mode: "bigint" }).notNull(),
    // What was sent, without the payment method token (only its fingerprint).
    request: jsonb("request").$type<Record<string, unknown>>().notNull(),
    outcome: text("outcome").notNull(),
    providerCode: text("provider_code"),
    providerReference: text("provider_reference"),
    error: text("error"),
    latencyUs: integer("latency_us").notNull(),
    attemptTime: timestamp("attempt_time", { withTimezone: true, mode: "date" }).notNull(),
  },
  (t) => [
    index("payment_attempts_payment_idx").on(t.paymentId, t.attemptTime),
    check("payment_attempts_operation_valid", sql`${t.operation} in (${OPERATIONS})`),
    check(
      "payment_attempts_outcome_valid",
      sql`${t.outcome} in ('SUCCEEDED','PENDING','DECLINED','FAILED')`,
    ),
  ],
);

/**
 * Provider notifications already applied: a replayed `webhook-id` is
 * acknowledged without effect. Rows outlive the signature tolerance window.
 */
export const providerWebhooks = pgTable(
  "provider_webhooks",
  {
    provider: text("provider").notNull(),
    webhookId: text("webhook_id").notNull(),
    eventType: text("event_type").notNull(),
    paymentId: uuid("payment_id"),
    effect: text("effect").notNull(),
    receivedAt: timestamp("received_at", { withTimezone: true, mode: "date" })
      .notNull()
      .defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.provider, t.webhookId] }),
    index("provider_webhooks_received_at_idx").on(t.receivedAt),
  ],
);
