import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
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

const eur = (amountMinor: bigint) => ({ amountMinor, currencyCode: "EUR" });

function authorizeRequest(token: string, orderId = uuid()) {
  return {
    idempotencyKey: `order:${orderId}:authorize`,
    orderId,
    amount: eur(2_500n),
    paymentMethodToken: token,
  };
}

async function providerKeys(h: PaymentsHarness, paymentId: string, operation = "AUTHORIZE") {
  const rows = await h.sql`
    select distinct provider_key::text as k from payment_attempts
    where payment_id = ${paymentId} and operation = ${operation}`;
  return rows.map((r) => r.k as string);
}

describe("transient failures, timeouts and slow answers", () => {
  let h: PaymentsHarness;
  beforeAll(async () => {
    h = await startPayments({
      PAYMENTS_PROVIDER_MAX_ATTEMPTS: "3",
      PAYMENTS_SANDBOX_TRANSIENT_FAILURES: "2",
      PAYMENTS_PROVIDER_TIMEOUT_MS: "800",
      PAYMENTS_SANDBOX_SLOW_MS: "150",
      PAYMENTS_PROVIDER_BREAKER_THRESHOLD: "50",
    });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("retries a transient failure with the same provider key and charges once", async () => {
    const request = authorizeRequest(SANDBOX_TOKENS.failTransient);
    const { payment } = await h.client.authorize(request);
    expect(payment?.status).toBe(PaymentStatus.AUTHORIZED);
    expect(payment?.attempts.map((a) => a.outcome)).toEqual([
      PaymentAttemptOutcome.FAILED,
      PaymentAttemptOutcome.FAILED,
      PaymentAttemptOutcome.SUCCEEDED,
    ]);
    expect(payment?.attempts.map((a) => a.providerCode)).toEqual([
      "service_unavailable",
      "service_unavailable",
      "",
    ]);
    expect(await providerKeys(h, payment!.id)).toHaveLength(1);
    const held = h.sandbox.inspect().authorizations.filter((a) => a.orderId === request.orderId);
    expect(held).toHaveLength(1);
    // The response equals what GetPayment reads back from the ledger.
    expect((await h.client.getPayment({ id: payment!.id })).payment).toEqual(payment);
  });

  it("a timeout on every attempt ends FAILED (terminal) and releases any hold at the provider", async () => {
    const request = authorizeRequest(SANDBOX_TOKENS.timeout);
    const { payment } = await h.client.authorize(request);
    expect(payment?.status).toBe(PaymentStatus.FAILED);
    const authorizeAttempts = payment!.attempts.filter(
      (a) => a.operation === PaymentOperation.AUTHORIZE,
    );
    expect(authorizeAttempts).toHaveLength(3);
    for (const a of authorizeAttempts) {
      expect(a.outcome).toBe(PaymentAttemptOutcome.FAILED);
      expect(a.providerCode).toBe("timeout");
    }
    const voids = payment!.attempts.filter((a) => a.operation === PaymentOperation.VOID);
    expect(voids.map((a) => a.outcome)).toEqual([PaymentAttemptOutcome.SUCCEEDED]);
    const held = h.sandbox.inspect().authorizations.filter((a) => a.orderId === request.orderId);
    expect(held.map((a) => a.state)).toEqual(["voided"]);
    const [row] = await h.sql`select failure_code from payments where id = ${payment!.id}`;
    expect(row!.failure_code).toBe("timeout");

    // Final for its key: a replay neither calls the provider nor changes anything.
    const calls = h.sandbox.inspect().calls.authorize;
    const replay = await h.client.authorize(request);
    expect(replay.payment).toEqual((await h.client.getPayment({ id: payment!.id })).payment);
    expect(replay.payment?.status).toBe(PaymentStatus.FAILED);
    expect(h.sandbox.inspect().calls.authorize).toBe(calls);
  });

  it("a slow answer within the timeout is accepted and its latency recorded", async () => {
    const { payment } = await h.client.authorize(authorizeRequest(SANDBOX_TOKENS.slow));
    expect(payment?.status).toBe(PaymentStatus.AUTHORIZED);
    expect(payment?.attempts).toHaveLength(1);
    const latency = payment!.attempts[0]!.latency!;
    // Lower bound only: the sandbox slept at least this long.
    expect(Number(latency.seconds) * 1000 + latency.nanos / 1e6).toBeGreaterThanOrEqual(140);
  });

  it("a provider that never processes the call gives UNAVAILABLE; a retry with the key resumes the same payment", async () => {
    const request = authorizeRequest(SANDBOX_TOKENS.unavailable);
    const first = await expectRpcError(h.client.authorize(request), Code.Unavailable);
    expect(first.reason).toBe("PROVIDER_UNAVAILABLE");
    const [payment] = await h.sql`
      select id::text, status from payments where order_id = ${request.orderId}`;
    expect(payment!.status).toBe("AUTHORIZATION_PENDING");
    const [key] =
      await h.sql`select state from idempotency_keys where key = ${request.idempotencyKey}`;
    expect(key!.state).toBe("released");

    await expectRpcError(h.client.authorize(request), Code.Unavailable);
    const [count] =
      await h.sql`select count(*)::int as n from payments where order_id = ${request.orderId}`;
    expect(count!.n).toBe(1);
    // Six calls in total, all under one provider idempotency key, no event.
    const [attempts] = await h.sql`
      select count(*)::int as n from payment_attempts where payment_id = ${payment!.id}`;
    expect(attempts!.n).toBe(6);
    expect(await providerKeys(h, payment!.id)).toHaveLength(1);
    const [events] =
      await h.sql`select count(*)::int as n from outbox where aggregate_id = ${payment!.id}`;
    expect(events!.n).toBe(0);

    // The saga gives up and voids: the abandoned payment ends VOIDED.
    const voided = await h.client.void({
      idempotencyKey: `void-${request.orderId}`,
      paymentId: payment!.id,
    });
    expect(voided.payment?.status).toBe(PaymentStatus.VOIDED);
    const replay = await h.client.authorize(request);
    expect(replay.payment?.status).toBe(PaymentStatus.VOIDED);
  });
});

describe("circuit breaker per provider", () => {
  let h: PaymentsHarness;
  beforeAll(async () => {
    h = await startPayments({
      PAYMENTS_PROVIDER_MAX_ATTEMPTS: "3",
      PAYMENTS_PROVIDER_BREAKER_THRESHOLD: "3",
      PAYMENTS_PROVIDER_BREAKER_HALF_OPEN_MS: "600000",
    });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("opens after consecutive failures and then fails fast without calling the provider", async () => {
    await expectRpcError(
      h.client.authorize(authorizeRequest(SANDBOX_TOKENS.unavailable)),
      Code.Unavailable,
    );
    expect(h.deps.executor.breakerState("sandbox")).toBe("open");
    const metrics = await (await fetch(`${h.url}/metrics`)).text();
    expect(metrics).toMatch(/payments_provider_circuit_open\{[^}]*provider="sandbox"[^}]*\} 1/);
    expect(metrics).toMatch(
      /payments_provider_calls_total\{[^}]*outcome="FAILED"[^}]*code="service_unavailable"[^}]*\} 3/,
    );
    const calls = h.sandbox.inspect().calls.authorize;
    const request = authorizeRequest(SANDBOX_TOKENS.approve);
    const fast = await expectRpcError(h.client.authorize(request), Code.Unavailable);
    expect(fast.reason).toBe("PROVIDER_CIRCUIT_OPEN");
    expect(h.sandbox.inspect().calls.authorize).toBe(calls);
    const [row] = await h.sql`
      select count(*)::int as n from payment_attempts a join payments p on p.id = a.payment_id
      where p.order_id = ${request.orderId}`;
    expect(row!.n).toBe(0);
  });
});
