import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { v5 as uuidv5 } from "uuid";
import {
  type Reservation,
  ReservationState,
  StockAdjustmentReason,
} from "../../../gen/commerce/catalog/v1/stock_pb.js";
import {
  OrderCancelledSchema,
  OrderConfirmedSchema,
  OrderPaymentAuthorizedSchema,
  OrderPaymentCapturedSchema,
  OrderPaymentRefundedSchema,
  OrderPaymentVoidedSchema,
  OrderRejectedSchema,
  OrderStockCommittedSchema,
  OrderStockReleasedSchema,
  OrderStockReservedSchema,
} from "../../../gen/commerce/orders/v1/events_pb.js";
import { OrderRejectionSchema, RejectionReason } from "../../../gen/commerce/orders/v1/order_pb.js";
import {
  DeclineReason,
  type Payment,
  PaymentStatus,
} from "../../../gen/commerce/payments/v1/payment_pb.js";
import type { OrderChange, OrderState } from "../domain/order-state.js";
import type { CompensationPlan, SagaAction } from "../domain/saga-plan.js";
import type { UpstreamClients } from "./upstream-clients.js";
import {
  hasCode,
  isTransient,
  RetryableStepError,
  reasonOf,
  stockProblem,
} from "./upstream-errors.js";

/** Remote effects of the saga, named for fault-injection hooks and metrics. */
export type SagaEffect =
  | "reserve"
  | "authorize"
  | "capture"
  | "commit"
  | "release"
  | "return-stock"
  | "void"
  | "refund";

export interface SagaHooks {
  /**
   * Runs after a remote effect succeeded and before the saga records it: a
   * test can kill the process here to prove that resuming repeats the call
   * with the same idempotency key instead of repeating the effect.
   */
  afterEffect?(effect: SagaEffect, orderId: string): void | Promise<void>;
}

// Fixed namespace: keys derived from an order id are the same in every
// process and after every restart.
const KEY_NAMESPACE = "6f1d4c1e-8a43-4c3b-9d07-0f9b1f5c2a71";

/** Idempotency key of one payment operation of one order (a UUID). */
export function paymentKey(
  orderId: string,
  operation: "authorize" | "capture" | "void" | "refund",
) {
  return uuidv5(`${orderId}:${operation}`, KEY_NAMESPACE);
}

/**
 * Idempotency key (AdjustStock `request_id`) for returning one product's
 * committed units of a cancelled order: a repeated compensation adds them once.
 */
export function returnStockKey(orderId: string, productId: string) {
  return uuidv5(`${orderId}:return-stock:${productId.toLowerCase()}`, KEY_NAMESPACE);
}

function reject(reason: RejectionReason, message: string, productId = ""): OrderChange {
  return {
    case: "rejected",
    value: create(OrderRejectedSchema, {
      rejection: create(OrderRejectionSchema, { reason, message, productId }),
    }),
  };
}

function itemLabel(state: OrderState, productId: string): string {
  const item = state.items.find((i) => i.productId.toLowerCase() === productId.toLowerCase());
  return item ? `"${item.name}" (SKU ${item.sku})` : `product ${productId}`;
}

const DECLINE_TEXT: Record<number, string> = {
  [DeclineReason.INSUFFICIENT_FUNDS]: "insufficient funds",
  [DeclineReason.CARD_DECLINED]: "card declined",
  [DeclineReason.EXPIRED_CARD]: "expired card",
  [DeclineReason.INVALID_PAYMENT_METHOD]: "invalid payment method",
  [DeclineReason.SUSPECTED_FRAUD]: "declined by risk checks",
};

function retry(step: string, error: unknown): RetryableStepError {
  return new RetryableStepError(`${step} failed; will retry`, { cause: error });
}

export interface CheckoutSteps {
  /** Performs the action's remote calls and returns the changes to record. */
  run(
    state: OrderState,
    action: SagaAction,
    paymentMethodToken: string | null,
  ): Promise<OrderChange[]>;
}

