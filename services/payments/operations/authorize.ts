import { v7 as uuidv7 } from "uuid";
import { UnavailableError } from "../../../platform/errors/domain-errors.js";
import type { OutboxEvent } from "../../../platform/events/index.js";
import type { DeclineReasonName, PaymentState } from "../domain/payment.js";
import { authorizedEvent, declinedEvent, failedEvent } from "../domain/payment-events.js";
import type { DeclineCode, PaymentProvider } from "../providers/provider.js";
import type { AuthorizeCommand } from "../rpc/validate-requests.js";
import {
  type AttemptInsert,
  claimNewAuthorization,
  type Executor,
  findPayment,
  finishOperation,
  insertAttempt,
  listAttempts,
  lockKey,
  markPending,
  setKeyState,
} from "../store/payment-store.js";
import {
  type AttemptBase,
  attemptOf,
  type Busy,
  commitOutcome,
  fingerprint,
  keyName,
  keyReused,
  loadView,
  type OperationsDeps,
  type PaymentView,
  paymentName,
  tokenFingerprint,
  toLedgerEntry,
  waitYourTurn,
} from "./operations-context.js";

export function declineName(code: DeclineCode): DeclineReasonName {
  return code.toUpperCase() as DeclineReasonName;
}

type Claim =
  | { kind: "owner"; payment: PaymentState; providerKey: string }
  | { kind: "replay"; paymentId: string }
  | { kind: "gone" }
  | Busy;

/**
 * Authorize: claim the key (creating the payment), call the provider with
 * retries under a stable provider key, then apply the answer, the ledger
 * entry, the key's completion and the event in one transaction.
 *
 * Outcomes: AUTHORIZED / DECLINED / AUTHORIZATION_PENDING (async) as results;
 * every attempt timing out → FAILED (the provider may hold funds, so a void
 * is sent for good measure); the provider reachable for none of the attempts
 * (errors that say it did nothing, or an open circuit) → UNAVAILABLE, the key
 * is released and a retry with it resumes the same payment.
 */
export async function authorize(deps: OperationsDeps, cmd: AuthorizeCommand): Promise<PaymentView> {
  const provider = deps.providers.get(deps.config.defaultProvider);
  if (!provider) throw new Error(`default provider ${deps.config.defaultProvider} not registered`);
  const requestHash = fingerprint([
    "AUTHORIZE",
    cmd.orderId,
    cmd.amount.amountMinor,
    cmd.amount.currency,
    cmd.paymentMethodToken,
  ]);
  return waitYourTurn(deps, async () => {
    const paymentId = uuidv7();
    const providerKey = uuidv7();
    const claimed = await claimNewAuthorization(deps.sql, {
      key: cmd.idempotencyKey,
      requestHash,
      providerKey,
      paymentId,
      orderId: cmd.orderId,
      provider: provider.name,
      currency: cmd.amount.currency,
      amountMinor: cmd.amount.amountMinor,
      leaseMs: deps.leaseMs,
    });
    if (claimed.kind === "completed") {
      if (claimed.operation !== "AUTHORIZE" || claimed.requestHash !== requestHash) {
        throw keyReused(cmd.idempotencyKey);
      }
      return loadView(deps.sql, claimed.paymentId);
    }
    if (claimed.kind === "created") {
      const created = claimed.createTime;
      const payment: PaymentState = {
        id: paymentId,
        orderId: cmd.orderId,
        provider: provider.name,
        providerReference: null,
        authorizationKey: providerKey,
        currency: cmd.amount.currency,
        amountMinor: cmd.amount.amountMinor,
        capturedMinor: 0n,
        refundedMinor: 0n,
        status: "AUTHORIZATION_PENDING",
        declineReason: null,
        failureCode: null,
        pendingOperation: "AUTHORIZE",
        pendingLive: true,
        createTime: created,
        updateTime: created,
      };
      return deps.inFlight.run([keyName(cmd.idempotencyKey), paymentName(paymentId)], () =>
        execute(deps, cmd, payment, providerKey, true),
      );
    }
    const claim = await deps.sql.begin((tx) => claimExisting(deps, tx, cmd, requestHash));
    switch (claim.kind) {
      case "gone":
        return { kind: "busy", busy: "key", name: keyName(cmd.idempotencyKey) } satisfies Busy;
      case "replay":
        return loadView(deps.sql, claim.paymentId);
      case "owner":
        return deps.inFlight.run([keyName(cmd.idempotencyKey), paymentName(claim.payment.id)], () =>
          execute(deps, cmd, claim.payment, claim.providerKey, false),
        );
      default:
        return claim;
    }
  });
}

