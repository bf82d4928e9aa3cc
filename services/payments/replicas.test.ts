import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PaymentStatus } from "../../gen/commerce/payments/v1/payment_pb.js";
import { SANDBOX_TOKENS } from "./providers/sandbox-provider.js";
import { type PaymentsHarness, startPayments, uuid } from "./test-support/payments-harness.js";

/**
 * Two replicas on one schema and one PSP, as in production: the database,
 * not process memory, decides who owns an idempotency key.
 */
let a: PaymentsHarness;
let b: PaymentsHarness;
beforeAll(async () => {
  a = await startPayments({ PAYMENTS_SANDBOX_SLOW_MS: "2000" });
  b = await startPayments({ PAYMENTS_SANDBOX_SLOW_MS: "2000" }, { replicaOf: a });
});
afterAll(async () => {
  await b?.stop();
  await a?.stop();
});

const eur = (amountMinor: bigint) => ({ amountMinor, currencyCode: "EUR" });

function request(orderId: string) {
  return {
    idempotencyKey: `order:${orderId}:authorize`,
    orderId,
    amount: eur(7_700n),
    paymentMethodToken: SANDBOX_TOKENS.slow,
  };
}

describe("replicas", () => {
  it("20 concurrent requests with one key over two replicas: one provider call", async () => {
    const orderId = uuid();
    const calls = a.sandbox.inspect().calls.authorize;
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 === 0 ? a : b).client.authorize(request(orderId)),
      ),
    );
    expect(new Set(answers.map((r) => r.payment?.id)).size).toBe(1);
    for (const r of answers) expect(r.payment?.status).toBe(PaymentStatus.AUTHORIZED);
    expect(a.sandbox.inspect().calls.authorize - calls).toBe(1);
  });

  it("an operation whose owner died (lease expired) is resumed with the same provider key: one authorization", async () => {
    const orderId = uuid();
    const req = request(orderId);
    const calls = a.sandbox.inspect().calls.authorize;
    const first = a.client.authorize(req).then(
      (r) => r.payment,
      (e: unknown) => ConnectError.from(e),
    );
    for (;;) {
      const [row] =
        await a.sql`select state from idempotency_keys where key = ${req.idempotencyKey}`;
      if (row?.state === "in_progress") break;
      await new Promise((r) => setTimeout(r, 5));
    }
    // Replica a is now considered dead: its lease is over.
    await a.sql`update idempotency_keys set lease_until = now() - interval '1 second'
                where key = ${req.idempotencyKey}`;
    await a.sql`update payments set pending_until = now() - interval '1 second'
                where order_id = ${orderId}`;
    const resumed = await b.client.authorize(req).then(
      (r) => r.payment,
      (e: unknown) => ConnectError.from(e),
    );
    const original = await first;
    // Whichever finished second learns that the other one owns the outcome.
    const outcomes = [original, resumed];
    const errors = outcomes.filter((o) => o instanceof ConnectError);
    expect(errors.length).toBeLessThanOrEqual(1);
    for (const e of errors) expect(e.code).toBe(Code.Aborted);

    const replay = await b.client.authorize(req);
    expect(replay.payment?.status).toBe(PaymentStatus.AUTHORIZED);
    // Both replicas called the PSP, under one provider key: one authorization.
    expect(a.sandbox.inspect().calls.authorize - calls).toBe(2);
    const held = a.sandbox.inspect().authorizations.filter((x) => x.orderId === orderId);
    expect(held).toHaveLength(1);
    const [events] = await a.sql`
      select count(*)::int as n from outbox o join payments p on p.id::text = o.aggregate_id
      where p.order_id = ${orderId}`;
    expect(events!.n).toBe(1);
    const keys = await a.sql`
      select distinct provider_key::text from payment_attempts a join payments p on p.id = a.payment_id
      where p.order_id = ${orderId}`;
    expect(keys).toHaveLength(1);
  });
});
