import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  OrderCancellationRequestedSchema,
  OrderCancelledSchema,
  OrderConfirmedSchema,
  type OrderEvent,
  OrderEventSchema,
  OrderPaymentAuthorizedSchema,
  OrderPaymentCapturedSchema,
  OrderPaymentRefundedSchema,
  OrderPlacedSchema,
  OrderRejectedSchema,
  OrderStockCommittedSchema,
  OrderStockReleasedSchema,
  OrderStockReservedSchema,
} from "../../../gen/commerce/orders/v1/events_pb.js";
import { OrderStatus, RejectionReason } from "../../../gen/commerce/orders/v1/order_pb.js";
import {
  applyChange,
  canApply,
  foldEvents,
  InvalidOrderTransitionError,
  isTerminal,
  type OrderChange,
} from "./order-state.js";
import { toOrderView } from "./order-view.js";

const ORDER = "01900000-0000-7000-8000-000000000001";
const T0 = new Date("2026-01-02T03:04:05.678Z");

const placed: OrderChange = {
  case: "placed",
  value: create(OrderPlacedSchema, {
    userId: "user-1",
    requestId: "req-1",
    items: [
      {
        productId: "p1",
        sku: "SKU1",
        name: "Shoe",
        quantity: 2n,
        unitPrice: { amountMinor: 500n, currencyCode: "EUR" },
        lineTotal: { amountMinor: 1000n, currencyCode: "EUR" },
      },
    ],
    total: { amountMinor: 1000n, currencyCode: "EUR" },
  }),
};
const reserved: OrderChange = {
  case: "stockReserved",
  value: create(OrderStockReservedSchema, {}),
};
const authorized: OrderChange = {
  case: "paymentAuthorized",
  value: create(OrderPaymentAuthorizedSchema, { paymentId: "pay-1" }),
};
const captured: OrderChange = {
  case: "paymentCaptured",
  value: create(OrderPaymentCapturedSchema, { paymentId: "pay-1" }),
};
const committed: OrderChange = {
  case: "stockCommitted",
  value: create(OrderStockCommittedSchema, {}),
};
const confirmed: OrderChange = { case: "confirmed", value: create(OrderConfirmedSchema, {}) };
const released: OrderChange = {
  case: "stockReleased",
  value: create(OrderStockReleasedSchema, { reason: "payment_declined" }),
};
const rejected: OrderChange = {
  case: "rejected",
  value: create(OrderRejectedSchema, {
    rejection: { reason: RejectionReason.PAYMENT_DECLINED, message: "declined" },
  }),
};
const cancelRequested: OrderChange = {
  case: "cancellationRequested",
  value: create(OrderCancellationRequestedSchema, {
    requestedBy: "user-1",
    reason: "changed mind",
  }),
};
const refunded: OrderChange = {
  case: "paymentRefunded",
  value: create(OrderPaymentRefundedSchema, { paymentId: "pay-1" }),
};
const cancelled: OrderChange = {
  case: "cancelled",
  value: create(OrderCancelledSchema, { reason: "changed mind" }),
};

/** Envelopes as the store writes them: sequence from 1, status after each change. */
function history(changes: OrderChange[]): OrderEvent[] {
  let state: ReturnType<typeof applyChange> | undefined;
  return changes.map((change, i) => {
    const at = new Date(T0.getTime() + i * 1000);
    state = applyChange(state, change, i + 1, at);
    return create(OrderEventSchema, {
      eventId: `e${i + 1}`,
      orderId: ORDER,
      sequence: BigInt(i + 1),
      occurTime: timestampFromDate(at),
      status: state.status,
      kind: change,
    });
  });
}

describe("order fold", () => {
  it("folds a confirmed checkout into the read view", () => {
    const state = foldEvents(
      history([placed, reserved, authorized, captured, committed, confirmed]),
    )!;
    expect(state.status).toBe(OrderStatus.CONFIRMED);
    expect(state.id).toBe(ORDER);
    expect(state.lastSequence).toBe(6);
    expect(state.stock).toBe("committed");
    expect(state.payment).toBe("captured");
    expect(state.paymentId).toBe("pay-1");
    expect(state.createTime.toISOString()).toBe(T0.toISOString());
    expect(state.updateTime.getTime() - T0.getTime()).toBe(5000);
    const view = toOrderView(state);
    expect(view.lastSequence).toBe(6n);
    expect(view.total?.amountMinor).toBe(1000n);
    expect(view.items[0]?.sku).toBe("SKU1");
    expect(isTerminal(view.status)).toBe(true);
  });

  it("records the status of each step in the envelopes", () => {
    const statuses = history([placed, reserved, authorized, released, rejected]).map(
      (e) => e.status,
    );
    expect(statuses).toEqual([
      OrderStatus.PENDING,
      OrderStatus.STOCK_RESERVED,
      OrderStatus.PAYMENT_AUTHORIZED,
      OrderStatus.PAYMENT_AUTHORIZED,
      OrderStatus.REJECTED,
    ]);
    const state = foldEvents(history([placed, reserved, released, rejected]))!;
    expect(state.rejection?.reason).toBe(RejectionReason.PAYMENT_DECLINED);
    expect(state.stock).toBe("released");
  });

  it("cancels a confirmed order through CANCELLING with a refund", () => {
    const state = foldEvents(
      history([
        placed,
        reserved,
        authorized,
        captured,
        committed,
        confirmed,
        cancelRequested,
        refunded,
        cancelled,
      ]),
    )!;
    expect(state.status).toBe(OrderStatus.CANCELLED);
    expect(state.payment).toBe("refunded");
    expect(state.cancelReason).toBe("changed mind");
  });

  it("refuses a gap, a duplicate or an out-of-order sequence", () => {
    const events = history([placed, reserved, authorized]);
    expect(() => foldEvents([events[0]!, events[2]!])).toThrow(InvalidOrderTransitionError);
    expect(() => foldEvents([events[0]!, events[0]!])).toThrow(InvalidOrderTransitionError);
    expect(() => foldEvents([events[1]!])).toThrow(InvalidOrderTransitionError);
  });

  it("refuses transitions the status forbids", () => {
    const rejectedState = foldEvents(history([placed, rejected]))!;
    expect(canApply(rejectedState, "cancellationRequested")).toBe(false);
    expect(() => applyChange(rejectedState, cancelRequested, 3, T0)).toThrow(/not allowed/);
    const pending = foldEvents(history([placed]))!;
    expect(() => applyChange(pending, confirmed, 2, T0)).toThrow(InvalidOrderTransitionError);
    const authorizedState = foldEvents(history([placed, reserved, authorized]))!;
    // Confirmed needs both the capture and the commit.
    expect(() => applyChange(authorizedState, confirmed, 4, T0)).toThrow(/not captured/);
    expect(canApply(undefined, "placed")).toBe(true);
    expect(canApply(pending, "placed")).toBe(false);
  });

  it("is a pure function of the events (folding twice gives equal states)", () => {
    const events = history([placed, reserved, authorized, captured, committed, confirmed]);
    expect(foldEvents(events)).toEqual(foldEvents(events));
    expect(foldEvents([])).toBeUndefined();
  });
});
