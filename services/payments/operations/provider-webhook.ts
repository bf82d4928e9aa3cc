import type { HandleProviderWebhookRequest } from "../../../gen/commerce/payments/v1/payment_service_pb.js";
import { NotFoundError, UnauthenticatedError } from "../../../platform/errors/domain-errors.js";
import type { OutboxEvent } from "../../../platform/events/index.js";
import type { PaymentState } from "../domain/payment.js";
import { authorizedEvent, declinedEvent } from "../domain/payment-events.js";
import {
  type ProviderNotification,
  WebhookVerificationFailedError,
} from "../providers/provider.js";
import { validateWebhook } from "../rpc/validate-requests.js";
import {
  findPaymentByReference,
  recordWebhook,
  resolvePendingAuthorization,
  setWebhookEffect,
} from "../store/payment-store.js";
import { declineName } from "./authorize.js";
import type { OperationsDeps } from "./operations-context.js";

export type WebhookEffect = "applied" | "ignored" | "replayed";

/**
 * A provider's asynchronous notification. Authentication is the signature:
 * the timestamp must be within the tolerance window (checked here on the
 * database-independent clock, and again by the Standard Webhooks library)
 * and the signature must verify with the provider's secret. The webhook id
 * is recorded in the same transaction as the effect, so a replay — or two
 * deliveries racing — applies once; replays are acknowledged without effect.
 * A notification for a payment we do not know (yet) is NOT_FOUND, which a
 * provider treats as "deliver again later".
 */
export async function handleProviderWebhook(
  deps: OperationsDeps,
  req: HandleProviderWebhookRequest,
): Promise<WebhookEffect> {
  validateWebhook(req, deps.providers.names());
  const provider = deps.providers.get(req.provider)!;
  const skew = Math.abs(Date.now() / 1000 - Number(req.webhookTimestamp));
  if (skew > deps.config.webhookToleranceSec) {
    throw new UnauthenticatedError(
      "webhook timestamp outside the tolerance window",
      "WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE",
    );
  }
  let notification: ProviderNotification;
  try {
    notification = provider.verifyWebhook({
      webhookId: req.webhookId,
      webhookTimestamp: req.webhookTimestamp,
      webhookSignature: req.webhookSignature,
      payload: req.payload,
    });
  } catch (error) {
    if (error instanceof WebhookVerificationFailedError) {
      throw new UnauthenticatedError(
        "webhook signature invalid",
        "WEBHOOK_SIGNATURE_INVALID",
        error,
      );
    }
    throw error;
  }
  const eventType = notification.type === "other" ? notification.name : notification.type;
  return deps.sql.begin(async (tx) => {
    const fresh = await recordWebhook(tx, {
      provider: provider.name,
      webhookId: req.webhookId,
      eventType: eventType.slice(0, 200),
    });
    if (!fresh) return "replayed" as const;
    const receipt = { provider: provider.name, webhookId: req.webhookId };
    if (notification.type === "other") {
      await setWebhookEffect(tx, { ...receipt, paymentId: null, effect: "ignored" });
      return "ignored" as const;
    }
    const payment = await findPaymentByReference(tx, provider.name, notification.reference);
    if (!payment) throw new NotFoundError("payment", notification.reference);
    if (payment.status !== "AUTHORIZATION_PENDING") {
      // Already settled (voided while pending, or a duplicate notification
      // under a new id): nothing to change.
      await setWebhookEffect(tx, { ...receipt, paymentId: payment.id, effect: "ignored" });
      return "ignored" as const;
    }
    let next: PaymentState;
    let event: OutboxEvent;
    if (notification.type === "authorization.succeeded") {
      next = { ...payment, status: "AUTHORIZED" };
      event = authorizedEvent(next);
    } else {
      next = { ...payment, status: "DECLINED", declineReason: declineName(notification.code) };
      event = declinedEvent(next);
    }
    await resolvePendingAuthorization(tx, {
      paymentId: payment.id,
      status: next.status,
      declineReason: next.declineReason,
    });
    await deps.outbox.append(tx, [event]);
    await setWebhookEffect(tx, { ...receipt, paymentId: payment.id, effect: "applied" });
    return "applied" as const;
  });
}
