import { randomUUID } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Product } from "../../gen/commerce/catalog/v1/product_pb.js";
import { OrderEventSchema } from "../../gen/commerce/orders/v1/events_pb.js";
import { OrderStatus } from "../../gen/commerce/orders/v1/order_pb.js";
import { PaymentStatus } from "../../gen/commerce/payments/v1/payment_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { foldEvents } from "./domain/order-state.js";
import { nextSagaAction } from "./domain/saga-plan.js";
import { createCheckoutSteps } from "./saga/checkout-steps.js";
import { type CheckoutWorld, rpcError, startCheckoutWorld } from "./test-support/checkout-world.js";

let world: CheckoutWorld;
let product: Product;
const alice = randomUUID();
const bob = randomUUID();
let aliceToken: string;
let bobToken: string;
let adminToken: string;
const aliceOrders: string[] = [];

beforeAll(async () => {
  world = await startCheckoutWorld();
  product = await world.createProduct({ priceMinor: 500n, stock: 100 });
  aliceToken = await world.auth.userToken(alice);
  bobToken = await world.auth.userToken(bob);
  adminToken = await world.auth.adminToken();
  for (let i = 0; i < 5; i++) {
    const { order } = await world
      .orderClient(aliceToken)
      .createOrder(world.orderRequest([{ product, quantity: 1 }]));
    aliceOrders.push(order!.id);
  }
  // One of Alice's orders is declined, so there is something to filter by status.
  const { order } = await world
    .orderClient(aliceToken)
    .createOrder(
      world.orderRequest([{ product, quantity: 1 }], { paymentMethodToken: "tok_decline_card" }),
    );
  aliceOrders.push(order!.id);
  for (const id of aliceOrders) await world.waitForOrder(aliceToken, id);
});

afterAll(async () => {
  await world?.stop();
});

const reason = (error: ConnectError) => error.findDetails(ErrorInfoSchema)[0]?.reason;

describe("order ownership (BOLA)", () => {
  it("hides Alice's order from Bob on Get, List, Cancel and Watch", async () => {
    const bobClient = world.orderClient(bobToken);
    const id = aliceOrders[0]!;
    expect((await rpcError(bobClient.getOrder({ id }))).code).toBe(Code.NotFound);
    expect((await rpcError(bobClient.cancelOrder({ id, reason: "mine now" }))).code).toBe(
      Code.NotFound,
    );
    const watch = async () => {
      for await (const _ of bobClient.watchOrder({ orderId: id })) {
        /* must not yield */
      }
    };
    expect((await rpcError(watch())).code).toBe(Code.NotFound);
    const { orders } = await bobClient.listOrders({});
    expect(orders).toEqual([]);
    const asFilter = await rpcError(bobClient.listOrders({ userId: alice }));
    expect(asFilter.code).toBe(Code.PermissionDenied);
    // A missing order looks exactly the same.
    const missing = await rpcError(bobClient.getOrder({ id: randomUUID() }));
    expect(missing.code).toBe(Code.NotFound);
    expect(reason(missing)).toBe(reason(await rpcError(bobClient.getOrder({ id }))));
    // Nothing changed for Alice.
    const { order } = await world.orderClient(aliceToken).getOrder({ id });
    expect(order?.status).toBe(OrderStatus.CONFIRMED);
  });

  it("lets admins read any order and filter by user", async () => {
    const admin = world.orderClient(adminToken);
    const { order } = await admin.getOrder({ id: aliceOrders[1]! });
    expect(order?.userId).toBe(alice);
    const { orders } = await admin.listOrders({ userId: alice, pageSize: 100 });
    expect(orders.map((o) => o.id).sort()).toEqual([...aliceOrders].sort());
  });
});

