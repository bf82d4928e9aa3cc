import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Product } from "../../gen/commerce/catalog/v1/product_pb.js";
import type { OrderEvent } from "../../gen/commerce/orders/v1/events_pb.js";
import { OrderStatus } from "../../gen/commerce/orders/v1/order_pb.js";
import { type CheckoutWorld, rpcError, startCheckoutWorld } from "./test-support/checkout-world.js";

let world: CheckoutWorld;
let product: Product;
let token: string;

beforeAll(async () => {
  // A slow sandbox authorization leaves time to disconnect mid-checkout.
  world = await startCheckoutWorld({ paymentsEnv: { PAYMENTS_SANDBOX_SLOW_MS: "1500" } });
  product = await world.createProduct({ stock: 1_000 });
  token = await world.auth.userToken();
});

afterAll(async () => {
  await world?.stop();
});

const TERMINAL = [OrderStatus.CONFIRMED, OrderStatus.REJECTED, OrderStatus.CANCELLED];

async function collect(
  orderId: string,
  afterSequence = 0,
  stopAfter?: number,
): Promise<OrderEvent[]> {
  const events: OrderEvent[] = [];
  const abort = new AbortController();
  try {
    for await (const { event } of world
      .orderClient(token)
      .watchOrder({ orderId, afterSequence: BigInt(afterSequence) }, { signal: abort.signal })) {
      events.push(event!);
      if (stopAfter !== undefined && events.length >= stopAfter) {
        abort.abort();
        break;
      }
    }
  } catch (error) {
    if (!abort.signal.aborted) throw error;
  }
  return events;
}

function expectContiguous(events: OrderEvent[], from: number) {
  expect(events.map((e) => Number(e.sequence))).toEqual(events.map((_, i) => from + i + 1));
}

describe("WatchOrder", () => {
  it("resumes after a disconnect with no gap and no duplicate, then ends at the terminal event", async () => {
    const { order } = await world
      .orderClient(token)
      .createOrder(
        world.orderRequest([{ product, quantity: 1 }], { paymentMethodToken: "tok_slow" }),
      );
    const first = await collect(order!.id, 0, 2);
    expect(first.map((e) => e.kind.case)).toEqual(["placed", "stockReserved"]);
    // The client reconnects with its last sequence while the saga goes on.
    const rest = await collect(order!.id, Number(first.at(-1)!.sequence));
    const all = [...first, ...rest];
    expectContiguous(all, 0);
    expect(all.at(-1)!.status).toBe(OrderStatus.CONFIRMED);
    expect(new Set(all.map((e) => e.eventId)).size).toBe(all.length);
    // The concatenation equals the stored history.
    const replay = await collect(order!.id, 0);
    expect(replay.map((e) => e.eventId)).toEqual(all.map((e) => e.eventId));
    expect(all.map((e) => e.kind.case)).toEqual([
      "placed",
      "stockReserved",
      "paymentAuthorized",
      "paymentCaptured",
      "stockCommitted",
      "confirmed",
    ]);
  });

  it("streams many live checkouts in order while they run", async () => {
    const orders = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        world.orderClient(token).createOrder(
          world.orderRequest([{ product, quantity: 1 }], {
            paymentMethodToken: i % 2 === 0 ? "tok_approve" : "tok_decline_card",
          }),
        ),
      ),
    );
    const streams = await Promise.all(orders.map(({ order }) => collect(order!.id)));
    for (const events of streams) {
      expectContiguous(events, 0);
      expect(TERMINAL).toContain(events.at(-1)!.status);
      expect(events.slice(0, -1).every((e) => !TERMINAL.includes(e.status))).toBe(true);
    }
  });

  it("ends at once for a finished order watched from its last sequence, and validates input", async () => {
    const { order } = await world
      .orderClient(token)
      .createOrder(world.orderRequest([{ product, quantity: 1 }]));
    const done = await world.waitForOrder(token, order!.id);
    expect(await collect(order!.id, Number(done.lastSequence))).toEqual([]);
    const tail = await collect(order!.id, Number(done.lastSequence) - 1);
    expect(tail.map((e) => e.kind.case)).toEqual(["confirmed"]);
    const negative = await rpcError(collect(order!.id, -1));
    expect(negative.code).toBe(Code.InvalidArgument);
    const malformed = await rpcError(
      (async () => {
        for await (const _ of world.orderClient(token).watchOrder({ orderId: "x" })) {
          /* nothing */
        }
      })(),
    );
    expect(malformed.code).toBe(Code.InvalidArgument);
  });
});
