import { Code } from "@connectrpc/connect";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeclineReason, PaymentStatus } from "../../gen/commerce/payments/v1/payment_pb.js";
import { SANDBOX_TOKENS } from "./providers/sandbox-provider.js";
import {
  eventually,
  expectRpcError,
  type PaymentsHarness,
  startPayments,
  uuid,
} from "./test-support/payments-harness.js";

const eur = (amountMinor: bigint) => ({ amountMinor, currencyCode: "EUR" });

async function authorize(h: PaymentsHarness, token: string) {
  const orderId = uuid();
  const { payment } = await h.client.authorize({
    idempotencyKey: `order:${orderId}:authorize`,
    orderId,
    amount: eur(6_000n),
    paymentMethodToken: token,
  });
  return payment!;
}

async function eventTypes(h: PaymentsHarness, paymentId: string): Promise<string[]> {
  const rows = await h.sql`
    select event_type from outbox where aggregate_id = ${paymentId} order by aggregate_seq`;
  return rows.map((r) => r.event_type as string);
}

describe("asynchronous confirmation by the sandbox", () => {
  let h: PaymentsHarness;
  beforeAll(async () => {
    h = await startPayments({ PAYMENTS_SANDBOX_ASYNC_DELAY_MS: "100" });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("PENDING → AUTHORIZED through a signed callback, with one PaymentAuthorized", async () => {
    const pending = await authorize(h, SANDBOX_TOKENS.asyncApprove);
    expect(pending.status).toBe(PaymentStatus.AUTHORIZATION_PENDING);
    expect(pending.providerReference).not.toBe("");
    const confirmed = await eventually(async () => {
      const { payment } = await h.client.getPayment({ id: pending.id });
      expect(payment?.status).toBe(PaymentStatus.AUTHORIZED);
      return payment!;
    });
    expect(confirmed.providerReference).toBe(pending.providerReference);
    const sent = h.sandbox
      .inspect()
      .webhooks.filter((w) =>
        new TextDecoder().decode(w.payload).includes(pending.providerReference),
      );
    expect(sent).toHaveLength(1);
    expect(sent[0]!.delivered).toBe(true);
    expect(await eventTypes(h, pending.id)).toEqual(["commerce.payments.v1.PaymentAuthorized"]);
    // Captures work as for a synchronous authorization.
    const { payment } = await h.client.capture({
      idempotencyKey: `cap-${pending.id}`,
      paymentId: pending.id,
    });
    expect(payment?.status).toBe(PaymentStatus.CAPTURED);
  });

  it("PENDING → DECLINED through a signed callback", async () => {
    const pending = await authorize(h, SANDBOX_TOKENS.asyncDecline);
    await eventually(async () => {
      const { payment } = await h.client.getPayment({ id: pending.id });
      expect(payment?.status).toBe(PaymentStatus.DECLINED);
      expect(payment?.declineReason).toBe(DeclineReason.CARD_DECLINED);
    });
    expect(await eventTypes(h, pending.id)).toEqual(["commerce.payments.v1.PaymentDeclined"]);
  });

  it("a delivered webhook replayed verbatim is acknowledged without effect", async () => {
    const pending = await authorize(h, SANDBOX_TOKENS.asyncApprove);
    const sent = await eventually(async () => {
      const w = h.sandbox
        .inspect()
        .webhooks.find((w) =>
          new TextDecoder().decode(w.payload).includes(pending.providerReference),
        );
      expect(w?.delivered).toBe(true);
      return w!;
    });
    await h.anonymous.handleProviderWebhook({ provider: "sandbox", ...sent });
    await h.anonymous.handleProviderWebhook({ provider: "sandbox", ...sent });
    expect(await eventTypes(h, pending.id)).toEqual(["commerce.payments.v1.PaymentAuthorized"]);
    const [row] = await h.sql`
      select count(*)::int as n, min(effect) as effect from provider_webhooks
      where webhook_id = ${sent.webhookId}`;
    expect(row).toEqual({ n: 1, effect: "applied" });
  });
});

describe("webhook authentication", () => {
  let h: PaymentsHarness;
  // The sandbox never calls back on its own here: the test plays the provider.
  beforeAll(async () => {
    h = await startPayments({ PAYMENTS_SANDBOX_ASYNC_DELAY_MS: "600000" });
  });
  afterAll(async () => {
    await h?.stop();
  });

  function signed(
    reference: string,
    options: { secret?: string; at?: Date; id?: string; type?: string } = {},
  ) {
    const body = JSON.stringify({
      id: `evt_${uuid()}`,
      type: options.type ?? "authorization.succeeded",
      data: { reference },
    });
    const webhookId = options.id ?? `msg_${uuid()}`;
    const at = options.at ?? new Date();
    return {
      provider: "sandbox",
      webhookId,
      webhookTimestamp: String(Math.floor(at.getTime() / 1000)),
      webhookSignature: new Webhook(options.secret ?? h.webhookSecret).sign(webhookId, at, body),
      payload: new TextEncoder().encode(body),
    };
  }

  async function status(id: string) {
    return (await h.client.getPayment({ id })).payment?.status;
  }

  it("rejects a forged signature, changing nothing", async () => {
    const pending = await authorize(h, SANDBOX_TOKENS.asyncApprove);
    const forged = signed(pending.providerReference, {
      secret: `whsec_${Buffer.from("an attacker's guess at the secret").toString("base64")}`,
    });
    const refused = await expectRpcError(
      h.anonymous.handleProviderWebhook(forged),
      Code.Unauthenticated,
    );
    expect(refused.reason).toBe("WEBHOOK_SIGNATURE_INVALID");
    // A valid signature over different bytes fails too.
    const genuine = signed(pending.providerReference);
    const tampered = {
      ...genuine,
      payload: new TextEncoder().encode(
        new TextDecoder().decode(genuine.payload).replace("succeeded", "declined"),
      ),
    };
    await expectRpcError(h.anonymous.handleProviderWebhook(tampered), Code.Unauthenticated);
    expect(await status(pending.id)).toBe(PaymentStatus.AUTHORIZATION_PENDING);
    const [row] = await h.sql`
      select count(*)::int as n from provider_webhooks
      where webhook_id in ${h.sql([forged.webhookId, genuine.webhookId])}`;
    expect(row!.n).toBe(0);
  });

  it("rejects a stale (or future) timestamp even with a valid signature", async () => {
    const pending = await authorize(h, SANDBOX_TOKENS.asyncApprove);
    for (const at of [new Date(Date.now() - 10 * 60_000), new Date(Date.now() + 10 * 60_000)]) {
      const refused = await expectRpcError(
        h.anonymous.handleProviderWebhook(signed(pending.providerReference, { at })),
        Code.Unauthenticated,
      );
      expect(refused.reason).toBe("WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE");
    }
    expect(await status(pending.id)).toBe(PaymentStatus.AUTHORIZATION_PENDING);
  });

  it("applies a valid webhook once; a replayed webhook-id is ignored", async () => {
    const pending = await authorize(h, SANDBOX_TOKENS.asyncApprove);
    const webhook = signed(pending.providerReference);
    await h.anonymous.handleProviderWebhook(webhook);
    expect(await status(pending.id)).toBe(PaymentStatus.AUTHORIZED);
    await h.client.void({ idempotencyKey: `void-${pending.id}`, paymentId: pending.id });
    // The same notification again (same id) must not resurrect the authorization.
    await h.anonymous.handleProviderWebhook(webhook);
    // Concurrent duplicates apply once.
    const other = await authorize(h, SANDBOX_TOKENS.asyncApprove);
    const dup = signed(other.providerReference);
    await Promise.all(Array.from({ length: 5 }, () => h.anonymous.handleProviderWebhook(dup)));
    expect(await status(pending.id)).toBe(PaymentStatus.VOIDED);
    expect(await eventTypes(h, pending.id)).toEqual([
      "commerce.payments.v1.PaymentAuthorized",
      "commerce.payments.v1.PaymentVoided",
    ]);
    expect(await eventTypes(h, other.id)).toEqual(["commerce.payments.v1.PaymentAuthorized"]);
  });

  it("a notification for an unknown payment is NOT_FOUND and not recorded (the provider retries)", async () => {
    const webhook = signed("auth_unknown");
    await expectRpcError(h.anonymous.handleProviderWebhook(webhook), Code.NotFound);
    const [row] = await h.sql`
      select count(*)::int as n from provider_webhooks where webhook_id = ${webhook.webhookId}`;
    expect(row!.n).toBe(0);
  });

  it("a notification for an already settled payment is acknowledged without effect", async () => {
    const pending = await authorize(h, SANDBOX_TOKENS.asyncApprove);
    await h.anonymous.handleProviderWebhook(
      signed(pending.providerReference, { type: "authorization.declined" }),
    );
    // "authorization.declined" without a decline code is not a notification we act on.
    expect(await status(pending.id)).toBe(PaymentStatus.AUTHORIZATION_PENDING);
    await h.anonymous.handleProviderWebhook(signed(pending.providerReference));
    await h.anonymous.handleProviderWebhook(signed(pending.providerReference));
    expect(await status(pending.id)).toBe(PaymentStatus.AUTHORIZED);
    expect(await eventTypes(h, pending.id)).toEqual(["commerce.payments.v1.PaymentAuthorized"]);
  });

  it("validates the envelope: unknown provider, missing headers, oversized payload", async () => {
    const bad = await expectRpcError(
      h.anonymous.handleProviderWebhook({
        provider: "acme",
        webhookId: "",
        webhookTimestamp: "yesterday",
        webhookSignature: "",
        payload: new Uint8Array(64 * 1024 + 1),
      }),
      Code.InvalidArgument,
    );
    expect(bad.fields.sort()).toEqual([
      "payload",
      "provider",
      "webhook_id",
      "webhook_signature",
      "webhook_timestamp",
    ]);
  });
});
