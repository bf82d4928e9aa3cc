import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Product } from "../../gen/commerce/catalog/v1/product_pb.js";
import { type Order, OrderStatus } from "../../gen/commerce/orders/v1/order_pb.js";
import { OrderService } from "../../gen/commerce/orders/v1/order_service_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  type CheckoutWorld,
  client,
  rpcError,
  startCheckoutWorld,
  violatedFields,
} from "./test-support/checkout-world.js";

let world: CheckoutWorld;
let product: Product;

beforeAll(async () => {
  world = await startCheckoutWorld();
  product = await world.createProduct({ priceMinor: 999n, stock: 1_000 });
});

afterAll(async () => {
  await world?.stop();
});

async function counts() {
  const [row] = await world.sql<
    { events: number; outbox: number; requests: number; orders: number; sagas: number }[]
  >`
    select (select count(*) from order_events where event_type = 'placed')::int as events,
           (select count(*) from outbox where subject like '%.order.placed')::int as outbox,
           (select count(*) from order_requests)::int as requests,
           (select count(*) from orders)::int as orders,
           (select count(*) from order_sagas)::int as sagas`;
  return row!;
}

/** What must be equal across idempotent answers (status moves on with the saga). */
function placedPart(order: Order | undefined) {
  return {
    id: order?.id,
    userId: order?.userId,
    items: order?.items,
    total: order?.total,
    shippingAddress: order?.shippingAddress,
    createTime: order?.createTime,
  };
}

describe("CreateOrder idempotency", () => {
  it("turns 20 concurrent calls with one request_id into one order and 20 identical answers", async () => {
    const token = await world.auth.userToken();
    const orders = world.orderClient(token);
    const request = world.orderRequest([{ product, quantity: 2 }]);
    const before = await counts();
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => orders.createOrder(request)),
    );
    const first = placedPart(answers[0]!.order);
    expect(first.id).toMatch(/^[0-9a-f-]{36}$/);
    for (const answer of answers) expect(placedPart(answer.order)).toEqual(first);
    // Statuses may only be the placed one or a later saga step.
    for (const answer of answers) {
      expect([
        OrderStatus.PENDING,
        OrderStatus.STOCK_RESERVED,
        OrderStatus.PAYMENT_AUTHORIZED,
        OrderStatus.CONFIRMED,
      ]).toContain(answer.order!.status);
    }
    const after = await counts();
    expect(after.requests - before.requests).toBe(1);
    expect(after.orders - before.orders).toBe(1);
    expect(after.sagas - before.sagas).toBe(1);
    const placed = await world.sql`
      select count(*)::int as n from order_events where order_id = ${first.id!} and event_type = 'placed'`;
    expect(placed[0]!.n).toBe(1);
    const done = await world.waitForOrder(token, first.id!);
    expect(done.status).toBe(OrderStatus.CONFIRMED);
    // A late replay returns the same order in its current state, without a new one.
    const replay = await orders.createOrder(request);
    expect(placedPart(replay.order)).toEqual(first);
    expect(replay.order?.status).toBe(OrderStatus.CONFIRMED);
    expect((await counts()).orders - before.orders).toBe(1);
  });

  it("refuses the same request_id with a different body and keeps keys per user", async () => {
    const token = await world.auth.userToken();
    const requestId = randomUUID();
    const request = world.orderRequest([{ product, quantity: 1 }], { requestId });
    const { order } = await world.orderClient(token).createOrder(request);
    const before = await counts();
    const error = await rpcError(
      world
        .orderClient(token)
        .createOrder(world.orderRequest([{ product, quantity: 3 }], { requestId })),
    );
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.findDetails(ErrorInfoSchema)[0]?.reason).toBe("REQUEST_ID_REUSED");
    const otherToken = await world.auth.userToken();
    const other = await world.orderClient(otherToken).createOrder(request);
    expect(other.order?.id).not.toBe(order?.id);
    expect(other.order?.userId).not.toBe(order?.userId);
    expect((await counts()).orders - before.orders).toBe(1);
  });
});

describe("CreateOrder bad input", () => {
  it("gives clear errors and writes nothing", async () => {
    const token = await world.auth.userToken();
    const orders = world.orderClient(token);
    const inactive = await world.createProduct({ active: false, stock: 5 });
    const dollars = await world.createProduct({ currency: "USD", stock: 5 });
    const deleted = await world.createProduct({ stock: 5 });
    await world.catalogAdmin.deleteProduct({ id: deleted.id });
    const before = await counts();
    const cases: [string, Parameters<typeof world.orderRequest>[1], string[]][] = [
      [
        "zero quantity",
        { items: [{ productId: product.id, quantity: 0n }] },
        ["items[0].quantity"],
      ],
      [
        "negative quantity",
        { items: [{ productId: product.id, quantity: -2n }] },
        ["items[0].quantity"],
      ],
      [
        "10,000 lines",
        { items: Array.from({ length: 10_000 }, () => ({ productId: product.id, quantity: 1n })) },
        ["items"],
      ],
      [
        "unknown product",
        { items: [{ productId: randomUUID(), quantity: 1n }] },
        ["items[0].product_id"],
      ],
      [
        "inactive product",
        {
          items: [
            { productId: product.id, quantity: 1n },
            { productId: inactive.id, quantity: 1n },
          ],
        },
        ["items[1].product_id"],
      ],
      [
        "deleted product",
        { items: [{ productId: deleted.id, quantity: 1n }] },
        ["items[0].product_id"],
      ],
      [
        "mixed currencies",
        {
          items: [
            { productId: product.id, quantity: 1n },
            { productId: dollars.id, quantity: 1n },
          ],
        },
        ["items[1].product_id"],
      ],
      ["missing address", { shippingAddress: undefined as never }, ["shipping_address"]],
      ["missing payment token", { paymentMethodToken: "" }, ["payment_method_token"]],
      ["request_id not a UUID", { requestId: "order-1" }, ["request_id"]],
    ];
    for (const [name, overrides, fields] of cases) {
      const error = await rpcError(
        orders.createOrder(world.orderRequest([{ product, quantity: 1 }], overrides)),
      );
      expect(error.code, name).toBe(Code.InvalidArgument);
      expect(violatedFields(error), name).toEqual(fields);
    }
    expect(await counts()).toEqual(before);
  });

  it("requires a user token", async () => {
    const anonymous = client(OrderService, world.ordersUrl);
    const request = world.orderRequest([{ product, quantity: 1 }]);
    expect((await rpcError(anonymous.createOrder(request))).code).toBe(Code.Unauthenticated);
  });
});