export function createCheckoutSteps(
  clients: UpstreamClients,
  hooks: SagaHooks = {},
): CheckoutSteps {
  const { inventory, payments } = clients;
  const after = async (effect: SagaEffect, orderId: string) => {
    await hooks.afterEffect?.(effect, orderId);
  };

  async function reserve(state: OrderState): Promise<OrderChange[]> {
    let reservation: Reservation | undefined;
    try {
      ({ reservation } = await inventory.reserveStock({
        orderId: state.id,
        items: state.items.map((item) => ({ productId: item.productId, quantity: item.quantity })),
      }));
    } catch (error) {
      const problem = stockProblem(error);
      if (problem?.type === "STOCK") {
        return [
          reject(
            RejectionReason.OUT_OF_STOCK,
            `Not enough stock for ${itemLabel(state, problem.productId)}.`,
            problem.productId,
          ),
        ];
      }
      if (problem) {
        return [
          reject(
            RejectionReason.PRODUCT_UNAVAILABLE,
            `${itemLabel(state, problem.productId)} is no longer available.`,
            problem.productId,
          ),
        ];
      }
      if (isTransient(error)) throw retry("reserve stock", error);
      return [reject(RejectionReason.PRODUCT_UNAVAILABLE, "The items could not be reserved.")];
    }
    await after("reserve", state.id);
    if (
      reservation?.state === ReservationState.RELEASED ||
      reservation?.state === ReservationState.EXPIRED
    ) {
      // A reservation made by an earlier attempt ran out before it was recorded.
      return [
        reject(RejectionReason.TIMEOUT, "The stock reservation expired before checkout finished."),
      ];
    }
    return [
      {
        case: "stockReserved",
        value: create(OrderStockReservedSchema, {
          reservationExpireTime: reservation?.expireTime,
        }),
      },
    ];
  }

  async function release(state: OrderState, reason: string): Promise<OrderChange[]> {
    try {
      const { reservation } = await inventory.releaseReservation({ orderId: state.id, reason });
      await after("release", state.id);
      // Committed before a crash kept us from recording it: give the units back.
      if (reservation?.state === ReservationState.COMMITTED) return returnStock(state, reason);
      if (!reservation) return [];
      return [{ case: "stockReleased", value: create(OrderStockReleasedSchema, { reason }) }];
    } catch (error) {
      // Committed stock cannot be released (the commit was not recorded here,
      // e.g. a crash right after it): return it instead; the per-item request
      // ids keep that idempotent.
      if (reasonOf(error) === "RESERVATION_COMMITTED") return returnStock(state, reason);
      if (hasCode(error, Code.FailedPrecondition)) return [];
      throw retry("release stock", error);
    }
  }

  /** Adds a cancelled order's committed units back to on-hand stock. */
  async function returnStock(state: OrderState, reason: string): Promise<OrderChange[]> {
    for (const item of state.items) {
      try {
        await inventory.adjustStock({
          productId: item.productId,
          delta: item.quantity,
          reason: StockAdjustmentReason.OTHER,
          note: `order ${state.id} cancelled`,
          requestId: returnStockKey(state.id, item.productId),
        });
      } catch (error) {
        // A product that no longer exists has no stock to return to.
        if (hasCode(error, Code.NotFound)) continue;
        throw retry("return stock", error);
      }
    }
    await after("return-stock", state.id);
    return [{ case: "stockReleased", value: create(OrderStockReleasedSchema, { reason }) }];
  }

  async function refund(
    state: OrderState,
    paymentId: string,
    reason: string,
  ): Promise<OrderChange[]> {
    let payment: Payment | undefined;
    try {
      ({ payment } = await payments.refund({
        idempotencyKey: paymentKey(state.id, "refund"),
        paymentId,
        reason,
      }));
    } catch (error) {
      if (!hasCode(error, Code.FailedPrecondition)) throw retry("refund", error);
      // Nothing (left) to refund: find out why before recording anything.
      try {
        ({ payment } = await payments.getPayment({ id: paymentId }));
      } catch (inner) {
        throw retry("refund", inner);
      }
      if (payment?.status === PaymentStatus.VOIDED) {
        return [{ case: "paymentVoided", value: create(OrderPaymentVoidedSchema, { paymentId }) }];
      }
      if (payment?.status !== PaymentStatus.REFUNDED) throw retry("refund", error);
    }
    await after("refund", state.id);
    return [
      {
        case: "paymentRefunded",
        value: create(OrderPaymentRefundedSchema, {
          paymentId,
          amount: payment?.refundedAmount ?? state.total,
        }),
      },
    ];
  }

  /** Releases a held amount; a payment that turns out captured is refunded instead. */
  async function voidOrRefund(state: OrderState, paymentId: string, reason: string) {
    try {
      await payments.void({ idempotencyKey: paymentKey(state.id, "void"), paymentId });
    } catch (error) {
      if (hasCode(error, Code.FailedPrecondition)) return refund(state, paymentId, reason);
      throw retry("void", error);
    }
    await after("void", state.id);
    return [
      { case: "paymentVoided", value: create(OrderPaymentVoidedSchema, { paymentId }) },
    ] as OrderChange[];
  }

  async function authorizeCall(state: OrderState, token: string): Promise<Payment | undefined> {
    const { payment } = await payments.authorize({
      idempotencyKey: paymentKey(state.id, "authorize"),
      orderId: state.id,
      amount: state.total,
      paymentMethodToken: token,
    });
    return payment;
  }

  async function authorize(state: OrderState, token: string | null): Promise<OrderChange[]> {
    if (!token) {
      return [
        ...(await release(state, "payment_failed")),
        reject(RejectionReason.PAYMENT_FAILED, "No payment method is available for this order."),
      ];
    }
    let payment: Payment | undefined;
    try {
      payment = await authorizeCall(state, token);
      if (payment?.status === PaymentStatus.AUTHORIZATION_PENDING) {
        ({ payment } = await payments.getPayment({ id: payment.id }));
      }
    } catch (error) {
      if (isTransient(error)) throw retry("authorize", error);
      return [
        ...(await release(state, "payment_failed")),
        reject(RejectionReason.PAYMENT_FAILED, "The payment could not be processed."),
      ];
    }
    if (payment?.status === PaymentStatus.AUTHORIZATION_PENDING) {
      throw new RetryableStepError("authorization is pending at the provider");
    }
    await after("authorize", state.id);
    switch (payment?.status) {
      case PaymentStatus.AUTHORIZED:
        return [
          {
            case: "paymentAuthorized",
            value: create(OrderPaymentAuthorizedSchema, {
              paymentId: payment.id,
              amount: payment.amount ?? state.total,
            }),
          },
        ];
      case PaymentStatus.DECLINED: {
        const why = DECLINE_TEXT[payment.declineReason] ?? "declined";
        return [
          ...(await release(state, "payment_declined")),
          reject(RejectionReason.PAYMENT_DECLINED, `The payment was declined (${why}).`),
        ];
      }
      default:
        return [
          ...(await release(state, "payment_failed")),
          reject(RejectionReason.PAYMENT_FAILED, "The payment could not be processed."),
        ];
    }
  }

  async function commitAndConfirm(
    state: OrderState,
    captured: OrderChange[],
  ): Promise<OrderChange[]> {
    try {
      await inventory.commitReservation({ orderId: state.id });
    } catch (error) {
      if (!hasCode(error, Code.FailedPrecondition)) throw retry("commit stock", error);
      // The reservation ran out (released or expired): give the money back.
      return [
        ...captured,
        ...(await refund(state, state.paymentId, "stock_reservation_expired")),
        ...(await release(state, "stock_reservation_expired")),
        reject(RejectionReason.TIMEOUT, "The stock reservation expired before checkout finished."),
      ];
    }
    await after("commit", state.id);
    return [
      ...captured,
      { case: "stockCommitted", value: create(OrderStockCommittedSchema, {}) },
      { case: "confirmed", value: create(OrderConfirmedSchema, {}) },
    ];
  }

  async function capture(state: OrderState): Promise<OrderChange[]> {
    let payment: Payment | undefined;
    try {
      ({ payment } = await payments.capture({
        idempotencyKey: paymentKey(state.id, "capture"),
        paymentId: state.paymentId,
      }));
    } catch (error) {
      if (isTransient(error)) throw retry("capture", error);
      return [
        ...(await voidOrRefund(state, state.paymentId, "capture_failed")),
        ...(await release(state, "capture_failed")),
        reject(RejectionReason.PAYMENT_FAILED, "The payment could not be captured."),
      ];
    }
    await after("capture", state.id);
    const captured: OrderChange = {
      case: "paymentCaptured",
      value: create(OrderPaymentCapturedSchema, {
        paymentId: state.paymentId,
        amount: payment?.capturedAmount ?? state.total,
      }),
    };
    return commitAndConfirm(state, [captured]);
  }

  async function compensate(
    state: OrderState,
    why: "cancel" | "timeout",
    plan: CompensationPlan,
    token: string | null,
  ): Promise<OrderChange[]> {
    const reason = why === "cancel" ? "order_cancelled" : "checkout_timeout";
    const changes: OrderChange[] = [];
    if (plan.refundPayment) {
      changes.push(...(await refund(state, state.paymentId, reason)));
    } else if (plan.voidPayment) {
      changes.push(...(await voidOrRefund(state, state.paymentId, reason)));
    } else if (plan.reconcileAuthorization && token) {
      let payment: Payment | undefined;
      try {
        payment = await authorizeCall(state, token);
      } catch (error) {
        if (isTransient(error)) throw retry("reconcile authorization", error);
      }
      if (
        payment &&
        (payment.status === PaymentStatus.AUTHORIZED ||
          payment.status === PaymentStatus.AUTHORIZATION_PENDING)
      ) {
        changes.push(...(await voidOrRefund(state, payment.id, reason)));
      }
    }
    if (plan.releaseStock) changes.push(...(await release(state, reason)));
    if (plan.returnStock) changes.push(...(await returnStock(state, reason)));
    if (why === "cancel") {
      changes.push({
        case: "cancelled",
        value: create(OrderCancelledSchema, { reason: state.cancelReason }),
      });
    } else {
      changes.push(reject(RejectionReason.TIMEOUT, "Checkout did not finish in time."));
    }
    return changes;
  }

  return {
    async run(state, action, token) {
      switch (action.kind) {
        case "reserve":
          return reserve(state);
        case "authorize":
          return authorize(state, token);
        case "capture":
          return capture(state);
        case "commit":
          return commitAndConfirm(state, []);
        case "confirm":
          return [{ case: "confirmed", value: create(OrderConfirmedSchema, {}) }];
        case "compensate":
          return compensate(state, action.why, action.plan, token);
        case "none":
          return [];
      }
    },
  };
}
