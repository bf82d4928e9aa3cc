import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { Sql } from "postgres";
import {
  ConflictError,
  FailedPreconditionError,
  NotFoundError,
} from "../../../platform/errors/domain-errors.js";
import type { Outbox, OutboxEvent } from "../../../platform/events/index.js";
import { remainingDeadlineMs } from "../../../platform/rpc/call-context.js";
import type { LedgerEntry, OperationName, PaymentState } from "../domain/payment.js";
import type { PaymentsConfig } from "../payments-config.js";
import type { AttemptRecord, ProviderExecutor } from "../providers/provider-executor.js";
import type { ProviderRegistry } from "../providers/provider-registry.js";
import {
  type AttemptInsert,
  type Finish,
  findPayment,
  finishOperation,
  listAttempts,
} from "../store/payment-store.js";

export interface OperationsDeps {
  sql: Sql;
  providers: ProviderRegistry;
  executor: ProviderExecutor;
  outbox: Outbox;
  config: PaymentsConfig;
  logger: Logger;
  /** Longest time an operation may hold its key/payment (see operationLeaseMs). */
  leaseMs: number;
  inFlight: InFlight;
}

/** What every operation returns: the payment and its ledger. */
export interface PaymentView {
  payment: PaymentState;
  attempts: LedgerEntry[];
}

/** Request fingerprint: same key + different fingerprint = key reuse. */
export function fingerprint(parts: readonly (string | bigint | undefined)[]): string {
  return createHash("sha256")
    .update(JSON.stringify(parts.map((p) => (p === undefined ? null : String(p)))))
    .digest("base64url");
}

/** Never stored or logged in clear; the ledger keeps a short fingerprint. */
export function tokenFingerprint(token: string): string {
  return createHash("sha256").update(token).digest("hex").slice(0, 16);
}

export function keyReused(key: string): FailedPreconditionError {
  return new FailedPreconditionError(
    "the idempotency key was already used with a different request",
    "IDEMPOTENCY_KEY_REUSED",
    { idempotency_key: key },
  );
}

export function leaseLost(): ConflictError {
  return new ConflictError(
    "the operation took longer than its lease and was resumed by another request; retry with the same idempotency key",
    "IDEMPOTENCY_LEASE_LOST",
  );
}

/**
 * Commits an operation's outcome and its events in one transaction. The two
 * statements are pipelined (sent together, one round trip); if the pending
 * mark was lost meanwhile, the throw rolls the events back too.
 */
export async function commitOutcome(
  deps: Pick<OperationsDeps, "sql" | "outbox">,
  finish: Finish,
  events: readonly OutboxEvent[],
): Promise<Date> {
  return deps.sql.begin(async (tx) => {
    const [time, appended] = await Promise.allSettled([
      finishOperation(tx, finish),
      events.length > 0 ? deps.outbox.append(tx, events) : Promise.resolve([]),
    ]);
    if (time.status === "rejected") throw time.reason;
    if (appended.status === "rejected") throw appended.reason;
    if (!time.value) throw leaseLost();
    return time.value;
  });
}

export async function loadView(sql: Sql, paymentId: string): Promise<PaymentView> {
  const [payment, attempts] = await Promise.all([
    findPayment(sql, paymentId),
    listAttempts(sql, paymentId),
  ]);
  if (!payment) throw new NotFoundError("payment", paymentId);
  return { payment, attempts };
}

export function toLedgerEntry(a: AttemptInsert): LedgerEntry {
  return {
    id: a.id,
    operation: a.operation,
    idempotencyKey: a.idempotencyKey,
    currency: a.currency,
    amountMinor: a.amountMinor,
    outcome: a.outcome,
    providerCode: a.providerCode ?? null,
    attemptTime: a.attemptTime,
    latencyUs: a.latencyUs,
  };
}

export type AttemptBase = Omit<AttemptInsert, keyof AttemptRecord>;

export function attemptOf(base: AttemptBase, record: AttemptRecord): AttemptInsert {
  return { ...base, ...record };
}

/**
 * Requests of this process currently executing an operation, by idempotency
 * key and by payment: a request that finds the key (or payment) busy wakes as
 * soon as the owner finishes instead of polling blindly. Requests in other
 * replicas are found through the database and polled.
 */
export class InFlight {
  private readonly running = new Map<string, Promise<void>>();

  run<T>(names: readonly string[], fn: () => Promise<T>): Promise<T> {
    const result = fn();
    const settled = result.then(
      () => {},
      () => {},
    );
    for (const name of names) this.running.set(name, settled);
    void settled.then(() => {
      for (const name of names) if (this.running.get(name) === settled) this.running.delete(name);
    });
    return result;
  }

  get(name: string): Promise<void> | undefined {
    return this.running.get(name);
  }
}

export type Busy = { kind: "busy"; busy: "key" | "payment"; name: string };

export function isBusy(value: unknown): value is Busy {
  return (
    typeof value === "object" && value !== null && (value as { kind?: unknown }).kind === "busy"
  );
}

/**
 * Runs `attempt` until it is not blocked by another request holding the same
 * key or payment, waiting at most `inFlightWaitMs` (and never past the
 * caller's deadline). Then ABORTED, per the contract: retry later.
 */
export async function waitYourTurn<T>(
  deps: Pick<OperationsDeps, "config" | "inFlight">,
  attempt: () => Promise<T | Busy>,
): Promise<T> {
  const budget = Math.min(deps.config.inFlightWaitMs, (remainingDeadlineMs() ?? Infinity) - 50);
  const giveUpAt = Date.now() + budget;
  for (let round = 0; ; round++) {
    const outcome = await attempt();
    if (!isBusy(outcome)) return outcome;
    const left = giveUpAt - Date.now();
    if (left <= 0) {
      throw outcome.busy === "key"
        ? new ConflictError(
            "a request with this idempotency key is in progress; retry later",
            "IDEMPOTENCY_KEY_IN_USE",
          )
        : new ConflictError(
            "another operation is in progress on this payment; retry later",
            "PAYMENT_OPERATION_IN_PROGRESS",
          );
    }
    const pause = Math.min(left, 5 * 2 ** Math.min(round, 5));
    await Promise.race([
      deps.inFlight.get(outcome.name) ?? new Promise<void>(() => {}),
      new Promise<void>((resolve) => setTimeout(resolve, pause)),
    ]);
  }
}

export const paymentName = (id: string) => `payment:${id}`;
export const keyName = (key: string) => `key:${key}`;

export type { OperationName };