async function claimExisting(
  deps: OperationsDeps,
  tx: Executor,
  cmd: AuthorizeCommand,
  requestHash: string,
): Promise<Claim> {
  const key = await lockKey(tx, cmd.idempotencyKey);
  // Pruned between our insert attempt and this read: just try again.
  if (!key) return { kind: "gone" };
  if (key.operation !== "AUTHORIZE" || key.requestHash !== requestHash) {
    throw keyReused(cmd.idempotencyKey);
  }
  if (key.state === "completed") return { kind: "replay", paymentId: key.paymentId };
  if (key.state === "in_progress" && key.leaseLive) {
    return { kind: "busy", busy: "key", name: keyName(cmd.idempotencyKey) };
  }
  // Released after an outage, or its owner died: resume with the same
  // payment and provider key, unless something else settled the payment.
  const payment = await findPayment(tx, key.paymentId, { forUpdate: true });
  if (!payment) throw new Error(`idempotency key ${key.key} points to a missing payment`);
  if (
    payment.pendingOperation !== null &&
    payment.pendingLive &&
    payment.pendingOperation !== "AUTHORIZE"
  ) {
    return { kind: "busy", busy: "payment", name: paymentName(payment.id) };
  }
  if (payment.status !== "AUTHORIZATION_PENDING" || payment.providerReference !== null) {
    await setKeyState(tx, key.key, "completed");
    return { kind: "replay", paymentId: payment.id };
  }
  await setKeyState(tx, key.key, "in_progress", deps.leaseMs);
  await markPending(tx, payment.id, "AUTHORIZE", deps.leaseMs);
  return {
    kind: "owner",
    payment: { ...payment, pendingOperation: "AUTHORIZE", pendingLive: true },
    providerKey: key.providerKey,
  };
}

