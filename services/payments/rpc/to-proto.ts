import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MoneySchema } from "../../../gen/commerce/common/v1/money_pb.js";
import {
  type Payment,
  PaymentAttemptOutcome,
  PaymentAttemptSchema,
  PaymentOperation,
  PaymentSchema,
  PaymentStatus,
} from "../../../gen/commerce/payments/v1/payment_pb.js";
import type { LedgerEntry } from "../domain/payment.js";
import { declineReasonToProto } from "../domain/payment-events.js";
import type { PaymentView } from "../operations/operations-context.js";

function latency(us: number) {
  return create(DurationSchema, {
    seconds: BigInt(Math.floor(us / 1_000_000)),
    nanos: (us % 1_000_000) * 1000,
  });
}

function attemptToProto(a: LedgerEntry) {
  return create(PaymentAttemptSchema, {
    id: a.id,
    operation: PaymentOperation[a.operation],
    idempotencyKey: a.idempotencyKey,
    amount: create(MoneySchema, { amountMinor: a.amountMinor, currencyCode: a.currency }),
    outcome: PaymentAttemptOutcome[a.outcome],
    providerCode: a.providerCode ?? "",
    attemptTime: timestampFromDate(a.attemptTime),
    latency: latency(a.latencyUs),
  });
}

export function paymentToProto({ payment: p, attempts }: PaymentView): Payment {
  const money = (amountMinor: bigint) =>
    create(MoneySchema, { amountMinor, currencyCode: p.currency });
  return create(PaymentSchema, {
    id: p.id,
    orderId: p.orderId,
    amount: money(p.amountMinor),
    capturedAmount: money(p.capturedMinor),
    refundedAmount: money(p.refundedMinor),
    status: PaymentStatus[p.status],
    provider: p.provider,
    providerReference: p.providerReference ?? "",
    declineReason: declineReasonToProto(p.declineReason),
    attempts: attempts.map(attemptToProto),
    createTime: timestampFromDate(p.createTime),
    updateTime: timestampFromDate(p.updateTime),
  });
}
