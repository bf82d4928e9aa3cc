import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Webhook } from "standardwebhooks";
import { v7 as uuidv7 } from "uuid";
import { PaymentService } from "../../../gen/commerce/payments/v1/payment_service_pb.js";
import {
  type AuthorizeCall,
  type CaptureCall,
  type DeclineCode,
  type PaymentProvider,
  type ProviderNotification,
  ProviderRejectedError,
  type ProviderResult,
  ProviderUnavailableError,
  type RefundCall,
  type VoidCall,
  type WebhookInput,
  WebhookVerificationFailedError,
} from "./provider.js";

/**
 * A simulated PSP that behaves like a real one, driven by test payment-method
 * tokens (documented in ../README.md). It keeps its own books in memory — it
 * stands for an external system, so its state is not the service's state —
 * honours idempotency keys exactly like a PSP (same key → first answer, no
 * second charge), and confirms asynchronous authorizations by calling the
 * payments service's HandleProviderWebhook with a Standard Webhooks signature.
 */
export const SANDBOX_TOKENS = {
  approve: "tok_approve",
  declineInsufficientFunds: "tok_decline_insufficient_funds",
  declineCard: "tok_decline_card",
  declineExpired: "tok_decline_expired",
  declineFraud: "tok_decline_fraud",
  failTransient: "tok_fail_transient",
  unavailable: "tok_unavailable",
  timeout: "tok_timeout",
  slow: "tok_slow",
  asyncApprove: "tok_async_approve",
  asyncDecline: "tok_async_decline",
  captureFail: "tok_capture_fail",
} as const;

export interface SandboxOptions {
  name?: string;
  /** Standard Webhooks secret (`whsec_…`) used to sign callbacks. */
  webhookSecret: string;
  /** Base URL of the payments service, read when a callback is sent. */
  webhookUrl: () => string;
  slowMs: number;
  asyncDelayMs: number;
  /** Calls per idempotency key that fail transiently for tok_fail_transient. */
  transientFailures: number;
  /** Callback delivery attempts before the sandbox gives up. */
  deliveryAttempts?: number;
  deliveryBackoffMs?: number;
}

type AuthorizationState = "pending" | "authorized" | "declined" | "voided" | "captured";

export interface SandboxAuthorization {
  reference: string;
  idempotencyKey: string;
  orderId: string;
  paymentId: string;
  token: string;
  amountMinor: bigint;
  currency: string;
  state: AuthorizationState;
  capturedMinor: bigint;
  refundedMinor: bigint;
}

export interface SentWebhook {
  webhookId: string;
  webhookTimestamp: string;
  webhookSignature: string;
  payload: Uint8Array;
  delivered: boolean;
  attempts: number;
}

export interface SandboxProvider extends PaymentProvider {
  /** The sandbox's own books, for tests and benchmarks. */
  inspect(): {
    authorizations: SandboxAuthorization[];
    calls: Record<"authorize" | "capture" | "void" | "refund", number>;
    webhooks: SentWebhook[];
  };
}

const DECLINES: Record<string, DeclineCode> = {
  [SANDBOX_TOKENS.declineInsufficientFunds]: "insufficient_funds",
  [SANDBOX_TOKENS.declineCard]: "card_declined",
  [SANDBOX_TOKENS.declineExpired]: "expired_card",
  [SANDBOX_TOKENS.declineFraud]: "suspected_fraud",
};

const DECLINE_CODES = new Set<string>([
  "insufficient_funds",
  "card_declined",
  "expired_card",
  "invalid_payment_method",
  "suspected_fraud",
]);

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

const reference = (prefix: string) => `${prefix}_${uuidv7().replace(/-/g, "")}`;