describe("ListOrders", () => {
  it("pages newest first with opaque keyset tokens and no gaps or duplicates", async () => {
    const orders = world.orderClient(aliceToken);
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await orders.listOrders({ pageSize: 2, pageToken });
      seen.push(...page.orders.map((o) => o.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "");
    expect(pages).toBe(3);
    expect(seen).toEqual([...aliceOrders].reverse());
  });

  it("filters by status and binds tokens to their filters", async () => {
    const orders = world.orderClient(aliceToken);
    const rejected = await orders.listOrders({ statuses: [OrderStatus.REJECTED] });
    expect(rejected.orders.map((o) => o.id)).toEqual([aliceOrders[5]]);
    const confirmed = await orders.listOrders({ statuses: [OrderStatus.CONFIRMED], pageSize: 2 });
    expect(confirmed.orders).toHaveLength(2);
    expect(confirmed.orders.every((o) => o.status === OrderStatus.CONFIRMED)).toBe(true);
    const mismatch = await rpcError(
      orders.listOrders({ statuses: [OrderStatus.REJECTED], pageToken: confirmed.nextPageToken }),
    );
    expect(mismatch.code).toBe(Code.InvalidArgument);
    expect((await rpcError(orders.listOrders({ pageToken: "garbage!" }))).code).toBe(
      Code.InvalidArgument,
    );
    expect((await rpcError(orders.listOrders({ pageSize: -1 }))).code).toBe(Code.InvalidArgument);
  });
});

describe("CancelOrder", () => {
  it("cancels a confirmed order with a refund and its stock back; cancelling again is refused", async () => {
    const orders = world.orderClient(aliceToken);
    const shirts = await world.createProduct({ stock: 10 });
    const mugs = await world.createProduct({ stock: 5 });
    const levels = async () =>
      Promise.all(
        [shirts, mugs].map(async (p) => {
          const { stock } = await world.inventory.getStock({ productId: p.id });
          return [stock?.onHand, stock?.reserved, stock?.available];
        }),
      );
    const before = await levels();
    expect(before).toEqual([
      [10n, 0n, 10n],
      [5n, 0n, 5n],
    ]);
    const { order: placed } = await orders.createOrder(
      world.orderRequest([
        { product: shirts, quantity: 3 },
        { product: mugs, quantity: 2 },
      ]),
    );
    const id = placed!.id;
    await world.waitForOrder(aliceToken, id, (o) => o.status === OrderStatus.CONFIRMED);
    expect(await levels()).toEqual([
      [7n, 0n, 7n],
      [3n, 0n, 3n],
    ]);
    const { order } = await orders.cancelOrder({ id, reason: "changed my mind" });
    expect([OrderStatus.CANCELLING, OrderStatus.CANCELLED]).toContain(order?.status);
    const done = await world.waitForOrder(
      aliceToken,
      id,
      (o) => o.status === OrderStatus.CANCELLED,
    );
    expect(done.cancelReason).toBe("changed my mind");
    const { payment } = await world.paymentsAdmin.getPayment({ id: done.paymentId });
    expect(payment?.status).toBe(PaymentStatus.REFUNDED);
    // The committed units are back: stock is what it was before the order.
    expect(await levels()).toEqual(before);
    const again = await rpcError(orders.cancelOrder({ id }));
    expect(again.code).toBe(Code.FailedPrecondition);
    expect(reason(again)).toBe("ORDER_ALREADY_CANCELLED");

    // Redelivery: take the cancellation's compensation step again from the
    // state it was decided on (as after a crash before its events were
    // recorded), with the same upstream keys. Stock must not grow twice.
    const rows = await world.sql<{ payload: Buffer; event_type: string }[]>`
      select payload, event_type from order_events where order_id = ${id} order by sequence`;
    const kinds = rows.map((r) => r.event_type);
    expect(kinds.slice(kinds.indexOf("cancellation_requested"))).toEqual([
      "cancellation_requested",
      "payment_refunded",
      "stock_released",
      "cancelled",
    ]);
    const events = rows.map((r) => fromBinary(OrderEventSchema, r.payload));
    const cancelling = foldEvents(
      events.slice(0, events.findIndex((e) => e.kind.case === "cancellationRequested") + 1),
    )!;
    const action = nextSagaAction(cancelling, { now: new Date(), deadline: undefined });
    expect(action).toMatchObject({ kind: "compensate", plan: { returnStock: true } });
    const steps = createCheckoutSteps({
      catalog: world.catalogAdmin,
      inventory: world.inventoryService,
      payments: world.paymentsAdmin,
    });
    for (let i = 0; i < 2; i++) {
      const changes = await steps.run(cancelling, action, null);
      expect(changes.map((c) => c.case)).toEqual(["paymentRefunded", "stockReleased", "cancelled"]);
    }
    expect(await levels()).toEqual(before);
  });

  it("refuses to cancel a rejected order and lets an admin cancel another user's order", async () => {
    const rejected = await rpcError(
      world.orderClient(aliceToken).cancelOrder({ id: aliceOrders[5]! }),
    );
    expect(rejected.code).toBe(Code.FailedPrecondition);
    const { order } = await world
      .orderClient(adminToken)
      .cancelOrder({ id: aliceOrders[3]!, reason: "fraud" });
    expect(order?.userId).toBe(alice);
    const done = await world.waitForOrder(
      aliceToken,
      aliceOrders[3]!,
      (o) => o.status === OrderStatus.CANCELLED,
    );
    expect(done.cancelReason).toBe("fraud");
  });

  it("cancels a pending order before it is charged, releasing its stock", async () => {
    const scarce = await world.createProduct({ stock: 3 });
    const orders = world.orderClient(aliceToken);
    // tok_slow keeps the saga in authorization long enough to cancel meanwhile.
    const { order } = await orders.createOrder(
      world.orderRequest([{ product: scarce, quantity: 2 }], { paymentMethodToken: "tok_slow" }),
    );
    await orders.cancelOrder({ id: order!.id, reason: "too slow" });
    const done = await world.waitForOrder(
      aliceToken,
      order!.id,
      (o) => o.status === OrderStatus.CANCELLED,
    );
    expect(done.status).toBe(OrderStatus.CANCELLED);
    const { stock } = await world.inventory.getStock({ productId: scarce.id });
    expect([stock?.onHand, stock?.reserved, stock?.available]).toEqual([3n, 0n, 3n]);
    if (done.paymentId !== "") {
      const { payment } = await world.paymentsAdmin.getPayment({ id: done.paymentId });
      expect(payment?.capturedAmount?.amountMinor ?? 0n).toBe(0n);
    }
  });

  it("validates ids and reasons", async () => {
    const orders = world.orderClient(aliceToken);
    expect((await rpcError(orders.cancelOrder({ id: "nope" }))).code).toBe(Code.InvalidArgument);
    expect(
      (await rpcError(orders.cancelOrder({ id: aliceOrders[4]!, reason: "x".repeat(501) }))).code,
    ).toBe(Code.InvalidArgument);
    expect((await rpcError(orders.getOrder({ id: "1; drop table orders" }))).code).toBe(
      Code.InvalidArgument,
    );
  });
});
