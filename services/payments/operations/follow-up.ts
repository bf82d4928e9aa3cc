import { v7 as uuidv7 } from "uuid";
import {
  FailedPreconditionError,
  NotFoundError,
  UnavailableError,
} from "../../../platform/errors/domain-errors.js";
import type { OutboxEvent } from "../../../platform/events/index.js";
import type { OperationName, PaymentState } from "../domain/payment.js";
import { capturedEvent, refundedEvent, voidedEvent } from "../domain/payment-events.js";
import { captureAmount, refundAmount, voidDecision } from "../domain/transitions.js";
import type { PaymentProvider, ProviderResult } from "../providers/provider.js";
import type { PaymentCommand, RefundCommand } from "../rpc/validate-requests.js";
import {
  type AttemptInsert,
  type Executor,
  findPayment,
  finishOperation,
  insertAttempt,
  insertKey,
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
  leaseLost,
  loadView,
  type OperationsDeps,
  type PaymentView,
  paymentName,
  waitYourTurn,
} from "./operations-context.js";

/** Capture, void and refund: one skeleton, three sets of rules. */
interface FollowUp {
  operation: Exclude<OperationName, "AUTHORIZE">;
  cmd: PaymentCommand;
  requestHash: string;
  /** The amount to send, or "done" when the payment is already there; throws when illegal. */
  decide(payment: PaymentState): bigint | "done";
  call(
    provider: PaymentProvider,
    payment: PaymentState,
    amountMinor: bigint,
    providerKey: string,
    signal: AbortSignal,
  ): Promise<ProviderResult>;
  request(payment: PaymentState, amountMinor: bigint): Record<string, unknown>;
  apply(payment: PaymentState, amountMinor: bigint): { next: PaymentState; event: OutboxEvent };
}

type Claim =
  | { kind: "owner"; payment: PaymentState; providerKey: string; amountMinor: bigint }
  | { kind: "replay"; paymentId: string; error: { reason: string; message: string } | undefined }
  | { kind: "gone" }
  | Busy;

class BusySignal extends Error {
  override name = "BusySignal";
  constructor(readonly busy: Busy) {
    super("busy");
  }
}

export function capture(deps: OperationsDeps, cmd: PaymentCommand): Promise<PaymentView> {
  return run(deps, {
    operation: "CAPTURE",
    cmd,
    requestHash: fingerprint([
      "CAPTURE",
      cmd.paymentId,
      cmd.amount?.amountMinor,
      cmd.amount?.currency,
    ]),
    decide: (payment) => captureAmount(payment, cmd.amount),
    call: (provider, payment, amountMinor, providerKey, signal) =>
      provider.capture(
        {
          idempotencyKey: providerKey,
          providerReference: payment.providerReference!,
          amountMinor,
          currency: payment.currency,
        },
        signal,
      ),
    request: (payment, amountMinor) => ({
      provider_reference: payment.providerReference,
      amount_minor: amountMinor.toString(),
      currency: payment.currency,
    }),
    apply(payment, amountMinor) {
      const next: PaymentState = { ...payment, status: "CAPTURED", capturedMinor: amountMinor };
      return { next, event: capturedEvent(next, amountMinor) };
    },
  });
}

export function voidPayment(deps: OperationsDeps, cmd: PaymentCommand): Promise<PaymentView> {
  return run(deps, {
    operation: "VOID",
    cmd,
    requestHash: fingerprint(["VOID", cmd.paymentId]),
    decide: (payment) => (voidDecision(payment) === "done" ? "done" : payment.amountMinor),
    call: (provider, payment, _amountMinor, providerKey, signal) =>
      provider.void(
        {
          idempotencyKey: providerKey,
          providerReference: payment.providerReference ?? undefined,
          authorizationKey: payment.authorizationKey,
        },
        signal,
      ),
    request: (payment) => ({
      provider_reference: payment.providerReference,
      authorization_key: payment.authorizationKey,
    }),
    apply(payment) {
      const next: PaymentState = { ...payment, status: "VOIDED" };
      return { next, event: voidedEvent(next) };
    },
  });
}

