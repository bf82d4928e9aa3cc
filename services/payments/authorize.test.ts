import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DeclineReason,
  PaymentAttemptOutcome,
  PaymentOperation,
  PaymentStatus,
} from "../../gen/commerce/payments/v1/payment_pb.js";
import { SANDBOX_TOKENS } from "./providers/sandbox-provider.js";
import {
  expectRpcError,
  type PaymentsHarness,
  startPayments,
  uuid,
} from "./test-support/payments-harness.js";

let h: PaymentsHarness;
beforeAll(async () => {
  h = await startPayments();
});
afterAll(async () => {
  await h?.stop();
});

const eur = (amountMinor: bigint) => ({ amountMinor, currencyCode: "EUR" });

describe("Authorize", () => {
  it("approves: AUTHORIZED with a provider reference and one ledger entry", async () => {
    const orderId = uuid();
    const { payment } = await h.client.authorize({
      idempotencyKey: `order:${orderId}:authorize`,
      orderId,
      amount: eur(4_250n),
      paymentMethodToken: SANDBOX_TOKENS.approve,
    });
    expect(payment?.status).toBe(PaymentStatus.AUTHORIZED);
    expect(payment?.orderId).toBe(orderId);
    expect(payment?.amount).toMatchObject(eur(4_250n));
    expect(payment?.capturedAmount?.amountMinor).toBe(0n);
    expect(payment?.provider).toBe("sandbox");
    expect(payment?.providerReference).toMatch(/^auth_/);
    expect(payment?.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    expect(payment?.attempts).toHaveLength(1);
    expect(payment?.attempts[0]).toMatchObject({
      operation: PaymentOperation.AUTHORIZE,
      outcome: PaymentAttemptOutcome.SUCCEEDED,
      idempotencyKey: `order:${orderId}:authorize`,
    });
    const got = await h.client.getPayment({ id: payment!.id });
    expect(got.payment).toEqual(payment);
  });

  it.each([
    [SANDBOX_TOKENS.declineInsufficientFunds, DeclineReason.INSUFFICIENT_FUNDS],
    [SANDBOX_TOKENS.declineCard, DeclineReason.CARD_DECLINED],
    [SANDBOX_TOKENS.declineExpired, DeclineReason.EXPIRED_CARD],
    ["tok_unknown_to_the_provider", DeclineReason.INVALID_PAYMENT_METHOD],
  ])("a decline is a result, not an error: %s → DECLINED", async (token, reason) => {
    const orderId = uuid();
    const { payment } = await h.client.authorize({
      idempotencyKey: `decline-${orderId}`,
      orderId,
      amount: eur(999n),
      paymentMethodToken: token,
    });
    expect(payment?.status).toBe(PaymentStatus.DECLINED);
    expect(payment?.declineReason).toBe(reason);
    expect(payment?.attempts.map((a) => a.outcome)).toEqual([PaymentAttemptOutcome.DECLINED]);
    // A declined payment accepts nothing further.
    const refused = await expectRpcError(
      h.client.capture({ idempotencyKey: `cap-${orderId}`, paymentId: payment!.id }),
      Code.FailedPrecondition,
    );
    expect(refused.reason).toBe("PAYMENT_NOT_CAPTURABLE");
  });

  it("never stores the payment method token", async () => {
    const orderId = uuid();
    const token = `${SANDBOX_TOKENS.approve}`;
    await h.client.authorize({
      idempotencyKey: `secret-${orderId}`,
      orderId,
      amount: eur(100n),
      paymentMethodToken: token,
    });
    const rows = await h.sql`
      select request::text as request from payment_attempts a
      join payments p on p.id = a.payment_id where p.order_id = ${orderId}`;
    expect(rows).toHaveLength(1);
    expect(rows[0]!.request).not.toContain(token);
    const outbox = await h.sql`select payload from outbox`;
    for (const row of outbox)
      expect(Buffer.from(row.payload).toString("latin1")).not.toContain(token);
  });

  it("requires a service (or admin) token; the webhook RPC stays public", async () => {
    const orderId = uuid();
    const denied = await expectRpcError(
      h.anonymous.authorize({
        idempotencyKey: `anon-${orderId}`,
        orderId,
        amount: eur(100n),
        paymentMethodToken: SANDBOX_TOKENS.approve,
      }),
      Code.Unauthenticated,
    );
    expect(denied.reason).toBe("TOKEN_MISSING");
    const [row] = await h.sql`select count(*)::int as n from payments where order_id = ${orderId}`;
    expect(row!.n).toBe(0);
    // Public: reaches validation (and fails it) instead of the token check.
    await expectRpcError(h.anonymous.handleProviderWebhook({}), Code.InvalidArgument);
  });

  it("GetPayment of an unknown id is NOT_FOUND", async () => {
    await expectRpcError(h.client.getPayment({ id: uuid() }), Code.NotFound);
  });
});
