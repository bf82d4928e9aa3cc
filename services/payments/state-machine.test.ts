import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PaymentOperation, PaymentStatus } from "../../gen/commerce/payments/v1/payment_pb.js";
import { SANDBOX_TOKENS } from "./providers/sandbox-provider.js";
import {
  expectRpcError,
  type PaymentsHarness,
  startPayments,
  uuid,
} from "./test-support/payments-harness.js";

let h: PaymentsHarness;
beforeAll(async () => {
  h = await startPayments({ PAYMENTS_SANDBOX_ASYNC_DELAY_MS: "600000" });
});
afterAll(async () => {
  await h?.stop();
});

const eur = (amountMinor: bigint) => ({ amountMinor, currencyCode: "EUR" });
let n = 0;
const key = (what: string) => `${what}-${++n}-${uuid()}`;

async function authorized(amount = 10_000n, token: string = SANDBOX_TOKENS.approve) {
  const { payment } = await h.client.authorize({
    idempotencyKey: key("auth"),
    orderId: uuid(),
    amount: eur(amount),
    paymentMethodToken: token,
  });
  return payment!;
}

async function snapshot(paymentId: string) {
  const [row] = await h.sql`
    select status, captured_minor::text, refunded_minor::text,
           (select count(*)::int from payment_attempts where payment_id = ${paymentId}) as attempts,
           (select count(*)::int from outbox where aggregate_id = ${paymentId}) as events
    from payments where id = ${paymentId}`;
  return row;
}

describe("capture", () => {
  it("captures the whole authorized amount by default", async () => {
    const p = await authorized(10_000n);
    const { payment } = await h.client.capture({ idempotencyKey: key("cap"), paymentId: p.id });
    expect(payment?.status).toBe(PaymentStatus.CAPTURED);
    expect(payment?.capturedAmount?.amountMinor).toBe(10_000n);
    expect(payment?.attempts.map((a) => a.operation)).toEqual([
      PaymentOperation.AUTHORIZE,
      PaymentOperation.CAPTURE,
    ]);
  });

  it("captures part of the amount, once", async () => {
    const p = await authorized(10_000n);
    const { payment } = await h.client.capture({
      idempotencyKey: key("cap"),
      paymentId: p.id,
      amount: eur(7_500n),
    });
    expect(payment?.status).toBe(PaymentStatus.CAPTURED);
    expect(payment?.capturedAmount?.amountMinor).toBe(7_500n);
    const again = await expectRpcError(
      h.client.capture({ idempotencyKey: key("cap"), paymentId: p.id, amount: eur(2_500n) }),
      Code.FailedPrecondition,
    );
    expect(again.reason).toBe("PAYMENT_NOT_CAPTURABLE");
  });

  it("refuses more than authorized, changing nothing", async () => {
    const p = await authorized(10_000n);
    const before = await snapshot(p.id);
    const refused = await expectRpcError(
      h.client.capture({ idempotencyKey: key("cap"), paymentId: p.id, amount: eur(10_001n) }),
      Code.FailedPrecondition,
    );
    expect(refused.reason).toBe("CAPTURE_EXCEEDS_AUTHORIZED");
    expect(await snapshot(p.id)).toEqual(before);
  });

  it("refuses another currency than the payment's as INVALID_ARGUMENT", async () => {
    const p = await authorized(10_000n);
    const refused = await expectRpcError(
      h.client.capture({
        idempotencyKey: key("cap"),
        paymentId: p.id,
        amount: { amountMinor: 100n, currencyCode: "USD" },
      }),
      Code.InvalidArgument,
    );
    expect(refused.fields).toEqual(["amount.currency_code"]);
  });

  it("an unknown payment is NOT_FOUND", async () => {
    await expectRpcError(
      h.client.capture({ idempotencyKey: key("cap"), paymentId: uuid() }),
      Code.NotFound,
    );
  });

  it("a provider refusal is FAILED_PRECONDITION, final for its key, and the payment can still be voided", async () => {
    const p = await authorized(5_000n, SANDBOX_TOKENS.captureFail);
    const capKey = key("cap");
    const first = await expectRpcError(
      h.client.capture({ idempotencyKey: capKey, paymentId: p.id }),
      Code.FailedPrecondition,
    );
    expect(first.reason).toBe("PROVIDER_REFUSED");
    const calls = h.sandbox.inspect().calls.capture;
    const replay = await expectRpcError(
      h.client.capture({ idempotencyKey: capKey, paymentId: p.id }),
      Code.FailedPrecondition,
    );
    expect(replay.reason).toBe("PROVIDER_REFUSED");
    expect(h.sandbox.inspect().calls.capture).toBe(calls);
    const { payment } = await h.client.void({ idempotencyKey: key("void"), paymentId: p.id });
    expect(payment?.status).toBe(PaymentStatus.VOIDED);
    expect(payment?.attempts.map((a) => a.providerCode)).toEqual(["", "capture_refused", ""]);
  });
});

