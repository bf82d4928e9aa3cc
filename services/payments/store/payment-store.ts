import type { Sql, TransactionSql } from "postgres";
import type {
  DeclineReasonName,
  LedgerEntry,
  OperationName,
  PaymentState,
  PaymentStatusName,
} from "../domain/payment.js";

/**
 * The service's SQL, raw postgres.js with prepared statements (hot path).
 * Lease and expiry comparisons use the database clock, never the app's.
 */
export type Executor = Sql | TransactionSql;

/**
 * drizzle, sharing this postgres.js client, replaces its timestamp parsers
 * (values arrive as text in the session's DateStyle); epoch milliseconds are
 * unambiguous.
 */
function ms(column: string, alias = column): string {
  return `(extract(epoch from ${column}) * 1000)::float8 as ${alias}`;
}

const PAYMENT_COLUMNS = `id::text, order_id::text, provider, provider_reference,
  authorization_key::text, currency, amount_minor::text, captured_minor::text,
  refunded_minor::text, status, decline_reason, failure_code, pending_operation,
  (pending_until is not null and pending_until > now()) as pending_live,
  ${ms("create_time")}, ${ms("update_time")}`;

interface PaymentRow {
  id: string;
  order_id: string;
  provider: string;
  provider_reference: string | null;
  authorization_key: string;
  currency: string;
  amount_minor: string;
  captured_minor: string;
  refunded_minor: string;
  status: string;
  decline_reason: string | null;
  failure_code: string | null;
  pending_operation: string | null;
  pending_live: boolean;
  create_time: number;
  update_time: number;
}

function toPayment(row: PaymentRow): PaymentState {
  return {
    id: row.id,
    orderId: row.order_id,
    provider: row.provider,
    providerReference: row.provider_reference,
    authorizationKey: row.authorization_key,
    currency: row.currency,
    amountMinor: BigInt(row.amount_minor),
    capturedMinor: BigInt(row.captured_minor),
    refundedMinor: BigInt(row.refunded_minor),
    status: row.status as PaymentStatusName,
    declineReason: row.decline_reason as DeclineReasonName | null,
    failureCode: row.failure_code,
    pendingOperation: row.pending_operation as OperationName | null,
    pendingLive: row.pending_live,
    createTime: new Date(row.create_time),
    updateTime: new Date(row.update_time),
  };
}

const prepared = { prepare: true } as const;

async function query<T>(sql: Executor, text: string, params: unknown[]): Promise<T[]> {
  // biome-ignore lint/suspicious/noExplicitAny: postgres.js types parameters loosely
  return (await sql.unsafe(text, params as any[], prepared)) as unknown as T[];
}