export function refund(deps: OperationsDeps, cmd: RefundCommand): Promise<PaymentView> {
  return run(deps, {
    operation: "REFUND",
    cmd,
    requestHash: fingerprint([
      "REFUND",
      cmd.paymentId,
      cmd.amount?.amountMinor,
      cmd.amount?.currency,
      cmd.reason,
    ]),
    decide: (payment) => refundAmount(payment, cmd.amount),
    call: (provider, payment, amountMinor, providerKey, signal) =>
      provider.refund(
        {
          idempotencyKey: providerKey,
          providerReference: payment.providerReference!,
          amountMinor,
          currency: payment.currency,
        },
        signal,
      ),
    request: (payment, amountMinor) => ({
      provider_reference: payment.providerReference,
      amount_minor: amountMinor.toString(),
      currency: payment.currency,
      reason: cmd.reason,
    }),
    apply(payment, amountMinor) {
      const refunded = payment.refundedMinor + amountMinor;
      const next: PaymentState = {
        ...payment,
        refundedMinor: refunded,
        status: refunded === payment.capturedMinor ? "REFUNDED" : "PARTIALLY_REFUNDED",
      };
      return { next, event: refundedEvent(next, amountMinor, refunded) };
    },
  });
}

async function run(deps: OperationsDeps, spec: FollowUp): Promise<PaymentView> {
  const { cmd } = spec;
  return waitYourTurn(deps, async () => {
    let claim: Claim;
    try {
      claim = await deps.sql.begin((tx) => claimKey(deps, tx, spec));
    } catch (error) {
      if (error instanceof BusySignal) return error.busy;
      throw error;
    }
    switch (claim.kind) {
      case "gone":
        return { kind: "busy", busy: "key", name: keyName(cmd.idempotencyKey) } satisfies Busy;
      case "replay":
        if (claim.error) {
          throw new FailedPreconditionError(claim.error.message, claim.error.reason);
        }
        return loadView(deps.sql, claim.paymentId);
      case "owner":
        return deps.inFlight.run([keyName(cmd.idempotencyKey), paymentName(claim.payment.id)], () =>
          execute(deps, spec, claim.payment, claim.providerKey, claim.amountMinor),
        );
      default:
        return claim;
    }
  });
}

/**
 * In one transaction: lock the payment, claim (or resume) the key, check the
 * transition, mark the payment busy. Any refusal rolls all of it back, so an
 * illegal request leaves no key behind and the key can be used again once
 * the payment is in the right state.
 */
async function claimKey(deps: OperationsDeps, tx: Executor, spec: FollowUp): Promise<Claim> {
  const { cmd, operation } = spec;
  const payment = await findPayment(tx, cmd.paymentId, { forUpdate: true });
  if (!payment) throw new NotFoundError("payment", cmd.paymentId);
  let providerKey = uuidv7();
  const inserted = await insertKey(tx, {
    key: cmd.idempotencyKey,
    operation,
    requestHash: spec.requestHash,
    providerKey,
    paymentId: payment.id,
    state: "in_progress",
    leaseMs: deps.leaseMs,
  });
  if (!inserted) {
    const key = await lockKey(tx, cmd.idempotencyKey);
    if (!key) return { kind: "gone" };
    if (key.operation !== operation || key.requestHash !== spec.requestHash) {
      throw keyReused(cmd.idempotencyKey);
    }
    if (key.state === "completed") {
      const error =
        key.errorReason !== null
          ? { reason: key.errorReason, message: key.errorMessage ?? "operation refused" }
          : undefined;
      return { kind: "replay", paymentId: key.paymentId, error };
    }
    if (key.state === "in_progress" && key.leaseLive) {
      return { kind: "busy", busy: "key", name: keyName(cmd.idempotencyKey) };
    }
    providerKey = key.providerKey;
    await setKeyState(tx, key.key, "in_progress", deps.leaseMs);
  }
  if (payment.pendingOperation !== null && payment.pendingLive) {
    throw new BusySignal({ kind: "busy", busy: "payment", name: paymentName(payment.id) });
  }
  const decision = spec.decide(payment);
  if (decision === "done") {
    await setKeyState(tx, cmd.idempotencyKey, "completed");
    return { kind: "replay", paymentId: payment.id, error: undefined };
  }
  await markPending(tx, payment.id, operation, deps.leaseMs);
  return {
    kind: "owner",
    payment: { ...payment, pendingOperation: operation, pendingLive: true },
    providerKey,
    amountMinor: decision,
  };
}

