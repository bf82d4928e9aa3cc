import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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

async function nothingWritten() {
  const [row] = await h.sql`
    select (select count(*) from payments)::int as payments,
           (select count(*) from idempotency_keys)::int as keys,
           (select count(*) from payment_attempts)::int as attempts,
           (select count(*) from outbox)::int as events`;
  expect(row).toEqual({ payments: 0, keys: 0, attempts: 0, events: 0 });
  expect(h.sandbox.inspect().calls).toEqual({ authorize: 0, capture: 0, void: 0, refund: 0 });
}

const valid = () => ({
  idempotencyKey: `k-${uuid()}`,
  orderId: uuid(),
  amount: { amountMinor: 100n, currencyCode: "EUR" },
  paymentMethodToken: SANDBOX_TOKENS.approve,
});

describe("bad input → INVALID_ARGUMENT with field violations, nothing written or charged", () => {
  it.each([
    ["zero amount", { amount: { amountMinor: 0n, currencyCode: "EUR" } }, ["amount.amount_minor"]],
    [
      "negative amount",
      { amount: { amountMinor: -5n, currencyCode: "EUR" } },
      ["amount.amount_minor"],
    ],
    [
      "absurd amount",
      { amount: { amountMinor: 10n ** 18n, currencyCode: "EUR" } },
      ["amount.amount_minor"],
    ],
    [
      "unknown currency",
      { amount: { amountMinor: 1n, currencyCode: "ABC" } },
      ["amount.currency_code"],
    ],
    [
      "lower-case currency",
      { amount: { amountMinor: 1n, currencyCode: "eur" } },
      ["amount.currency_code"],
    ],
    ["fund code", { amount: { amountMinor: 1n, currencyCode: "XAU" } }, ["amount.currency_code"]],
    ["missing amount", { amount: undefined }, ["amount"]],
    ["missing idempotency key", { idempotencyKey: "" }, ["idempotency_key"]],
    ["key with spaces", { idempotencyKey: "a key" }, ["idempotency_key"]],
    ["over-long key", { idempotencyKey: "k".repeat(256) }, ["idempotency_key"]],
    ["invalid order id", { orderId: "order-1" }, ["order_id"]],
    ["missing order id", { orderId: "" }, ["order_id"]],
    ["missing token", { paymentMethodToken: "" }, ["payment_method_token"]],
  ])("Authorize: %s", async (_name, change, fields) => {
    const bad = await expectRpcError(
      h.client.authorize({ ...valid(), ...change }),
      Code.InvalidArgument,
    );
    expect(bad.fields).toEqual(fields);
    await nothingWritten();
  });

  it("reports every violation at once", async () => {
    const bad = await expectRpcError(
      h.client.authorize({
        idempotencyKey: "",
        orderId: "nope",
        amount: { amountMinor: 0n, currencyCode: "" },
        paymentMethodToken: "",
      }),
      Code.InvalidArgument,
    );
    expect(bad.fields).toEqual([
      "idempotency_key",
      "order_id",
      "amount.amount_minor",
      "amount.currency_code",
      "payment_method_token",
    ]);
    await nothingWritten();
  });

  it("Capture, Void, Refund and GetPayment validate ids, keys and amounts", async () => {
    const capture = await expectRpcError(
      h.client.capture({
        idempotencyKey: "",
        paymentId: "123",
        amount: { amountMinor: -1n, currencyCode: "EUR" },
      }),
      Code.InvalidArgument,
    );
    expect(capture.fields).toEqual(["idempotency_key", "payment_id", "amount.amount_minor"]);
    const voided = await expectRpcError(
      h.client.void({ idempotencyKey: "k", paymentId: "" }),
      Code.InvalidArgument,
    );
    expect(voided.fields).toEqual(["payment_id"]);
    const refund = await expectRpcError(
      h.client.refund({ idempotencyKey: "k", paymentId: uuid(), reason: "x".repeat(501) }),
      Code.InvalidArgument,
    );
    expect(refund.fields).toEqual(["reason"]);
    const get = await expectRpcError(
      h.client.getPayment({ id: "not-a-uuid" }),
      Code.InvalidArgument,
    );
    expect(get.fields).toEqual(["id"]);
    await nothingWritten();
  });
});