export function createSandboxProvider(options: SandboxOptions): SandboxProvider {
  const name = options.name ?? "sandbox";
  const signer = new Webhook(options.webhookSecret);
  const deliveryAttempts = options.deliveryAttempts ?? 8;
  const deliveryBackoffMs = options.deliveryBackoffMs ?? 100;
  const byKey = new Map<string, SandboxAuthorization>();
  const byReference = new Map<string, SandboxAuthorization>();
  const answers = new Map<string, ProviderResult>();
  const failures = new Map<string, number>();
  const calls = { authorize: 0, capture: 0, void: 0, refund: 0 };
  const webhooks: SentWebhook[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const stopping = new AbortController();
  let client: ReturnType<typeof createClient<typeof PaymentService>> | undefined;
  let clientUrl: string | undefined;

  function webhookClient() {
    const url = options.webhookUrl();
    if (!client || clientUrl !== url) {
      clientUrl = url;
      client = createClient(PaymentService, createGrpcTransport({ baseUrl: url }));
    }
    return client;
  }

  function later(ms: number, fn: () => Promise<void>): void {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn().catch(() => {});
    }, ms);
    timers.add(timer);
  }

  async function deliver(type: string, auth: SandboxAuthorization, code?: DeclineCode) {
    const body = JSON.stringify({
      id: reference("evt"),
      type,
      created: new Date().toISOString(),
      data: {
        reference: auth.reference,
        payment_id: auth.paymentId,
        order_id: auth.orderId,
        amount_minor: auth.amountMinor.toString(),
        currency: auth.currency,
        ...(code ? { decline_code: code } : {}),
      },
    });
    const webhookId = `msg_${uuidv7().replace(/-/g, "")}`;
    const now = new Date();
    const sent: SentWebhook = {
      webhookId,
      webhookTimestamp: String(Math.floor(now.getTime() / 1000)),
      webhookSignature: signer.sign(webhookId, now, body),
      payload: new TextEncoder().encode(body),
      delivered: false,
      attempts: 0,
    };
    webhooks.push(sent);
    // Like a PSP: retry with backoff until acknowledged, give up on a
    // verification refusal (resending the same bytes cannot help).
    for (let attempt = 1; attempt <= deliveryAttempts && !stopping.signal.aborted; attempt++) {
      sent.attempts = attempt;
      try {
        await webhookClient().handleProviderWebhook(
          {
            provider: name,
            webhookId: sent.webhookId,
            webhookTimestamp: sent.webhookTimestamp,
            webhookSignature: sent.webhookSignature,
            payload: sent.payload,
          },
          { timeoutMs: 5_000, signal: stopping.signal },
        );
        sent.delivered = true;
        return;
      } catch (error) {
        const code = (error as { code?: number }).code;
        // 3 = INVALID_ARGUMENT, 16 = UNAUTHENTICATED: permanent.
        if (code === 3 || code === 16) return;
        await sleep(deliveryBackoffMs * 2 ** (attempt - 1), stopping.signal).catch(() => {});
      }
    }
  }

  function remember(key: string, result: ProviderResult): ProviderResult {
    answers.set(key, result);
    return result;
  }

  function hold(call: AuthorizeCall, state: AuthorizationState): SandboxAuthorization {
    let auth = byKey.get(call.idempotencyKey);
    if (!auth) {
      auth = {
        reference: reference("auth"),
        idempotencyKey: call.idempotencyKey,
        orderId: call.orderId,
        paymentId: call.paymentId,
        token: call.paymentMethodToken,
        amountMinor: call.amountMinor,
        currency: call.currency,
        state,
        capturedMinor: 0n,
        refundedMinor: 0n,
      };
      byKey.set(call.idempotencyKey, auth);
      byReference.set(auth.reference, auth);
    }
    return auth;
  }

  function findAuthorization(ref: string): SandboxAuthorization {
    const auth = byReference.get(ref);
    if (!auth) throw new ProviderRejectedError("no_such_authorization", "unknown authorization");
    return auth;
  }

  return {
    name,

    async authorize(call, signal) {
      calls.authorize++;
      const token = call.paymentMethodToken;
      if (token === SANDBOX_TOKENS.timeout) {
        // The PSP takes the request (and holds the funds) but its answer
        // never arrives in time: the ambiguous case.
        hold(call, "authorized");
        await sleep(2 ** 31 - 1, signal);
      }
      const known = answers.get(call.idempotencyKey);
      if (known) return known;
      if (token === SANDBOX_TOKENS.unavailable) {
        throw new ProviderUnavailableError("service_unavailable");
      }
      if (token === SANDBOX_TOKENS.failTransient) {
        const failed = failures.get(call.idempotencyKey) ?? 0;
        if (failed < options.transientFailures) {
          failures.set(call.idempotencyKey, failed + 1);
          throw new ProviderUnavailableError("service_unavailable");
        }
      }
      if (token === SANDBOX_TOKENS.slow) await sleep(options.slowMs, signal);
      const decline = DECLINES[token];
      if (decline) {
        const auth = hold(call, "declined");
        return remember(call.idempotencyKey, {
          status: "declined",
          reference: auth.reference,
          code: decline,
        });
      }
      if (token === SANDBOX_TOKENS.asyncApprove || token === SANDBOX_TOKENS.asyncDecline) {
        const auth = hold(call, "pending");
        later(options.asyncDelayMs, async () => {
          if (auth.state !== "pending") return;
          if (token === SANDBOX_TOKENS.asyncApprove) {
            auth.state = "authorized";
            await deliver("authorization.succeeded", auth);
          } else {
            auth.state = "declined";
            await deliver("authorization.declined", auth, "card_declined");
          }
        });
        return remember(call.idempotencyKey, { status: "pending", reference: auth.reference });
      }
      const approves =
        token === SANDBOX_TOKENS.approve ||
        token === SANDBOX_TOKENS.failTransient ||
        token === SANDBOX_TOKENS.slow ||
        token === SANDBOX_TOKENS.captureFail;
      if (!approves) {
        return remember(call.idempotencyKey, {
          status: "declined",
          reference: undefined,
          code: "invalid_payment_method",
        });
      }
      const auth = hold(call, "authorized");
      return remember(call.idempotencyKey, { status: "succeeded", reference: auth.reference });
    },

    async capture(call: CaptureCall) {
      calls.capture++;
      const known = answers.get(call.idempotencyKey);
      if (known) return known;
      const auth = findAuthorization(call.providerReference);
      if (auth.token === SANDBOX_TOKENS.captureFail) {
        throw new ProviderRejectedError("capture_refused", "the issuer refused the capture");
      }
      if (auth.state !== "authorized") {
        throw new ProviderRejectedError("not_capturable", `authorization is ${auth.state}`);
      }
      if (call.amountMinor > auth.amountMinor || call.currency !== auth.currency) {
        throw new ProviderRejectedError("amount_invalid", "capture exceeds the authorization");
      }
      auth.state = "captured";
      auth.capturedMinor = call.amountMinor;
      return remember(call.idempotencyKey, { status: "succeeded", reference: reference("cap") });
    },

    async void(call: VoidCall) {
      calls.void++;
      const known = answers.get(call.idempotencyKey);
      if (known) return known;
      const auth =
        (call.providerReference && byReference.get(call.providerReference)) ||
        byKey.get(call.authorizationKey);
      if (auth) {
        if (auth.state === "captured") {
          throw new ProviderRejectedError("already_captured", "captured; refund instead");
        }
        if (auth.state === "pending" || auth.state === "authorized") auth.state = "voided";
      }
      return remember(call.idempotencyKey, { status: "succeeded", reference: reference("void") });
    },

    async refund(call: RefundCall) {
      calls.refund++;
      const known = answers.get(call.idempotencyKey);
      if (known) return known;
      const auth = findAuthorization(call.providerReference);
      if (auth.state !== "captured") {
        throw new ProviderRejectedError("not_refundable", `authorization is ${auth.state}`);
      }
      if (call.amountMinor > auth.capturedMinor - auth.refundedMinor) {
        throw new ProviderRejectedError("amount_invalid", "refund exceeds the captured amount");
      }
      auth.refundedMinor += call.amountMinor;
      return remember(call.idempotencyKey, { status: "succeeded", reference: reference("ref") });
    },

    verifyWebhook(input: WebhookInput): ProviderNotification {
      let body: unknown;
      try {
        body = signer.verify(Buffer.from(input.payload), {
          "webhook-id": input.webhookId,
          "webhook-timestamp": input.webhookTimestamp,
          "webhook-signature": input.webhookSignature,
        });
      } catch (error) {
        throw new WebhookVerificationFailedError("webhook signature verification failed", {
          cause: error,
        });
      }
      const event = body as { type?: unknown; data?: Record<string, unknown> } | undefined;
      const ref = event?.data?.reference;
      if (typeof event?.type !== "string" || typeof ref !== "string") {
        return { type: "other", name: String(event?.type ?? ""), reference: undefined };
      }
      if (event.type === "authorization.succeeded") {
        return { type: "authorization.succeeded", reference: ref };
      }
      const code = event.data?.decline_code;
      if (event.type === "authorization.declined" && typeof code === "string") {
        return {
          type: "authorization.declined",
          reference: ref,
          code: (DECLINE_CODES.has(code) ? code : "card_declined") as DeclineCode,
        };
      }
      return { type: "other", name: event.type, reference: ref };
    },

    inspect() {
      return { authorizations: [...byKey.values()], calls: { ...calls }, webhooks };
    },

    async close() {
      stopping.abort();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
  };
}