async function execute(
  deps: OperationsDeps,
  spec: FollowUp,
  payment: PaymentState,
  providerKey: string,
  amountMinor: bigint,
): Promise<PaymentView> {
  const { cmd, operation } = spec;
  const provider = deps.providers.get(payment.provider);
  if (!provider)
    throw new Error(`payment ${payment.id} uses unregistered provider ${payment.provider}`);
  const base: AttemptBase = {
    paymentId: payment.id,
    operation,
    idempotencyKey: cmd.idempotencyKey,
    providerKey,
    provider: provider.name,
    currency: payment.currency,
    amountMinor,
    request: spec.request(payment, amountMinor),
  };
  const execution = await deps.executor.execute(
    provider.name,
    operation,
    (signal) => spec.call(provider, payment, amountMinor, providerKey, signal),
    (record) => insertAttempt(deps.sql, attemptOf(base, record)),
  );
  const unchanged = {
    paymentId: payment.id,
    operation,
    status: payment.status,
    providerReference: payment.providerReference,
    declineReason: payment.declineReason,
    failureCode: payment.failureCode,
    capturedMinor: payment.capturedMinor,
    refundedMinor: payment.refundedMinor,
    key: cmd.idempotencyKey,
  };

  if (execution.kind === "unavailable") {
    // Nothing final happened (or we cannot know): the payment stays as it
    // was and the key is free; a retry with it reuses the provider key.
    await finishOperation(deps.sql, { ...unchanged, keyState: "released" });
    throw new UnavailableError(
      "the payment provider is unavailable; retry with the same idempotency key",
      execution.circuitOpen ? "PROVIDER_CIRCUIT_OPEN" : "PROVIDER_UNAVAILABLE",
    );
  }

  let final: AttemptInsert | undefined;
  let refusal: { code: string } | undefined;
  if (execution.kind === "rejected") refusal = { code: execution.error.code };
  else {
    final = attemptOf(base, execution.final);
    if (execution.result.status === "declined") refusal = { code: execution.result.code };
  }
  if (refusal) {
    // A business refusal is the operation's final answer: replays get it too.
    const message = `the payment provider refused the ${operation.toLowerCase()} (${refusal.code})`;
    const error = { reason: "PROVIDER_REFUSED", message };
    const done = await finishOperation(deps.sql, {
      ...unchanged,
      keyState: "completed",
      error,
      attempt: final,
    });
    if (!done) throw leaseLost();
    throw new FailedPreconditionError(message, error.reason, {
      payment_id: payment.id,
      provider_code: refusal.code,
    });
  }

  const { next, event } = spec.apply(payment, amountMinor);
  const updated = await commitOutcome(
    deps,
    {
      ...unchanged,
      status: next.status,
      capturedMinor: next.capturedMinor,
      refundedMinor: next.refundedMinor,
      keyState: "completed",
      attempt: final,
    },
    [event],
  );
  return {
    payment: { ...next, pendingOperation: null, pendingLive: false, updateTime: updated },
    attempts: await listAttempts(deps.sql, payment.id),
  };
}
