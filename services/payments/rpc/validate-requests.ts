import type { Money } from "../../../gen/commerce/common/v1/money_pb.js";
import type {
  AuthorizeRequest,
  CaptureRequest,
  GetPaymentRequest,
  HandleProviderWebhookRequest,
  RefundRequest,
  VoidRequest,
} from "../../../gen/commerce/payments/v1/payment_service_pb.js";
import {
  type FieldViolation,
  InvalidArgumentError,
} from "../../../platform/errors/domain-errors.js";
import { isKnownCurrency } from "../../../platform/money/currencies.js";

/**
 * Request validation, one function per message, all violations reported at
 * once (google.rpc.BadRequest), before anything is written or any provider
 * is called.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Visible ASCII: keys travel in logs and provider headers.
const KEY = /^[\x21-\x7e]{1,255}$/;
/** Largest amount accepted (10^15 minor units); far above any real payment. */
export const MAX_AMOUNT_MINOR = 1_000_000_000_000_000n;
export const MAX_WEBHOOK_PAYLOAD_BYTES = 64 * 1024;

export interface Amount {
  amountMinor: bigint;
  currency: string;
}

class Violations {
  readonly list: FieldViolation[] = [];
  add(field: string, description: string) {
    this.list.push({ field, description });
  }
  throwIfAny() {
    if (this.list.length > 0) throw new InvalidArgumentError(this.list);
  }
}

function idempotencyKey(v: Violations, value: string): void {
  if (value === "") v.add("idempotency_key", "is required");
  else if (!KEY.test(value)) {
    v.add("idempotency_key", "must be 1-255 visible ASCII characters");
  }
}

function uuid(v: Violations, field: string, value: string): void {
  if (value === "") v.add(field, "is required");
  else if (!UUID.test(value)) v.add(field, "must be a UUID");
}

function money(v: Violations, field: string, value: Money | undefined): Amount | undefined {
  if (!value) return undefined;
  let ok = true;
  if (value.amountMinor <= 0n) {
    v.add(`${field}.amount_minor`, "must be greater than zero");
    ok = false;
  } else if (value.amountMinor > MAX_AMOUNT_MINOR) {
    v.add(`${field}.amount_minor`, `must be at most ${MAX_AMOUNT_MINOR}`);
    ok = false;
  }
  if (value.currencyCode === "") {
    v.add(`${field}.currency_code`, "is required");
    ok = false;
  } else if (!isKnownCurrency(value.currencyCode)) {
    v.add(`${field}.currency_code`, "must be an upper-case ISO 4217 code of an active currency");
    ok = false;
  }
  return ok ? { amountMinor: value.amountMinor, currency: value.currencyCode } : undefined;
}

export interface AuthorizeCommand {
  idempotencyKey: string;
  orderId: string;
  amount: Amount;
  paymentMethodToken: string;
}

export function validateAuthorize(req: AuthorizeRequest): AuthorizeCommand {
  const v = new Violations();
  idempotencyKey(v, req.idempotencyKey);
  uuid(v, "order_id", req.orderId);
  if (!req.amount) v.add("amount", "is required");
  const amount = money(v, "amount", req.amount);
  if (req.paymentMethodToken === "") v.add("payment_method_token", "is required");
  else if (req.paymentMethodToken.length > 255 || !KEY.test(req.paymentMethodToken)) {
    v.add("payment_method_token", "must be 1-255 visible ASCII characters");
  }
  v.throwIfAny();
  return {
    idempotencyKey: req.idempotencyKey,
    orderId: req.orderId.toLowerCase(),
    amount: amount!,
    paymentMethodToken: req.paymentMethodToken,
  };
}

export interface PaymentCommand {
  idempotencyKey: string;
  paymentId: string;
  /** Absent: the whole remaining amount. */
  amount: Amount | undefined;
}

export function validateCapture(req: CaptureRequest): PaymentCommand {
  const v = new Violations();
  idempotencyKey(v, req.idempotencyKey);
  uuid(v, "payment_id", req.paymentId);
  const amount = money(v, "amount", req.amount);
  v.throwIfAny();
  return { idempotencyKey: req.idempotencyKey, paymentId: req.paymentId.toLowerCase(), amount };
}

export function validateVoid(req: VoidRequest): PaymentCommand {
  const v = new Violations();
  idempotencyKey(v, req.idempotencyKey);
  uuid(v, "payment_id", req.paymentId);
  v.throwIfAny();
  return {
    idempotencyKey: req.idempotencyKey,
    paymentId: req.paymentId.toLowerCase(),
    amount: undefined,
  };
}

export interface RefundCommand extends PaymentCommand {
  reason: string;
}

export function validateRefund(req: RefundRequest): RefundCommand {
  const v = new Violations();
  idempotencyKey(v, req.idempotencyKey);
  uuid(v, "payment_id", req.paymentId);
  const amount = money(v, "amount", req.amount);
  if ([...req.reason].length > 500) v.add("reason", "must be at most 500 characters");
  v.throwIfAny();
  return {
    idempotencyKey: req.idempotencyKey,
    paymentId: req.paymentId.toLowerCase(),
    amount,
    reason: req.reason,
  };
}

export function validateGetPayment(req: GetPaymentRequest): string {
  const v = new Violations();
  uuid(v, "id", req.id);
  v.throwIfAny();
  return req.id.toLowerCase();
}

export function validateWebhook(req: HandleProviderWebhookRequest, providers: string[]): void {
  const v = new Violations();
  if (req.provider === "") v.add("provider", "is required");
  else if (!providers.includes(req.provider)) v.add("provider", "is not a known provider");
  if (req.webhookId === "") v.add("webhook_id", "is required");
  else if (!KEY.test(req.webhookId)) v.add("webhook_id", "must be 1-255 visible ASCII characters");
  if (req.webhookTimestamp === "") v.add("webhook_timestamp", "is required");
  else if (!/^\d{1,12}$/.test(req.webhookTimestamp)) {
    v.add("webhook_timestamp", "must be Unix seconds");
  }
  if (req.webhookSignature === "") v.add("webhook_signature", "is required");
  else if (req.webhookSignature.length > 4096) v.add("webhook_signature", "is too long");
  if (req.payload.byteLength === 0) v.add("payload", "is required");
  else if (req.payload.byteLength > MAX_WEBHOOK_PAYLOAD_BYTES) {
    v.add("payload", `must be at most ${MAX_WEBHOOK_PAYLOAD_BYTES} bytes`);
  }
  v.throwIfAny();
}
