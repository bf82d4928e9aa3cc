import { create } from "@bufbuild/protobuf";
import { MoneySchema } from "../../../gen/commerce/common/v1/money_pb.js";
import {
  PaymentAuthorizedSchema,
  PaymentCapturedSchema,
  PaymentDeclinedSchema,
  PaymentFailedSchema,
  PaymentRefundedSchema,
  PaymentVoidedSchema,
} from "../../../gen/commerce/payments/v1/events_pb.js";
import { DeclineReason, PaymentOperation } from "../../../gen/commerce/payments/v1/payment_pb.js";
import { type OutboxEvent, outboxEvent } from "../../../platform/events/index.js";
import type { DeclineReasonName, OperationName, PaymentState } from "./payment.js";

/**
 * Domain events, one per state change, written to the outbox in the same
 * transaction as the change. Subjects: `<domain>.payment.<event>`, e.g.
 * `payments.payment.authorized`. No payment method data ever goes in.
 */
const AGGREGATE = "payment";

const money = (amountMinor: bigint, currencyCode: string) =>
  create(MoneySchema, { amountMinor, currencyCode });

const fields = (payment: PaymentState, eventName: string) => ({
  aggregateType: AGGREGATE,
  aggregateId: payment.id,
  eventName,
});

export function authorizedEvent(payment: PaymentState): OutboxEvent {
  return outboxEvent(
    PaymentAuthorizedSchema,
    create(PaymentAuthorizedSchema, {
      paymentId: payment.id,
      orderId: payment.orderId,
      amount: money(payment.amountMinor, payment.currency),
      providerReference: payment.providerReference ?? "",
    }),
    fields(payment, "authorized"),
  );
}

export function declinedEvent(payment: PaymentState): OutboxEvent {
  return outboxEvent(
    PaymentDeclinedSchema,
    create(PaymentDeclinedSchema, {
      paymentId: payment.id,
      orderId: payment.orderId,
      declineReason: declineReasonToProto(payment.declineReason),
    }),
    fields(payment, "declined"),
  );
}

export function failedEvent(
  payment: PaymentState,
  operation: OperationName,
  providerCode: string,
): OutboxEvent {
  return outboxEvent(
    PaymentFailedSchema,
    create(PaymentFailedSchema, {
      paymentId: payment.id,
      orderId: payment.orderId,
      operation: PaymentOperation[operation],
      providerCode,
    }),
    fields(payment, "failed"),
  );
}

export function capturedEvent(payment: PaymentState, amountMinor: bigint): OutboxEvent {
  return outboxEvent(
    PaymentCapturedSchema,
    create(PaymentCapturedSchema, {
      paymentId: payment.id,
      orderId: payment.orderId,
      amount: money(amountMinor, payment.currency),
    }),
    fields(payment, "captured"),
  );
}

export function voidedEvent(payment: PaymentState): OutboxEvent {
  return outboxEvent(
    PaymentVoidedSchema,
    create(PaymentVoidedSchema, { paymentId: payment.id, orderId: payment.orderId }),
    fields(payment, "voided"),
  );
}

export function refundedEvent(
  payment: PaymentState,
  amountMinor: bigint,
  refundedTotal: bigint,
): OutboxEvent {
  return outboxEvent(
    PaymentRefundedSchema,
    create(PaymentRefundedSchema, {
      paymentId: payment.id,
      orderId: payment.orderId,
      amount: money(amountMinor, payment.currency),
      refundedTotal: money(refundedTotal, payment.currency),
    }),
    fields(payment, "refunded"),
  );
}

export function declineReasonToProto(reason: DeclineReasonName | null): DeclineReason {
  return reason === null ? DeclineReason.UNSPECIFIED : DeclineReason[reason];
}
