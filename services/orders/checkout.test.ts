import { randomUUID } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReservationState } from "../../gen/commerce/catalog/v1/stock_pb.js";
import { OrderStatus, RejectionReason } from "../../gen/commerce/orders/v1/order_pb.js";
import { PaymentOperation, PaymentStatus } from "../../gen/commerce/payments/v1/payment_pb.js";
import { type CheckoutWorld, startCheckoutWorld } from "./test-support/checkout-world.js";
import { startWebhookReceiver, type WebhookReceiver } from "./test-support/webhook-receiver.js";

let world: CheckoutWorld;
let receiver: WebhookReceiver;
let webhookSecret: string;

beforeAll(async () => {
  world = await startCheckoutWorld();
  receiver = await startWebhookReceiver();
  const { secret } = await world
    .webhookClient(await world.auth.adminToken())
    .createWebhookSubscription({
      subscription: { url: receiver.url, eventTypes: ["order.confirmed", "order.rejected"] },
    });
  webhookSecret = secret;
});

afterAll(async () => {
  await world?.stop();
  await receiver?.close();
});

async function stockOf(productId: string) {
  const { stock } = await world.inventory.getStock({ productId });
  return stock!;
}

describe("checkout saga", () => {
  it("confirms an order for two products: stock committed, payment captured", async () => {
    const a = await world.createProduct({ priceMinor: 1_000n, stock: 10 });
    const b = await world.createProduct({ priceMinor: 250n, stock: 5 });
    const token = await world.auth.userToken();
    const orders = world.orderClient(token);
    const { order } = await orders.createOrder(
      world.orderRequest([
        { product: a, quantity: 2 },
        { product: b, quantity: 3 },
      ]),
    );
    expect(order?.status).toBe(OrderStatus.PENDING);
    expect(order?.total?.amountMinor).toBe(2_750n);
    const done = await world.waitForOrder(token, order!.id);
    expect(OrderStatus[done.status]).toBe("CONFIRMED");
    expect(done.paymentId).not.toBe("");
    const [stockA, stockB] = await Promise.all([stockOf(a.id), stockOf(b.id)]);
    expect([stockA.onHand, stockA.reserved, stockA.available]).toEqual([8n, 0n, 8n]);
    expect([stockB.onHand, stockB.reserved, stockB.available]).toEqual([2n, 0n, 2n]);
    const { payment } = await world.paymentsAdmin.getPayment({ id: done.paymentId });
    expect(payment?.status).toBe(PaymentStatus.CAPTURED);
    expect(payment?.capturedAmount?.amountMinor).toBe(2_750n);
    const authorizations = payment!.attempts.filter(
      (x) => x.operation === PaymentOperation.AUTHORIZE,
    );
    expect(authorizations).toHaveLength(1);
    // The partner endpoint got order.confirmed, signed per Standard Webhooks.
    const mine = (r: { body: string }) => r.body.includes(done.id);
    await receiver.waitFor((all) => all.some(mine));
    const delivery = receiver.received.find(mine)!;
    const payload = new Webhook(webhookSecret).verify(delivery.body, delivery.headers) as {
      type: string;
      data: { orderId: string; status: string; eventId: string };
    };
    expect(payload.type).toBe("order.confirmed");
    expect(payload.data).toMatchObject({ orderId: done.id, status: "ORDER_STATUS_CONFIRMED" });
    expect(delivery.headers["webhook-id"]).toBe(payload.data.eventId);
    const stranger = new Webhook(`whsec_${Buffer.alloc(32, 7).toString("base64")}`);
    expect(() => stranger.verify(delivery.body, delivery.headers)).toThrow();
    // The payment token lives only in private saga state, erased at the end.
    const leaks = await world.sql`
      select (select count(*) from order_events
              where position(convert_to('tok_approve', 'UTF8') in payload) > 0)::int as events,
             (select count(*) from outbox
              where position(convert_to('tok_approve', 'UTF8') in payload) > 0)::int as outbox,
             (select count(*) from orders
              where position(convert_to('tok_approve', 'UTF8') in view) > 0)::int as views,
             (select count(*) from webhook_deliveries where body like '%tok_approve%')::int as hooks,
             (select count(*) from order_sagas
              where order_id = ${done.id} and payment_method_token is not null)::int as saga`;
    expect(leaks[0]).toEqual({ events: 0, outbox: 0, views: 0, hooks: 0, saga: 0 });
  });

  it("rejects a declined card and releases the stock", async () => {
    const a = await world.createProduct({ stock: 4 });
    const token = await world.auth.userToken();
    const { order } = await world.orderClient(token).createOrder(
      world.orderRequest([{ product: a, quantity: 3 }], {
        paymentMethodToken: "tok_decline_insufficient_funds",
      }),
    );
    const done = await world.waitForOrder(token, order!.id);
    expect(OrderStatus[done.status]).toBe("REJECTED");
    expect(done.rejection?.reason).toBe(RejectionReason.PAYMENT_DECLINED);
    const stock = await stockOf(a.id);
    expect([stock.onHand, stock.reserved, stock.available]).toEqual([4n, 0n, 4n]);
    const { reservation } = await world.inventoryService.releaseReservation({ orderId: done.id });
    expect(reservation?.state).toBe(ReservationState.RELEASED);
  });

  it("rejects an order whose item is out of stock, naming the item", async () => {
    const plenty = await world.createProduct({ stock: 10 });
    const scarce = await world.createProduct({ stock: 1, name: "Rare vinyl" });
    const token = await world.auth.userToken();
    const { order } = await world.orderClient(token).createOrder(
      world.orderRequest([
        { product: plenty, quantity: 1 },
        { product: scarce, quantity: 2 },
      ]),
    );
    const done = await world.waitForOrder(token, order!.id);
    expect(OrderStatus[done.status]).toBe("REJECTED");
    expect(done.rejection?.reason).toBe(RejectionReason.OUT_OF_STOCK);
    expect(done.rejection?.productId).toBe(scarce.id);
    expect(done.rejection?.message).toContain("Rare vinyl");
    expect((await stockOf(plenty.id)).available).toBe(10n);
    expect((await stockOf(scarce.id)).available).toBe(1n);
    expect(randomUUID()).not.toBe(done.id);
  });
});