async function execute(
  deps: OperationsDeps,
  cmd: AuthorizeCommand,
  payment: PaymentState,
  providerKey: string,
  fresh: boolean,
): Promise<PaymentView> {
  const provider = deps.providers.get(payment.provider);
  if (!provider)
    throw new Error(`payment ${payment.id} uses unregistered provider ${payment.provider}`);
  const attempts: AttemptInsert[] = [];
  const base: AttemptBase = {
    paymentId: payment.id,
    operation: "AUTHORIZE",
    idempotencyKey: cmd.idempotencyKey,
    providerKey,
    provider: provider.name,
    currency: payment.currency,
    amountMinor: payment.amountMinor,
    request: {
      order_id: payment.orderId,
      amount_minor: payment.amountMinor.toString(),
      currency: payment.currency,
      payment_method: tokenFingerprint(cmd.paymentMethodToken),
    },
  };
  const recordFailure = async (base: AttemptBase, record: Parameters<typeof attemptOf>[1]) => {
    const attempt = attemptOf(base, record);
    attempts.push(attempt);
    await insertAttempt(deps.sql, attempt);
  };
  const execution = await deps.executor.execute(
    provider.name,
    "AUTHORIZE",
    (signal) =>
      provider.authorize(
        {
          idempotencyKey: providerKey,
          orderId: payment.orderId,
          paymentId: payment.id,
          paymentMethodToken: cmd.paymentMethodToken,
          amountMinor: payment.amountMinor,
          currency: payment.currency,
        },
        signal,
      ),
    (record) => recordFailure(base, record),
  );

  let next: PaymentState;
  let events: OutboxEvent[] = [];
  let final: AttemptInsert | undefined;
  if (execution.kind === "answered") {
    final = attemptOf(base, execution.final);
    attempts.push(final);
    const result = execution.result;
    if (result.status === "succeeded") {
      next = { ...payment, status: "AUTHORIZED", providerReference: result.reference };
      events = [authorizedEvent(next)];
    } else if (result.status === "pending") {
      next = { ...payment, status: "AUTHORIZATION_PENDING", providerReference: result.reference };
    } else {
      next = {
        ...payment,
        status: "DECLINED",
        providerReference: result.reference ?? null,
        declineReason: declineName(result.code),
      };
      events = [declinedEvent(next)];
    }
  } else if (execution.kind === "rejected" || execution.ambiguous) {
    const code = execution.kind === "rejected" ? execution.error.code : execution.code;
    if (execution.kind === "unavailable") {
      await releaseAmbiguousHold(deps, provider, payment, cmd, async (attempt) => {
        attempts.push(attempt);
        await insertAttempt(deps.sql, attempt);
      });
    }
    next = { ...payment, status: "FAILED", failureCode: code };
    events = [failedEvent(next, "AUTHORIZE", code)];
  } else {
    // The provider did nothing: leave the payment pending and the key free.
    await finishOperation(deps.sql, {
      ...finishFields(payment, cmd.idempotencyKey),
      keyState: "released",
    });
    throw new UnavailableError(
      "the payment provider is unavailable; retry with the same idempotency key",
      execution.circuitOpen ? "PROVIDER_CIRCUIT_OPEN" : "PROVIDER_UNAVAILABLE",
    );
  }

  const updated = await commitOutcome(
    deps,
    { ...finishFields(next, cmd.idempotencyKey), keyState: "completed", attempt: final },
    events,
  );
  next = { ...next, pendingOperation: null, pendingLive: false, updateTime: updated };
  return {
    payment: next,
    attempts: fresh ? attempts.map(toLedgerEntry) : await listAttempts(deps.sql, payment.id),
  };
}

function finishFields(p: PaymentState, key: string) {
  return {
    paymentId: p.id,
    operation: "AUTHORIZE" as const,
    status: p.status,
    providerReference: p.providerReference,
    declineReason: p.declineReason,
    failureCode: p.failureCode,
    capturedMinor: p.capturedMinor,
    refundedMinor: p.refundedMinor,
    key,
  };
}

/**
 * Every attempt timed out: the provider may have authorized without us
 * hearing. Ask it to release whatever it holds under the authorization key,
 * so a FAILED payment never leaves money held. Best effort: a failure here is
 * logged and visible in the ledger.
 */
async function releaseAmbiguousHold(
  deps: OperationsDeps,
  provider: PaymentProvider,
  payment: PaymentState,
  cmd: AuthorizeCommand,
  record: (attempt: AttemptInsert) => Promise<void>,
): Promise<void> {
  const voidKey = uuidv7();
  const base: AttemptBase = {
    paymentId: payment.id,
    operation: "VOID",
    idempotencyKey: cmd.idempotencyKey,
    providerKey: voidKey,
    provider: provider.name,
    currency: payment.currency,
    amountMinor: payment.amountMinor,
    request: { authorization_key: payment.authorizationKey, reason: "authorization_timeout" },
  };
  const execution = await deps.executor.execute(
    provider.name,
    "VOID",
    (signal) =>
      provider.void(
        {
          idempotencyKey: voidKey,
          providerReference: undefined,
          authorizationKey: payment.authorizationKey,
        },
        signal,
      ),
    (failure) => record(attemptOf(base, failure)),
  );
  if (execution.kind === "answered") {
    await record(attemptOf(base, execution.final));
    return;
  }
  deps.logger.warn(
    { paymentId: payment.id, provider: provider.name, outcome: execution.kind },
    "could not release a possibly held authorization after timeouts",
  );
}
