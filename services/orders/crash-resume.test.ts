import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OrderStatus, RejectionReason } from "../../gen/commerce/orders/v1/order_pb.js";
import {
  PaymentAttemptOutcome,
  PaymentOperation,
  PaymentStatus,
} from "../../gen/commerce/payments/v1/payment_pb.js";
import { type CheckoutWorld, startCheckoutWorld } from "./test-support/checkout-world.js";
import { type ChildService, startChildService } from "./test-support/child-service.js";

const CRASHING_MAIN = "services/orders/test-support/crashing-orders-main.ts";

let world: CheckoutWorld;
let orders: ChildService | undefined;

beforeAll(async () => {
  world = await startCheckoutWorld({
    orders: false,
    ordersEnv: { ORDERS_SAGA_ACK_WAIT_MS: "1000", ORDERS_SAGA_TIMEOUT_MS: "120000" },
  });
});

afterAll(async () => {
  await orders?.kill();
  await world?.stop();
});

async function eventKinds(orderId: string): Promise<string[]> {
  const rows = await world.sql<{ event_type: string }[]>`
    select event_type from order_events where order_id = ${orderId} order by sequence`;
  return rows.map((r) => r.event_type);
}

/** Starts the orders process that dies right after `effect`, and waits until it did. */
async function crashAfter(effect: string, trigger?: () => Promise<void>): Promise<void> {
  // Resuming work may crash the process even before it reports ready.
  orders = await world.startOrdersChild(
    CRASHING_MAIN,
    { ORDERS_TEST_CRASH_AFTER: effect },
    { exitBeforeReadyIsOk: true },
  );
  await trigger?.();
  const code = await Promise.race([
    orders.exited,
    new Promise((resolve) => setTimeout(() => resolve("alive"), 60_000)),
  ]);
  expect(code, `orders should have crashed after ${effect}:\n${orders.output()}`).not.toBe("alive");
}

describe("crash and resume", () => {
  it("kills the orders process after reserve, after authorize and after capture: one of each effect", async () => {
    const product = await world.createProduct({ priceMinor: 400n, stock: 10 });
    const token = await world.auth.userToken();
    let orderId = "";

    // 1. Dies after the catalog reserved, before StockReserved was recorded.
    await crashAfter("reserve", async () => {
      const { order } = await world
        .orderClient(token)
        .createOrder(world.orderRequest([{ product, quantity: 2 }]));
      orderId = order!.id;
    });
    expect(await eventKinds(orderId)).toEqual(["placed"]);
    const held = (await world.inventory.getStock({ productId: product.id })).stock!;
    expect([held.onHand, held.reserved]).toEqual([10n, 2n]);

    // 2. A new process resumes (same reservation), then dies after the authorization.
    await crashAfter("authorize");
    expect(await eventKinds(orderId)).toEqual(["placed", "stock_reserved"]);

    // 3. Resumes (same authorization), dies after the capture.
    await crashAfter("capture");
    expect(await eventKinds(orderId)).toEqual(["placed", "stock_reserved", "payment_authorized"]);

    // 4. A healthy process finishes the checkout.
    orders = await world.startOrdersChild();
    const done = await world.waitForOrder(token, orderId);
    expect(done.status).toBe(OrderStatus.CONFIRMED);
    expect(await eventKinds(orderId)).toEqual([
      "placed",
      "stock_reserved",
      "payment_authorized",
      "payment_captured",
      "stock_committed",
      "confirmed",
    ]);
    // One reservation: 2 units left the inventory once.
    const stock = (await world.inventory.getStock({ productId: product.id })).stock!;
    expect([stock.onHand, stock.reserved, stock.available]).toEqual([8n, 0n, 8n]);
    // One authorization and one capture reached the provider.
    const { payment } = await world.paymentsAdmin.getPayment({ id: done.paymentId });
    expect(payment?.status).toBe(PaymentStatus.CAPTURED);
    expect(payment?.capturedAmount?.amountMinor).toBe(800n);
    const succeeded = (op: PaymentOperation) =>
      payment!.attempts.filter(
        (a) => a.operation === op && a.outcome === PaymentAttemptOutcome.SUCCEEDED,
      ).length;
    expect(succeeded(PaymentOperation.AUTHORIZE)).toBe(1);
    expect(succeeded(PaymentOperation.CAPTURE)).toBe(1);
    await orders.stop();
    orders = undefined;
  });

  it("retries while a dependency is down and, past the time limit, compensates and rejects", async () => {
    const product = await world.createProduct({ stock: 5 });
    const token = await world.auth.userToken();
    await world.payments.stop();
    orders = await world.startOrdersChild(undefined, { ORDERS_SAGA_TIMEOUT_MS: "2000" });
    const { order } = await world
      .orderClient(token)
      .createOrder(world.orderRequest([{ product, quantity: 3 }]));
    // Stock is held while payments is down; the saga keeps retrying.
    await world.waitForOrder(token, order!.id, (o) => o.status === OrderStatus.STOCK_RESERVED);
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const { order: waiting } = await world.orderClient(token).getOrder({ id: order!.id });
    // Past the deadline, but the compensation needs payments to make sure nothing is held there.
    expect(waiting?.status).toBe(OrderStatus.STOCK_RESERVED);
    const payments = await startChildService("payments", world.paymentsEnv, {
      port: world.payments.port,
    });
    world.payments = payments;
    const done = await world.waitForOrder(token, order!.id);
    expect(done.status).toBe(OrderStatus.REJECTED);
    expect(done.rejection?.reason).toBe(RejectionReason.TIMEOUT);
    const stock = (await world.inventory.getStock({ productId: product.id })).stock!;
    expect([stock.onHand, stock.reserved, stock.available]).toEqual([5n, 0n, 5n]);
    const kinds = await eventKinds(order!.id);
    expect(kinds.at(-1)).toBe("rejected");
    expect(kinds).toContain("stock_released");
    if (done.paymentId !== "") {
      const { payment } = await world.paymentsAdmin.getPayment({ id: done.paymentId });
      expect(payment?.capturedAmount?.amountMinor ?? 0n).toBe(0n);
    }
  });
});
