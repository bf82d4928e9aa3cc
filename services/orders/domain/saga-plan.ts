import { OrderStatus } from "../../../gen/commerce/orders/v1/order_pb.js";
import { isTerminal, type OrderState } from "./order-state.js";

/**
 * What the checkout saga does next for an order, decided from the folded
 * state alone (pure), so a redelivery, a restart or a sweeper run all take
 * the same decision and every step is repeatable with the same idempotency key.
 */
export type SagaAction =
  | { kind: "none" }
  | { kind: "reserve" }
  | { kind: "authorize" }
  /** Capture, then commit the reservation, then confirm. */
  | { kind: "capture" }
  /** Captured already (a crash after capture): commit, then confirm. */
  | { kind: "commit" }
  | { kind: "confirm" }
  | { kind: "compensate"; why: "cancel" | "timeout"; plan: CompensationPlan };

export interface CompensationPlan {
  /**
   * The payment is unknown but may exist: the saga was authorizing when the
   * order was cancelled or timed out (a crash can lose the answer). The same
   * Authorize call is repeated (same key: the first result comes back) and a
   * held amount is voided.
   */
  reconcileAuthorization: boolean;
  voidPayment: boolean;
  refundPayment: boolean;
  /** Release the reservation (harmless when none was made). */
  releaseStock: boolean;
  /**
   * The reservation was committed (a cancelled CONFIRMED order): its units
   * left on-hand stock, so they are added back with AdjustStock, one call per
   * item keyed by (order id, product id), so a repeated step adds them once.
   */
  returnStock: boolean;
}

export function planCompensation(state: OrderState): CompensationPlan {
  return {
    reconcileAuthorization: state.payment === "none" && state.stock === "reserved",
    voidPayment: state.payment === "authorized",
    refundPayment: state.payment === "captured",
    // Committed stock cannot be released, it left on-hand stock: it is returned instead.
    releaseStock: state.stock === "none" || state.stock === "reserved",
    returnStock: state.stock === "committed",
  };
}

export function nextSagaAction(
  state: OrderState,
  options: { now: Date; deadline: Date | undefined },
): SagaAction {
  if (isTerminal(state.status)) return { kind: "none" };
  if (state.status === OrderStatus.CANCELLING) {
    return { kind: "compensate", why: "cancel", plan: planCompensation(state) };
  }
  if (options.deadline && options.now.getTime() >= options.deadline.getTime()) {
    return { kind: "compensate", why: "timeout", plan: planCompensation(state) };
  }
  switch (state.status) {
    case OrderStatus.PENDING:
      return { kind: "reserve" };
    case OrderStatus.STOCK_RESERVED:
      return { kind: "authorize" };
    case OrderStatus.PAYMENT_AUTHORIZED:
      if (state.payment === "authorized") return { kind: "capture" };
      if (state.payment === "captured" && state.stock === "reserved") return { kind: "commit" };
      if (state.payment === "captured" && state.stock === "committed") return { kind: "confirm" };
      return { kind: "none" };
    default:
      return { kind: "none" };
  }
}
