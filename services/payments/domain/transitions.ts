import {
  ConflictError,
  FailedPreconditionError,
  InvalidArgumentError,
} from "../../../platform/errors/domain-errors.js";
import type { OperationName, PaymentState } from "./payment.js";

/**
 * The state machine's guards: which operation a payment in a given status
 * accepts, and for how much. Every refusal is FAILED_PRECONDITION with a
 * stable reason, so callers can branch on it.
 *
 *   AUTHORIZATION_PENDING ─► AUTHORIZED | DECLINED | FAILED | VOIDED
 *   AUTHORIZED ─► CAPTURED | VOIDED
 *   CAPTURED ─► PARTIALLY_REFUNDED ─► REFUNDED
 */

function refuse(payment: PaymentState, operation: string, reason: string, why: string): never {
  throw new FailedPreconditionError(
    `cannot ${operation} a ${payment.status} payment: ${why}`,
    reason,
    {
      payment_id: payment.id,
      status: payment.status,
    },
  );
}

export function assertNotBusy(payment: PaymentState, operation: OperationName): void {
  if (payment.pendingOperation !== null && payment.pendingLive) {
    throw new ConflictError(
      `another operation (${payment.pendingOperation}) is in progress on this payment; retry later`,
      "PAYMENT_OPERATION_IN_PROGRESS",
      { payment_id: payment.id, operation },
    );
  }
}

function sameCurrency(payment: PaymentState, currency: string | undefined): void {
  if (currency !== undefined && currency !== payment.currency) {
    throw InvalidArgumentError.field(
      "amount.currency_code",
      `must be the payment's currency ${payment.currency}`,
    );
  }
}

/** Capture: AUTHORIZED only, once, at most the authorized amount. */
export function captureAmount(
  payment: PaymentState,
  requested: { amountMinor: bigint; currency: string } | undefined,
): bigint {
  sameCurrency(payment, requested?.currency);
  if (payment.status !== "AUTHORIZED") {
    const why =
      payment.status === "AUTHORIZATION_PENDING"
        ? "the authorization is not confirmed yet"
        : payment.status === "CAPTURED" ||
            payment.status === "PARTIALLY_REFUNDED" ||
            payment.status === "REFUNDED"
          ? "it was already captured"
          : "nothing is authorized";
    refuse(payment, "capture", "PAYMENT_NOT_CAPTURABLE", why);
  }
  const amount = requested?.amountMinor ?? payment.amountMinor;
  if (amount > payment.amountMinor) {
    refuse(
      payment,
      "capture",
      "CAPTURE_EXCEEDS_AUTHORIZED",
      `${amount} exceeds the authorized ${payment.amountMinor}`,
    );
  }
  return amount;
}

/** Void: "call" the provider, or "done" when it is already voided. */
export function voidDecision(payment: PaymentState): "call" | "done" {
  if (payment.status === "VOIDED") return "done";
  if (payment.status === "AUTHORIZED" || payment.status === "AUTHORIZATION_PENDING") return "call";
  const captured =
    payment.status === "CAPTURED" ||
    payment.status === "PARTIALLY_REFUNDED" ||
    payment.status === "REFUNDED";
  return refuse(
    payment,
    "void",
    "PAYMENT_NOT_VOIDABLE",
    captured ? "it was captured; refund it instead" : "nothing is authorized",
  );
}

/** Refund: CAPTURED or PARTIALLY_REFUNDED, at most what is captured and not refunded. */
export function refundAmount(
  payment: PaymentState,
  requested: { amountMinor: bigint; currency: string } | undefined,
): bigint {
  sameCurrency(payment, requested?.currency);
  if (payment.status !== "CAPTURED" && payment.status !== "PARTIALLY_REFUNDED") {
    refuse(
      payment,
      "refund",
      "PAYMENT_NOT_REFUNDABLE",
      payment.status === "REFUNDED" ? "it is fully refunded" : "nothing was captured",
    );
  }
  const remaining = payment.capturedMinor - payment.refundedMinor;
  const amount = requested?.amountMinor ?? remaining;
  if (amount > remaining) {
    refuse(
      payment,
      "refund",
      "REFUND_EXCEEDS_CAPTURED",
      `${amount} exceeds the ${remaining} captured and not yet refunded`,
    );
  }
  return amount;
}
