import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { OrderPlacedSchema } from "../../../gen/commerce/orders/v1/events_pb.js";
import { OrderStatus } from "../../../gen/commerce/orders/v1/order_pb.js";
import { applyChange, type OrderState } from "./order-state.js";
import { nextSagaAction, planCompensation } from "./saga-plan.js";

const now = new Date("2026-01-01T00:00:10Z");
const later = new Date("2026-01-01T00:01:00Z");
const earlier = new Date("2026-01-01T00:00:00Z");

function state(overrides: Partial<OrderState>): OrderState {
  const base = applyChange(
    undefined,
    {
      case: "placed",
      value: create(OrderPlacedSchema, {
        userId: "u",
        total: { amountMinor: 1n, currencyCode: "EUR" },
      }),
    },
    1,
    earlier,
  );
  return { ...base, ...overrides };
}

describe("saga plan", () => {
  it("walks the happy path one step at a time", () => {
    const opts = { now, deadline: later };
    expect(nextSagaAction(state({}), opts).kind).toBe("reserve");
    expect(
      nextSagaAction(state({ status: OrderStatus.STOCK_RESERVED, stock: "reserved" }), opts).kind,
    ).toBe("authorize");
    const authorized = {
      status: OrderStatus.PAYMENT_AUTHORIZED,
      stock: "reserved",
      payment: "authorized",
    } as const;
    expect(nextSagaAction(state(authorized), opts).kind).toBe("capture");
    expect(nextSagaAction(state({ ...authorized, payment: "captured" }), opts).kind).toBe("commit");
    expect(
      nextSagaAction(state({ ...authorized, payment: "captured", stock: "committed" }), opts).kind,
    ).toBe("confirm");
    expect(nextSagaAction(state({ status: OrderStatus.CONFIRMED }), opts).kind).toBe("none");
    expect(nextSagaAction(state({ status: OrderStatus.REJECTED }), opts).kind).toBe("none");
  });

  it("compensates after the deadline, whatever step the order is in", () => {
    const action = nextSagaAction(
      state({ status: OrderStatus.PAYMENT_AUTHORIZED, stock: "reserved", payment: "authorized" }),
      { now, deadline: earlier },
    );
    expect(action).toEqual({
      kind: "compensate",
      why: "timeout",
      plan: {
        reconcileAuthorization: false,
        voidPayment: true,
        refundPayment: false,
        releaseStock: true,
        returnStock: false,
      },
    });
  });

  it("finishes a cancellation even past the deadline and even after confirmation", () => {
    const action = nextSagaAction(
      state({ status: OrderStatus.CANCELLING, stock: "committed", payment: "captured" }),
      { now, deadline: earlier },
    );
    expect(action).toEqual({
      kind: "compensate",
      why: "cancel",
      plan: {
        reconcileAuthorization: false,
        voidPayment: false,
        refundPayment: true,
        releaseStock: false,
        returnStock: true,
      },
    });
  });

  it("reconciles a possibly lost authorization when stock is held but no payment is recorded", () => {
    expect(planCompensation(state({ status: OrderStatus.CANCELLING, stock: "reserved" }))).toEqual({
      reconcileAuthorization: true,
      voidPayment: false,
      refundPayment: false,
      releaseStock: true,
      returnStock: false,
    });
    // Nothing was reserved yet: only a (harmless) release, never a payment call.
    expect(planCompensation(state({ status: OrderStatus.CANCELLING }))).toEqual({
      reconcileAuthorization: false,
      voidPayment: false,
      refundPayment: false,
      releaseStock: true,
      returnStock: false,
    });
  });
});