describe("checkout under contention", () => {
  it("confirms exactly the 30 orders that got stock out of 100 concurrent checkouts", async () => {
    const product = await world.createProduct({ priceMinor: 700n, stock: 30 });
    const token = await world.auth.userToken();
    const orders = world.orderClient(token);
    const placed = await Promise.all(
      Array.from({ length: 100 }, () =>
        orders.createOrder(world.orderRequest([{ product, quantity: 1 }])),
      ),
    );
    const ids = placed.map((p) => p.order!.id);
    expect(new Set(ids).size).toBe(100);
    const finals = await Promise.all(
      ids.map((id) => world.waitForOrder(token, id, undefined, 120_000)),
    );
    const confirmed = finals.filter((o) => o.status === OrderStatus.CONFIRMED);
    const rejected = finals.filter((o) => o.status === OrderStatus.REJECTED);
    expect(confirmed).toHaveLength(30);
    expect(rejected).toHaveLength(70);
    for (const order of rejected) {
      expect(order.rejection?.reason).toBe(RejectionReason.OUT_OF_STOCK);
      expect(order.rejection?.productId).toBe(product.id);
      expect(order.paymentId).toBe("");
    }
    // Stock conserved: what was on hand is either still available or committed.
    const stock = await stockOf(product.id);
    expect(stock.reserved).toBe(0n);
    expect(stock.available).toBe(0n);
    expect(30n - stock.onHand).toBe(30n);
    // One capture per confirmed order, of its total; nothing else charged.
    const payments = await Promise.all(
      confirmed.map((o) => world.paymentsAdmin.getPayment({ id: o.paymentId })),
    );
    expect(new Set(confirmed.map((o) => o.paymentId)).size).toBe(30);
    for (const { payment } of payments) {
      expect(payment?.status).toBe(PaymentStatus.CAPTURED);
      expect(payment?.capturedAmount?.amountMinor).toBe(700n);
      expect(
        payment!.attempts.filter((a) => a.operation === PaymentOperation.CAPTURE),
      ).toHaveLength(1);
    }
    const sagas = await world.sql`
      select count(*)::int as open from order_sagas
      where order_id = any(${ids}) and (completed_at is null or payment_method_token is not null)`;
    expect(sagas[0]!.open).toBe(0);
  });
});
