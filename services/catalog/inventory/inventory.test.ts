import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ReservationState,
  StockAdjustmentReason,
} from "../../../gen/commerce/catalog/v1/stock_pb.js";
import {
  type CatalogTestEnv,
  fieldViolations,
  preconditionViolations,
  productInput,
  rpcError,
  startCatalog,
  waitFor,
} from "../test-support.js";

let t: CatalogTestEnv;
beforeAll(async () => {
  // Short TTL and a fast sweeper for the expiry test; long enough for the rest.
  t = await startCatalog({
    RESERVATION_TTL_SECONDS: "5",
    RESERVATION_SWEEP_INTERVAL_MS: "200",
    LOW_STOCK_THRESHOLD: "2",
  });
});
afterAll(async () => {
  await t?.stop();
});

async function productWithStock(units: number): Promise<string> {
  const { product } = await t.catalog.createProduct({ product: productInput() });
  if (units > 0) {
    await t.inventory.adjustStock({
      productId: product!.id,
      delta: BigInt(units),
      reason: StockAdjustmentReason.RESTOCK,
      requestId: crypto.randomUUID(),
    });
  }
  return product!.id;
}

async function stockOf(productId: string) {
  const { stock } = await t.inventory.getStock({ productId });
  return {
    onHand: Number(stock!.onHand),
    reserved: Number(stock!.reserved),
    available: Number(stock!.available),
  };
}

