/**
 * What the payments service needs from a payment service provider (PSP).
 * Every call carries an idempotency key that the provider must honour: the
 * same key returns the first answer and never executes the operation twice.
 * That is what makes retries (ours and our callers') safe.
 *
 * Adding a provider = implementing this interface and registering it by name
 * (see provider-registry.ts); nothing that calls PaymentService changes.
 */

/** Provider-neutral decline codes; map 1:1 to the contract's DeclineReason. */
export type DeclineCode =
  | "insufficient_funds"
  | "card_declined"
  | "expired_card"
  | "invalid_payment_method"
  | "suspected_fraud";

export interface MoneyAmount {
  amountMinor: bigint;
  currency: string;
}

export interface AuthorizeCall extends MoneyAmount {
  idempotencyKey: string;
  orderId: string;
  paymentId: string;
  paymentMethodToken: string;
}

export interface CaptureCall extends MoneyAmount {
  idempotencyKey: string;
  providerReference: string;
}

export interface RefundCall extends MoneyAmount {
  idempotencyKey: string;
  providerReference: string;
}

export interface VoidCall {
  idempotencyKey: string;
  /** Absent when the authorization's answer never arrived (timeout). */
  providerReference: string | undefined;
  /** Idempotency key of the authorization to release. */
  authorizationKey: string;
}

export type ProviderResult =
  | { status: "succeeded"; reference: string }
  /** Accepted; the outcome follows through a webhook. */
  | { status: "pending"; reference: string }
  | { status: "declined"; reference: string | undefined; code: DeclineCode };

/** A verified, parsed provider notification. */
export type ProviderNotification =
  | { type: "authorization.succeeded"; reference: string }
  | { type: "authorization.declined"; reference: string; code: DeclineCode }
  /** Verified but nothing this service acts on. */
  | { type: "other"; name: string; reference: string | undefined };

export interface WebhookInput {
  webhookId: string;
  webhookTimestamp: string;
  webhookSignature: string;
  payload: Uint8Array;
}

export interface PaymentProvider {
  readonly name: string;
  authorize(call: AuthorizeCall, signal: AbortSignal): Promise<ProviderResult>;
  capture(call: CaptureCall, signal: AbortSignal): Promise<ProviderResult>;
  void(call: VoidCall, signal: AbortSignal): Promise<ProviderResult>;
  refund(call: RefundCall, signal: AbortSignal): Promise<ProviderResult>;
  /** Checks the signature; throws WebhookVerificationFailedError. */
  verifyWebhook(input: WebhookInput): ProviderNotification;
  /** Stops timers/connections (sandbox callbacks). */
  close?(): Promise<void>;
}

/** The provider did not process the call (e.g. 503); retry with the same key. */
export class ProviderUnavailableError extends Error {
  override name = "ProviderUnavailableError";
  constructor(
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(`provider unavailable: ${code}`, options);
  }
}

/** The provider refused the operation for good (not a retryable failure). */
export class ProviderRejectedError extends Error {
  override name = "ProviderRejectedError";
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class WebhookVerificationFailedError extends Error {
  override name = "WebhookVerificationFailedError";
}
