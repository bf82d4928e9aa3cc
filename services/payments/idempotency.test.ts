import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PaymentStatus } from "../../gen/commerce/payments/v1/payment_pb.js";
import { SANDBOX_TOKENS } from "./providers/sandbox-provider.js";
import {
  expectRpcError,
  type PaymentsHarness,
  startPayments,
  uuid,
} from "./test-support/payments-harness.js";

let h: PaymentsHarness;
beforeAll(async () => {
  h = await startPayments({ PAYMENTS_SANDBOX_SLOW_MS: "1000" });
});
afterAll(async () => {
  await h?.stop();
});

const eur = (amountMinor: bigint) => ({ amountMinor, currencyCode: "EUR" });

async function ledgerRows(orderId: string): Promise<number> {
  const [row] = await h.sql`
    select count(*)::int as n from payment_attempts a join payments p on p.id = a.payment_id
    where p.order_id = ${orderId}`;
  return row!.n;
}

function sandboxAuthorizations(orderId: string) {
  return h.sandbox.inspect().authorizations.filter((a) => a.orderId === orderId);
}

describe("idempotent Authorize", () => {
  it("a replay returns the same payment without calling the provider again", async () => {
    const orderId = uuid();
    const request = {
      idempotencyKey: `order:${orderId}:authorize`,
      orderId,
      amount: eur(2_000n),
      paymentMethodToken: SANDBOX_TOKENS.approve,
    };
    const first = await h.client.authorize(request);
    const calls = h.sandbox.inspect().calls.authorize;
    const second = await h.client.authorize(request);
    expect(second.payment?.id).toBe(first.payment?.id);
    expect(second.payment).toEqual(first.payment);
    expect(h.sandbox.inspect().calls.authorize).toBe(calls);
    expect(await ledgerRows(orderId)).toBe(1);
    const [payments] =
      await h.sql`select count(*)::int as n from payments where order_id = ${orderId}`;
    expect(payments!.n).toBe(1);
  });

  it("20 concurrent requests with one key: one provider call, one payment, 20 identical answers", async () => {
    const orderId = uuid();
    const request = {
      idempotencyKey: `order:${orderId}:authorize`,
      orderId,
      amount: eur(3_100n),
      // Slow, so that the requests really overlap the provider call.
      paymentMethodToken: SANDBOX_TOKENS.slow,
    };
    const calls = h.sandbox.inspect().calls.authorize;
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => h.client.authorize(request)),
    );
    const ids = new Set(answers.map((a) => a.payment?.id));
    expect(ids.size).toBe(1);
    expect(answers[0]!.payment?.status).toBe(PaymentStatus.AUTHORIZED);
    for (const a of answers) expect(a.payment).toEqual(answers[0]!.payment);
    expect(h.sandbox.inspect().calls.authorize - calls).toBe(1);
    expect(sandboxAuthorizations(orderId)).toHaveLength(1);
    expect(await ledgerRows(orderId)).toBe(1);
  });

  it("the same key with a different request is FAILED_PRECONDITION and changes nothing", async () => {
    const orderId = uuid();
    const idempotencyKey = `order:${orderId}:authorize`;
    const first = await h.client.authorize({
      idempotencyKey,
      orderId,
      amount: eur(1_000n),
      paymentMethodToken: SANDBOX_TOKENS.approve,
    });
    const calls = h.sandbox.inspect().calls.authorize;
    for (const change of [
      { amount: eur(1_001n) },
      { amount: { amountMinor: 1_000n, currencyCode: "USD" } },
      { paymentMethodToken: SANDBOX_TOKENS.declineCard },
      { orderId: uuid() },
    ]) {
      const refused = await expectRpcError(
        h.client.authorize({
          idempotencyKey,
          orderId,
          amount: eur(1_000n),
          paymentMethodToken: SANDBOX_TOKENS.approve,
          ...change,
        }),
        Code.FailedPrecondition,
      );
      expect(refused.reason).toBe("IDEMPOTENCY_KEY_REUSED");
    }
    expect(h.sandbox.inspect().calls.authorize).toBe(calls);
    const got = await h.client.getPayment({ id: first.payment!.id });
    expect(got.payment?.amount?.amountMinor).toBe(1_000n);
    expect(await ledgerRows(orderId)).toBe(1);
  });

  it("a key is bound to its operation: reusing an authorize key for a capture is refused", async () => {
    const orderId = uuid();
    const idempotencyKey = `order:${orderId}:authorize`;
    const { payment } = await h.client.authorize({
      idempotencyKey,
      orderId,
      amount: eur(1_000n),
      paymentMethodToken: SANDBOX_TOKENS.approve,
    });
    const refused = await expectRpcError(
      h.client.capture({ idempotencyKey, paymentId: payment!.id }),
      Code.FailedPrecondition,
    );
    expect(refused.reason).toBe("IDEMPOTENCY_KEY_REUSED");
    const got = await h.client.getPayment({ id: payment!.id });
    expect(got.payment?.status).toBe(PaymentStatus.AUTHORIZED);
  });

  it("a request that finds its key busy past the wait budget gets ABORTED", async () => {
    // Its own instance: a short wait budget, a provider slower than it.
    const short = await startPayments({
      PAYMENTS_IN_FLIGHT_WAIT_MS: "100",
      PAYMENTS_SANDBOX_SLOW_MS: "1500",
    });
    try {
      const orderId = uuid();
      const idempotencyKey = `order:${orderId}:authorize`;
      const request = {
        idempotencyKey,
        orderId,
        amount: eur(500n),
        paymentMethodToken: SANDBOX_TOKENS.slow,
      };
      const owner = short.client.authorize(request);
      for (;;) {
        const [row] =
          await short.sql`select state from idempotency_keys where key = ${idempotencyKey}`;
        if (row?.state === "in_progress") break;
        await new Promise((r) => setTimeout(r, 5));
      }
      const busy = await expectRpcError(short.client.authorize(request), Code.Aborted);
      expect(busy.reason).toBe("IDEMPOTENCY_KEY_IN_USE");
      expect((await owner).payment?.status).toBe(PaymentStatus.AUTHORIZED);
      expect(short.sandbox.inspect().calls.authorize).toBe(1);
    } finally {
      await short.stop();
    }
  });
});