describe("inventory", () => {
  it("never oversells: 50 concurrent reservations of 1 unit against 10 → exactly 10 succeed", async () => {
    const productId = await productWithStock(10);
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () =>
        t.inventory.reserveStock({
          orderId: crypto.randomUUID(),
          items: [{ productId, quantity: 1n }],
        }),
      ),
    );
    const ok = results.filter((r) => r.status === "fulfilled");
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(ok).toHaveLength(10);
    expect(failed).toHaveLength(40);
    for (const f of failed) {
      const err = await rpcError(Promise.reject(f.reason));
      expect(err.code).toBe(Code.FailedPrecondition);
      expect(preconditionViolations(err)).toEqual([
        expect.objectContaining({ type: "STOCK", subject: `products/${productId}` }),
      ]);
    }
    expect(await stockOf(productId)).toEqual({ onHand: 10, reserved: 10, available: 0 });
  });

  it("concurrent multi-item reservations over overlapping products never deadlock or go negative", async () => {
    const ids = await Promise.all([0, 1, 2, 3].map(() => productWithStock(20)));
    // Each order takes 3 of the 4 products, listed in a different order each time.
    const orders = Array.from({ length: 40 }, (_, i) => {
      const picked = [ids[i % 4]!, ids[(i + 1) % 4]!, ids[(i + 2) % 4]!];
      if (i % 2 === 1) picked.reverse();
      return picked.map((productId) => ({ productId, quantity: 1n + BigInt(i % 2) }));
    });
    const results = await Promise.allSettled(
      orders.map((items) => t.inventory.reserveStock({ orderId: crypto.randomUUID(), items })),
    );
    for (const r of results) {
      if (r.status === "rejected") {
        // Out of stock is fine; a deadlock (ABORTED/INTERNAL) is not.
        expect((await rpcError(Promise.reject(r.reason))).code).toBe(Code.FailedPrecondition);
      }
    }
    const reservedByProduct = new Map<string, number>();
    results.forEach((r, i) => {
      if (r.status !== "fulfilled") return;
      for (const item of orders[i]!) {
        reservedByProduct.set(
          item.productId,
          (reservedByProduct.get(item.productId) ?? 0) + Number(item.quantity),
        );
      }
    });
    for (const id of ids) {
      const s = await stockOf(id);
      expect(s.available).toBeGreaterThanOrEqual(0);
      expect(s.reserved).toBe(reservedByProduct.get(id) ?? 0);
    }
    expect(results.some((r) => r.status === "fulfilled")).toBe(true);
  });

  it("is all-or-nothing and names every item that blocked it", async () => {
    const plenty = await productWithStock(5);
    const scarce = await productWithStock(1);
    const err = await rpcError(
      t.inventory.reserveStock({
        orderId: crypto.randomUUID(),
        items: [
          { productId: plenty, quantity: 2n },
          { productId: scarce, quantity: 3n },
        ],
      }),
    );
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(preconditionViolations(err).map((v) => v.subject)).toEqual([`products/${scarce}`]);
    expect((await stockOf(plenty)).reserved).toBe(0);
    const { product } = await t.catalog.updateProduct({
      product: { id: plenty, active: false },
      updateMask: { paths: ["active"] },
    });
    const inactive = await rpcError(
      t.inventory.reserveStock({
        orderId: crypto.randomUUID(),
        items: [{ productId: product!.id, quantity: 1n }],
      }),
    );
    expect(preconditionViolations(inactive)[0]?.type).toBe("PRODUCT_UNAVAILABLE");
  });

  it("a repeated ReserveStock with the same order id returns the same reservation; other items are refused", async () => {
    const productId = await productWithStock(5);
    const orderId = crypto.randomUUID();
    const items = [{ productId, quantity: 2n }];
    const calls = await Promise.all(
      [1, 2, 3].map(() => t.inventory.reserveStock({ orderId, items })),
    );
    for (const c of calls) {
      expect(c.reservation?.orderId).toBe(orderId);
      expect(c.reservation?.createTime).toEqual(calls[0]!.reservation?.createTime);
    }
    expect((await stockOf(productId)).reserved).toBe(2);
    const other = await rpcError(
      t.inventory.reserveStock({ orderId, items: [{ productId, quantity: 1n }] }),
    );
    expect(other.code).toBe(Code.FailedPrecondition);
  });

  it("commit and release are idempotent and move stock exactly once", async () => {
    const productId = await productWithStock(6);
    const committed = crypto.randomUUID();
    const released = crypto.randomUUID();
    await t.inventory.reserveStock({ orderId: committed, items: [{ productId, quantity: 2n }] });
    await t.inventory.reserveStock({ orderId: released, items: [{ productId, quantity: 3n }] });
    const c1 = await t.inventory.commitReservation({ orderId: committed });
    const c2 = await t.inventory.commitReservation({ orderId: committed });
    expect(c1.reservation?.state).toBe(ReservationState.COMMITTED);
    expect(c2.reservation?.endTime).toEqual(c1.reservation?.endTime);
    const r1 = await t.inventory.releaseReservation({
      orderId: released,
      reason: "payment_declined",
    });
    await t.inventory.releaseReservation({ orderId: released, reason: "again" });
    expect(r1.reservation?.state).toBe(ReservationState.RELEASED);
    expect(await stockOf(productId)).toEqual({ onHand: 4, reserved: 0, available: 4 });
    expect((await rpcError(t.inventory.releaseReservation({ orderId: committed }))).code).toBe(
      Code.FailedPrecondition,
    );
    expect((await rpcError(t.inventory.commitReservation({ orderId: released }))).code).toBe(
      Code.FailedPrecondition,
    );
    const never = await t.inventory.releaseReservation({ orderId: crypto.randomUUID() });
    expect(never.reservation).toBeUndefined();
    const ledger = await t.db
      .sql`select kind, delta_on_hand::int as on_hand, delta_reserved::int as reserved
      from stock_ledger where product_id = ${productId} order by id`;
    expect(ledger.map((r) => r.kind)).toEqual([
      "adjust",
      "reserve",
      "reserve",
      "commit",
      "release",
    ]);
  });

  it("an expired reservation is released by the sweeper and emits ReservationExpired", async () => {
    const productId = await productWithStock(3);
    const orderId = crypto.randomUUID();
    await t.inventory.reserveStock({ orderId, items: [{ productId, quantity: 3n }] });
    expect((await stockOf(productId)).available).toBe(0);
    await waitFor("reservation to expire", async () => (await stockOf(productId)).available === 3);
    const again = await t.inventory.reserveStock({ orderId, items: [{ productId, quantity: 3n }] });
    expect(again.reservation?.state).toBe(ReservationState.EXPIRED);
    const events = await t.db
      .sql`select subject from outbox where aggregate_id = ${orderId} order by aggregate_seq`;
    expect(events.map((e) => String(e.subject).split(".").slice(1).join("."))).toEqual([
      "stock.reserved",
      "stock.expired",
    ]);
  });

  it("AdjustStock: idempotent on request_id, refuses to go below reserved, emits StockLow once per crossing", async () => {
    const productId = await productWithStock(0);
    const requestId = crypto.randomUUID();
    const adjust = { productId, delta: 5n, reason: StockAdjustmentReason.RESTOCK, requestId };
    await t.inventory.adjustStock(adjust);
    const replay = await t.inventory.adjustStock(adjust);
    expect(replay.stock?.onHand).toBe(5n);
    const reused = await rpcError(t.inventory.adjustStock({ ...adjust, delta: 7n }));
    expect(reused.code).toBe(Code.FailedPrecondition);
    await t.inventory.reserveStock({
      orderId: crypto.randomUUID(),
      items: [{ productId, quantity: 2n }],
    });
    const below = await rpcError(
      t.inventory.adjustStock({
        productId,
        delta: -4n,
        reason: StockAdjustmentReason.DAMAGE,
        requestId: crypto.randomUUID(),
      }),
    );
    expect(below.code).toBe(Code.FailedPrecondition);
    // available 3 → 2 crosses the threshold (2): one StockLow; 2 → 1 does not cross again.
    await t.inventory.adjustStock({
      productId,
      delta: -1n,
      reason: StockAdjustmentReason.DAMAGE,
      requestId: crypto.randomUUID(),
    });
    await t.inventory.adjustStock({
      productId,
      delta: -1n,
      reason: StockAdjustmentReason.DAMAGE,
      requestId: crypto.randomUUID(),
    });
    const low = await t.db
      .sql`select count(*)::int as n from outbox where aggregate_id = ${productId} and subject like '%.stock.low'`;
    expect(low[0]!.n).toBe(1);
    const bad = await rpcError(
      t.inventory.adjustStock({
        productId,
        delta: 0n,
        reason: StockAdjustmentReason.UNSPECIFIED,
        requestId: "nope",
      }),
    );
    expect(fieldViolations(bad).sort()).toEqual(["delta", "reason", "request_id"]);
  });

  it("rejects bad reservation input with field violations and writes nothing", async () => {
    const productId = await productWithStock(5);
    const err = await rpcError(
      t.inventory.reserveStock({
        orderId: "not-a-uuid",
        items: [
          { productId, quantity: 0n },
          { productId, quantity: 1n },
        ],
      }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(fieldViolations(err)).toEqual(["order_id", "items[0].quantity", "items[1].product_id"]);
    expect((await stockOf(productId)).reserved).toBe(0);
  });
});
