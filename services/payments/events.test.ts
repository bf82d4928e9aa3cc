import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  PaymentCapturedSchema,
  PaymentFailedSchema,
  PaymentRefundedSchema,
} from "../../gen/commerce/payments/v1/events_pb.js";
import { PaymentOperation } from "../../gen/commerce/payments/v1/payment_pb.js";
import { SANDBOX_TOKENS } from "./providers/sandbox-provider.js";
import {
  decode,
  eventually,
  type PaymentsHarness,
  startPayments,
  uuid,
} from "./test-support/payments-harness.js";

let h: PaymentsHarness;
beforeAll(async () => {
  h = await startPayments({
    PAYMENTS_PROVIDER_TIMEOUT_MS: "500",
    PAYMENTS_PROVIDER_MAX_ATTEMPTS: "2",
  });
});
afterAll(async () => {
  await h?.stop();
});

const eur = (amountMinor: bigint) => ({ amountMinor, currencyCode: "EUR" });

describe("events", () => {
  it("publishes exactly one event per state change, in order, and none for replays", async () => {
    const run = async (token: string, steps: (id: string, orderId: string) => Promise<unknown>) => {
      const orderId = uuid();
      const request = {
        idempotencyKey: `order:${orderId}:authorize`,
        orderId,
        amount: eur(9_000n),
        paymentMethodToken: token,
      };
      const { payment } = await h.client.authorize(request);
      await h.client.authorize(request); // replay: no event
      await steps(payment!.id, orderId);
      return payment!.id;
    };
    const lifecycle = await run(SANDBOX_TOKENS.approve, async (id, orderId) => {
      const capture = { idempotencyKey: `order:${orderId}:capture`, paymentId: id };
      await h.client.capture(capture);
      await h.client.capture(capture);
      const refund1 = { idempotencyKey: `r1-${orderId}`, paymentId: id, amount: eur(4_000n) };
      await h.client.refund(refund1);
      await h.client.refund(refund1);
      await h.client.refund({ idempotencyKey: `r2-${orderId}`, paymentId: id });
    });
    const voided = await run(SANDBOX_TOKENS.approve, async (id, orderId) => {
      await h.client.void({ idempotencyKey: `v1-${orderId}`, paymentId: id });
      await h.client.void({ idempotencyKey: `v2-${orderId}`, paymentId: id });
    });
    const declined = await run(SANDBOX_TOKENS.declineInsufficientFunds, async () => {});
    const failed = await run(SANDBOX_TOKENS.timeout, async () => {});

    await h.drainOutbox();
    const events = await eventually(async () => {
      const all = await h.events();
      expect(all.filter((e) => e.aggregateId === failed)).toHaveLength(1);
      return all;
    });
    const of = (id: string) => events.filter((e) => e.aggregateId === id);
    const domain = h.deps.config.events.domain;
    expect(of(lifecycle).map((e) => e.subject)).toEqual([
      `${domain}.payment.authorized`,
      `${domain}.payment.captured`,
      `${domain}.payment.refunded`,
      `${domain}.payment.refunded`,
    ]);
    expect(of(lifecycle).map((e) => e.aggregateSeq)).toEqual([1, 2, 3, 4]);
    expect(of(voided).map((e) => e.type)).toEqual([
      "commerce.payments.v1.PaymentAuthorized",
      "commerce.payments.v1.PaymentVoided",
    ]);
    expect(of(declined).map((e) => e.type)).toEqual(["commerce.payments.v1.PaymentDeclined"]);
    expect(of(failed).map((e) => e.type)).toEqual(["commerce.payments.v1.PaymentFailed"]);
    expect(new Set(events.map((e) => e.eventId)).size).toBe(events.length);

    const [captured, refund1, refund2] = of(lifecycle).slice(1);
    expect(decode(PaymentCapturedSchema, captured!.data).amount?.amountMinor).toBe(9_000n);
    const r1 = decode(PaymentRefundedSchema, refund1!.data);
    const r2 = decode(PaymentRefundedSchema, refund2!.data);
    expect([r1.amount?.amountMinor, r1.refundedTotal?.amountMinor]).toEqual([4_000n, 4_000n]);
    expect([r2.amount?.amountMinor, r2.refundedTotal?.amountMinor]).toEqual([5_000n, 9_000n]);
    const f = decode(PaymentFailedSchema, of(failed)[0]!.data);
    expect(f.operation).toBe(PaymentOperation.AUTHORIZE);
    expect(f.providerCode).toBe("timeout");
  });
});
