/**
 * The payment as the domain sees it. Statuses and operations carry the proto
 * enum names without prefix; that is also how they are stored.
 */
export type PaymentStatusName =
  | "AUTHORIZATION_PENDING"
  | "AUTHORIZED"
  | "DECLINED"
  | "FAILED"
  | "CAPTURED"
  | "PARTIALLY_REFUNDED"
  | "REFUNDED"
  | "VOIDED";

export type OperationName = "AUTHORIZE" | "CAPTURE" | "VOID" | "REFUND";

export type DeclineReasonName =
  | "INSUFFICIENT_FUNDS"
  | "CARD_DECLINED"
  | "EXPIRED_CARD"
  | "INVALID_PAYMENT_METHOD"
  | "SUSPECTED_FRAUD";

export interface PaymentState {
  id: string;
  orderId: string;
  provider: string;
  providerReference: string | null;
  authorizationKey: string;
  currency: string;
  amountMinor: bigint;
  capturedMinor: bigint;
  refundedMinor: bigint;
  status: PaymentStatusName;
  declineReason: DeclineReasonName | null;
  failureCode: string | null;
  pendingOperation: OperationName | null;
  /** Computed by the database (its clock): the pending operation's lease is live. */
  pendingLive: boolean;
  createTime: Date;
  updateTime: Date;
}

export interface LedgerEntry {
  id: string;
  operation: OperationName;
  idempotencyKey: string;
  currency: string;
  amountMinor: bigint;
  outcome: "SUCCEEDED" | "PENDING" | "DECLINED" | "FAILED";
  providerCode: string | null;
  attemptTime: Date;
  latencyUs: number;
}
