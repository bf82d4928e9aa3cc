import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { CatalogService } from "../../../gen/commerce/catalog/v1/catalog_service_pb.js";
import { InventoryService } from "../../../gen/commerce/catalog/v1/inventory_service_pb.js";
import { OrderStatus } from "../../../gen/commerce/orders/v1/order_pb.js";
import { PaymentService } from "../../../gen/commerce/payments/v1/payment_service_pb.js";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import type { OrderState } from "../domain/order-state.js";
import { createCheckoutSteps, returnStockKey } from "./checkout-steps.js";

/**
 * A crash right after the catalog committed the reservation (before the saga
 * recorded it) leaves the order thinking its stock is only reserved. If the
 * order is then compensated, releasing is refused (the reservation is
 * committed) and the units must be returned instead — once.
 */
describe("checkout compensation after an unrecorded commit", () => {
  it("returns committed stock when the release is refused, idempotently per item", async () => {
    const adjustments: { productId: string; delta: bigint; requestId: string }[] = [];
    const transport = createRouterTransport(({ service }) => {
      service(InventoryService, {
        releaseReservation() {
          throw new ConnectError("reservation is committed", Code.FailedPrecondition, undefined, [
            {
              desc: ErrorInfoSchema,
              value: { reason: "RESERVATION_COMMITTED", domain: "commerce-mesh" },
            },
          ]);
        },
        adjustStock(req) {
          adjustments.push({
            productId: req.productId,
            delta: req.delta,
            requestId: req.requestId,
          });
          return {};
        },
      });
      service(CatalogService, {});
      service(PaymentService, {});
    });
    const steps = createCheckoutSteps({
      catalog: createClient(CatalogService, transport),
      inventory: createClient(InventoryService, transport),
      payments: createClient(PaymentService, transport),
    });
    const orderId = "0190f0f0-0000-7000-8000-0000000000aa";
    const state = {
      id: orderId,
      status: OrderStatus.STOCK_RESERVED,
      stock: "reserved",
      payment: "none",
      paymentId: "",
      items: [
        { productId: "0190f0f0-0000-7000-8000-0000000000b1", quantity: 2 },
        { productId: "0190f0f0-0000-7000-8000-0000000000b2", quantity: 1 },
      ],
    } as unknown as OrderState;
    const plan = {
      reconcileAuthorization: false,
      voidPayment: false,
      refundPayment: false,
      releaseStock: true,
      returnStock: false,
    };
    const changes = await steps.run(state, { kind: "compensate", why: "timeout", plan }, null);
    expect(changes.map((c) => c.case)).toContain("stockReleased");
    expect(adjustments).toEqual([
      {
        productId: "0190f0f0-0000-7000-8000-0000000000b1",
        delta: 2n,
        requestId: returnStockKey(orderId, "0190f0f0-0000-7000-8000-0000000000b1"),
      },
      {
        productId: "0190f0f0-0000-7000-8000-0000000000b2",
        delta: 1n,
        requestId: returnStockKey(orderId, "0190f0f0-0000-7000-8000-0000000000b2"),
      },
    ]);
    // A redelivered step sends the same request ids, which the catalog dedups.
    await steps.run(state, { kind: "compensate", why: "timeout", plan }, null);
    expect(new Set(adjustments.map((a) => a.requestId)).size).toBe(2);
  });
});