describe("void", () => {
  it("releases an authorization; voiding again succeeds without a provider call", async () => {
    const p = await authorized();
    const { payment } = await h.client.void({ idempotencyKey: key("void"), paymentId: p.id });
    expect(payment?.status).toBe(PaymentStatus.VOIDED);
    const held = h.sandbox
      .inspect()
      .authorizations.find((a) => a.reference === p.providerReference);
    expect(held?.state).toBe("voided");
    const calls = h.sandbox.inspect().calls.void;
    const again = await h.client.void({ idempotencyKey: key("void"), paymentId: p.id });
    expect(again.payment?.status).toBe(PaymentStatus.VOIDED);
    expect(h.sandbox.inspect().calls.void).toBe(calls);
    expect((await snapshot(p.id))!.events).toBe(2); // authorized, voided
  });

  it("refuses to void a captured payment (refund instead) and to capture a voided one", async () => {
    const captured = await authorized();
    await h.client.capture({ idempotencyKey: key("cap"), paymentId: captured.id });
    const refused = await expectRpcError(
      h.client.void({ idempotencyKey: key("void"), paymentId: captured.id }),
      Code.FailedPrecondition,
    );
    expect(refused.reason).toBe("PAYMENT_NOT_VOIDABLE");

    const voided = await authorized();
    await h.client.void({ idempotencyKey: key("void"), paymentId: voided.id });
    const noCapture = await expectRpcError(
      h.client.capture({ idempotencyKey: key("cap"), paymentId: voided.id }),
      Code.FailedPrecondition,
    );
    expect(noCapture.reason).toBe("PAYMENT_NOT_CAPTURABLE");
  });

  it("voids a payment whose authorization is still pending at the provider", async () => {
    const p = await authorized(3_000n, SANDBOX_TOKENS.asyncApprove);
    expect(p.status).toBe(PaymentStatus.AUTHORIZATION_PENDING);
    const { payment } = await h.client.void({ idempotencyKey: key("void"), paymentId: p.id });
    expect(payment?.status).toBe(PaymentStatus.VOIDED);
    const held = h.sandbox
      .inspect()
      .authorizations.find((a) => a.reference === p.providerReference);
    expect(held?.state).toBe("voided");
  });

  it("refuses to void a declined payment", async () => {
    const p = await authorized(3_000n, SANDBOX_TOKENS.declineCard);
    const refused = await expectRpcError(
      h.client.void({ idempotencyKey: key("void"), paymentId: p.id }),
      Code.FailedPrecondition,
    );
    expect(refused.reason).toBe("PAYMENT_NOT_VOIDABLE");
  });
});

describe("refund", () => {
  it("refunds in parts up to the captured amount, then refuses", async () => {
    const p = await authorized(10_000n);
    await h.client.capture({ idempotencyKey: key("cap"), paymentId: p.id, amount: eur(8_000n) });
    const part = await h.client.refund({
      idempotencyKey: key("ref"),
      paymentId: p.id,
      amount: eur(3_000n),
      reason: "item_returned",
    });
    expect(part.payment?.status).toBe(PaymentStatus.PARTIALLY_REFUNDED);
    expect(part.payment?.refundedAmount?.amountMinor).toBe(3_000n);

    const tooMuch = await expectRpcError(
      h.client.refund({ idempotencyKey: key("ref"), paymentId: p.id, amount: eur(5_001n) }),
      Code.FailedPrecondition,
    );
    expect(tooMuch.reason).toBe("REFUND_EXCEEDS_CAPTURED");

    const rest = await h.client.refund({ idempotencyKey: key("ref"), paymentId: p.id });
    expect(rest.payment?.status).toBe(PaymentStatus.REFUNDED);
    expect(rest.payment?.refundedAmount?.amountMinor).toBe(8_000n);

    const nothingLeft = await expectRpcError(
      h.client.refund({ idempotencyKey: key("ref"), paymentId: p.id, amount: eur(1n) }),
      Code.FailedPrecondition,
    );
    expect(nothingLeft.reason).toBe("PAYMENT_NOT_REFUNDABLE");
    const auth = h.sandbox
      .inspect()
      .authorizations.find((a) => a.reference === p.providerReference);
    expect(auth?.refundedMinor).toBe(8_000n);
  });

  it("refuses to refund an uncaptured payment", async () => {
    const p = await authorized();
    const refused = await expectRpcError(
      h.client.refund({ idempotencyKey: key("ref"), paymentId: p.id }),
      Code.FailedPrecondition,
    );
    expect(refused.reason).toBe("PAYMENT_NOT_REFUNDABLE");
  });
});

describe("illegal transitions leave nothing behind", () => {
  it("a refused request does not consume its idempotency key", async () => {
    const p = await authorized();
    const refKey = key("ref");
    await expectRpcError(
      h.client.refund({ idempotencyKey: refKey, paymentId: p.id }),
      Code.FailedPrecondition,
    );
    const [row] =
      await h.sql`select count(*)::int as n from idempotency_keys where key = ${refKey}`;
    expect(row!.n).toBe(0);
    await h.client.capture({ idempotencyKey: key("cap"), paymentId: p.id });
    // The same key works once the payment is in a refundable state.
    const { payment } = await h.client.refund({ idempotencyKey: refKey, paymentId: p.id });
    expect(payment?.status).toBe(PaymentStatus.REFUNDED);
  });
});