describe("idempotent capture, void and refund", () => {
  it("10 concurrent captures with one key: one provider capture, same answer", async () => {
    const orderId = uuid();
    const { payment } = await h.client.authorize({
      idempotencyKey: `order:${orderId}:authorize`,
      orderId,
      amount: eur(4_000n),
      paymentMethodToken: SANDBOX_TOKENS.approve,
    });
    const calls = h.sandbox.inspect().calls.capture;
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        h.client.capture({ idempotencyKey: `order:${orderId}:capture`, paymentId: payment!.id }),
      ),
    );
    expect(answers[0]!.payment?.status).toBe(PaymentStatus.CAPTURED);
    for (const a of answers) expect(a.payment).toEqual(answers[0]!.payment);
    expect(h.sandbox.inspect().calls.capture - calls).toBe(1);
    const [row] = await h.sql`
      select count(*)::int as n from payment_attempts
      where payment_id = ${payment!.id} and operation = 'CAPTURE'`;
    expect(row!.n).toBe(1);
  });

  it("a refund replay returns the same result without a second refund", async () => {
    const orderId = uuid();
    const { payment } = await h.client.authorize({
      idempotencyKey: `order:${orderId}:authorize`,
      orderId,
      amount: eur(4_000n),
      paymentMethodToken: SANDBOX_TOKENS.approve,
    });
    await h.client.capture({ idempotencyKey: `order:${orderId}:capture`, paymentId: payment!.id });
    const refund = {
      idempotencyKey: `order:${orderId}:refund:1`,
      paymentId: payment!.id,
      amount: eur(1_000n),
      reason: "order_cancelled",
    };
    const first = await h.client.refund(refund);
    const second = await h.client.refund(refund);
    expect(second.payment?.refundedAmount?.amountMinor).toBe(1_000n);
    expect(second.payment).toEqual(first.payment);
    const changed = await expectRpcError(
      h.client.refund({ ...refund, amount: eur(1_500n) }),
      Code.FailedPrecondition,
    );
    expect(changed.reason).toBe("IDEMPOTENCY_KEY_REUSED");
    const auth = sandboxAuthorizations(orderId)[0];
    expect(auth?.refundedMinor).toBe(1_000n);
  });
});