export async function findPayment(
  sql: Executor,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<PaymentState | undefined> {
  const [row] = await query<PaymentRow>(
    sql,
    `select ${PAYMENT_COLUMNS} from payments where id = $1${options.forUpdate ? " for update" : ""}`,
    [id],
  );
  return row ? toPayment(row) : undefined;
}

export async function findPaymentByReference(
  sql: Executor,
  provider: string,
  reference: string,
): Promise<PaymentState | undefined> {
  const [row] = await query<PaymentRow>(
    sql,
    `select ${PAYMENT_COLUMNS} from payments
     where provider = $1 and provider_reference = $2 for update`,
    [provider, reference],
  );
  return row ? toPayment(row) : undefined;
}

interface AttemptRow {
  id: string;
  operation: string;
  idempotency_key: string;
  currency: string;
  amount_minor: string;
  outcome: string;
  provider_code: string | null;
  attempt_time: number;
  latency_us: number;
}

export async function listAttempts(sql: Executor, paymentId: string): Promise<LedgerEntry[]> {
  const rows = await query<AttemptRow>(
    sql,
    `select id::text, operation, idempotency_key, currency, amount_minor::text, outcome,
            provider_code, ${ms("attempt_time")}, latency_us
     from payment_attempts where payment_id = $1 order by attempt_time, id`,
    [paymentId],
  );
  return rows.map((row) => ({
    id: row.id,
    operation: row.operation as OperationName,
    idempotencyKey: row.idempotency_key,
    currency: row.currency,
    amountMinor: BigInt(row.amount_minor),
    outcome: row.outcome as LedgerEntry["outcome"],
    providerCode: row.provider_code,
    attemptTime: new Date(row.attempt_time),
    latencyUs: row.latency_us,
  }));
}

export interface NewAuthorization {
  key: string;
  requestHash: string;
  providerKey: string;
  paymentId: string;
  orderId: string;
  provider: string;
  currency: string;
  amountMinor: bigint;
  leaseMs: number;
}

export type AuthorizationClaim =
  | { kind: "created"; createTime: Date }
  /** The key exists and is final: answer from it without taking a lock. */
  | {
      kind: "completed";
      operation: OperationName;
      requestHash: string;
      paymentId: string;
    }
  /** The key exists but is not final (or not visible yet): take the locking path. */
  | { kind: "contended" };

/**
 * Claims a fresh idempotency key and creates its payment in one statement
 * (one round trip, atomic); when the key exists, reads it in the same
 * statement so a replay needs no lock. A concurrent insert of the same key
 * waits on the unique index until the first one commits.
 */
export async function claimNewAuthorization(
  sql: Executor,
  a: NewAuthorization,
): Promise<AuthorizationClaim> {
  const [row] = await query<{
    created: number | null;
    state: string | null;
    operation: string | null;
    request_hash: string | null;
    payment_id: string | null;
  }>(
    sql,
    `with k as (
       insert into idempotency_keys
         (key, operation, request_hash, provider_key, payment_id, state, lease_until)
       values ($1, 'AUTHORIZE', $2, $3, $4, 'in_progress', now() + make_interval(secs => $5))
       on conflict (key) do nothing
       returning 1
     ), p as (
       insert into payments (id, order_id, provider, authorization_key, currency, amount_minor,
                             status, pending_operation, pending_until)
       select $4, $6, $7, $3, $8, $9::bigint, 'AUTHORIZATION_PENDING', 'AUTHORIZE',
              now() + make_interval(secs => $5)
       where exists (select 1 from k)
       returning create_time
     )
     select (select (extract(epoch from create_time) * 1000)::float8 from p) as created,
            e.state, e.operation, e.request_hash, e.payment_id::text as payment_id
     from (values (1)) as one (x)
     left join idempotency_keys e on e.key = $1 and not exists (select 1 from k)`,
    [
      a.key,
      a.requestHash,
      a.providerKey,
      a.paymentId,
      a.leaseMs / 1000,
      a.orderId,
      a.provider,
      a.currency,
      a.amountMinor.toString(),
    ],
  );
  if (row?.created != null) return { kind: "created", createTime: new Date(row.created) };
  if (row?.state === "completed") {
    return {
      kind: "completed",
      operation: row.operation as OperationName,
      requestHash: row.request_hash!,
      paymentId: row.payment_id!,
    };
  }
  return { kind: "contended" };
}

export interface KeyRow {
  key: string;
  operation: OperationName;
  requestHash: string;
  providerKey: string;
  paymentId: string;
  state: "in_progress" | "completed" | "released";
  leaseLive: boolean;
  errorReason: string | null;
  errorMessage: string | null;
}

export async function lockKey(tx: Executor, key: string): Promise<KeyRow | undefined> {
  const [row] = await query<{
    key: string;
    operation: string;
    request_hash: string;
    provider_key: string;
    payment_id: string;
    state: string;
    lease_live: boolean;
    error_reason: string | null;
    error_message: string | null;
  }>(
    tx,
    `select key, operation, request_hash, provider_key::text, payment_id::text, state,
            (lease_until is not null and lease_until > now()) as lease_live,
            error_reason, error_message
     from idempotency_keys where key = $1 for update`,
    [key],
  );
  if (!row) return undefined;
  return {
    key: row.key,
    operation: row.operation as OperationName,
    requestHash: row.request_hash,
    providerKey: row.provider_key,
    paymentId: row.payment_id,
    state: row.state as KeyRow["state"],
    leaseLive: row.lease_live,
    errorReason: row.error_reason,
    errorMessage: row.error_message,
  };
}

/** Inserts a key for capture/void/refund; false when it already exists. */
export async function insertKey(
  tx: Executor,
  k: {
    key: string;
    operation: OperationName;
    requestHash: string;
    providerKey: string;
    paymentId: string;
    state: "in_progress" | "completed";
    leaseMs: number;
  },
): Promise<boolean> {
  const rows = await query(
    tx,
    `insert into idempotency_keys
       (key, operation, request_hash, provider_key, payment_id, state, lease_until)
     values ($1, $2, $3, $4, $5, $6,
             case when $6 = 'in_progress' then now() + make_interval(secs => $7) end)
     on conflict (key) do nothing
     returning 1`,
    [k.key, k.operation, k.requestHash, k.providerKey, k.paymentId, k.state, k.leaseMs / 1000],
  );
  return rows.length === 1;
}

export async function setKeyState(
  tx: Executor,
  key: string,
  state: "in_progress" | "completed" | "released",
  leaseMs = 0,
): Promise<void> {
  await query(
    tx,
    `update idempotency_keys
     set state = $2, update_time = now(),
         lease_until = case when $2 = 'in_progress' then now() + make_interval(secs => $3) end
     where key = $1`,
    [key, state, leaseMs / 1000],
  );
}

export async function markPending(
  tx: Executor,
  paymentId: string,
  operation: OperationName,
  leaseMs: number,
): Promise<void> {
  await query(
    tx,
    `update payments
     set pending_operation = $2, pending_until = now() + make_interval(secs => $3)
     where id = $1`,
    [paymentId, operation, leaseMs / 1000],
  );
}

export interface AttemptInsert {
  id: string;
  paymentId: string;
  operation: OperationName;
  idempotencyKey: string;
  providerKey: string;
  provider: string;
  currency: string;
  amountMinor: bigint;
  request: Record<string, unknown>;
  outcome: LedgerEntry["outcome"];
  providerCode: string | undefined;
  providerReference: string | undefined;
  error: string | undefined;
  latencyUs: number;
  attemptTime: Date;
}

function attemptParams(a: AttemptInsert | undefined): unknown[] {
  return [
    a?.id ?? null,
    a?.operation ?? null,
    a?.idempotencyKey ?? null,
    a?.providerKey ?? null,
    a?.provider ?? null,
    a?.currency ?? null,
    a?.amountMinor.toString() ?? null,
    a ? JSON.stringify(a.request) : null,
    a?.outcome ?? null,
    a?.providerCode ?? null,
    a?.providerReference ?? null,
    a?.error ?? null,
    a?.latencyUs ?? null,
    a?.attemptTime.toISOString() ?? null,
  ];
}

const ATTEMPT_COLUMNS = `(id, payment_id, operation, idempotency_key, provider_key, provider,
  currency, amount_minor, request, outcome, provider_code, provider_reference, error, latency_us,
  attempt_time)`;

export async function insertAttempt(sql: Executor, a: AttemptInsert): Promise<void> {
  await query(
    sql,
    `insert into payment_attempts ${ATTEMPT_COLUMNS}
     values ($1, $15, $2, $3, $4, $5, $6, $7::bigint, $8::jsonb, $9, $10, $11, $12, $13, $14)`,
    [...attemptParams(a), a.paymentId],
  );
}

export interface Finish {
  paymentId: string;
  /** The operation whose pending mark must still be ours. */
  operation: OperationName;
  status: PaymentStatusName;
  providerReference: string | null;
  declineReason: DeclineReasonName | null;
  failureCode: string | null;
  capturedMinor: bigint;
  refundedMinor: bigint;
  key: string;
  keyState: "completed" | "released";
  error?: { reason: string; message: string };
  /** The final answered provider call, recorded in the same transaction. */
  attempt?: AttemptInsert;
}

/**
 * Applies an operation's outcome in one statement: the payment row (only if
 * this request still owns its pending mark), the final ledger entry and the
 * idempotency key. Returns the new update time, or undefined when the pending
 * mark was lost (lease expired and another request took over).
 */
export async function finishOperation(tx: Executor, f: Finish): Promise<Date | undefined> {
  const [row] = await query<{ update_time: number }>(
    tx,
    `with p as (
       update payments
       set status = $15, provider_reference = $16, decline_reason = $17, failure_code = $18,
           captured_minor = $19::bigint, refunded_minor = $20::bigint,
           pending_operation = null, pending_until = null, update_time = now()
       where id = $21 and pending_operation = $22
       returning update_time
     ), a as (
       insert into payment_attempts ${ATTEMPT_COLUMNS}
       select $1::uuid, $21, $2, $3, $4::uuid, $5, $6, $7::bigint, $8::jsonb, $9, $10, $11, $12,
              $13::int, $14::timestamptz
       where $1::uuid is not null and exists (select 1 from p)
     ), k as (
       update idempotency_keys
       set state = $23, lease_until = null, error_reason = $24, error_message = $25,
           update_time = now()
       where key = $26 and exists (select 1 from p)
     )
     select ${ms("update_time")} from p`,
    [
      ...attemptParams(f.attempt),
      f.status,
      f.providerReference,
      f.declineReason,
      f.failureCode,
      f.capturedMinor.toString(),
      f.refundedMinor.toString(),
      f.paymentId,
      f.operation,
      f.keyState,
      f.error?.reason ?? null,
      f.error?.message ?? null,
      f.key,
    ],
  );
  return row ? new Date(row.update_time) : undefined;
}

export async function recordWebhook(
  tx: Executor,
  w: { provider: string; webhookId: string; eventType: string },
): Promise<boolean> {
  const rows = await query(
    tx,
    `insert into provider_webhooks (provider, webhook_id, event_type, effect)
     values ($1, $2, $3, 'received')
     on conflict (provider, webhook_id) do nothing
     returning 1`,
    [w.provider, w.webhookId, w.eventType],
  );
  return rows.length === 1;
}

export async function setWebhookEffect(
  tx: Executor,
  w: { provider: string; webhookId: string; paymentId: string | null; effect: string },
): Promise<void> {
  await query(
    tx,
    `update provider_webhooks set payment_id = $3, effect = $4
     where provider = $1 and webhook_id = $2`,
    [w.provider, w.webhookId, w.paymentId, w.effect],
  );
}

/** Applies an asynchronous authorization outcome to a pending payment. */
export async function resolvePendingAuthorization(
  tx: Executor,
  p: { paymentId: string; status: PaymentStatusName; declineReason: DeclineReasonName | null },
): Promise<Date | undefined> {
  const [row] = await query<{ update_time: number }>(
    tx,
    `update payments set status = $2, decline_reason = $3, update_time = now()
     where id = $1 and status = 'AUTHORIZATION_PENDING'
     returning ${ms("update_time")}`,
    [p.paymentId, p.status, p.declineReason],
  );
  return row ? new Date(row.update_time) : undefined;
}

/** Retention: keys past the contract's minimum, webhook receipts past any tolerance. */
export async function pruneExpired(
  sql: Executor,
  idempotencyRetentionHours: number,
): Promise<{ keys: number; webhooks: number }> {
  const keys = await query(
    sql,
    `delete from idempotency_keys
     where state <> 'in_progress' and create_time < now() - make_interval(hours => $1)
     returning 1`,
    [idempotencyRetentionHours],
  );
  const webhooks = await query(
    sql,
    `delete from provider_webhooks where received_at < now() - interval '7 days' returning 1`,
    [],
  );
  return { keys: keys.length, webhooks: webhooks.length };
}
