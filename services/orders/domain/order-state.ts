import type { PostalAddress } from "../../../gen/commerce/common/v1/address_pb.js";
import type { Money } from "../../../gen/commerce/common/v1/money_pb.js";
import type { OrderEvent } from "../../../gen/commerce/orders/v1/events_pb.js";
import {
  type OrderItem,
  type OrderRejection,
  OrderStatus,
} from "../../../gen/commerce/orders/v1/order_pb.js";

/** One of the OrderEvent `kind` variants (what happened, without the envelope). */
export type OrderChange = Exclude<OrderEvent["kind"], { case: undefined }>;
export type OrderChangeKind = OrderChange["case"];

/**
 * The state of one order, derived only by folding its events. Everything the
 * saga, the commands and the read projection need is here; nothing is stored
 * beside the events except the private saga data (payment token, deadline).
 */
export interface OrderState {
  id: string;
  userId: string;
  requestId: string;
  items: OrderItem[];
  total: Money;
  shippingAddress: PostalAddress | undefined;
  status: OrderStatus;
  lastSequence: number;
  createTime: Date;
  updateTime: Date;
  stock: "none" | "reserved" | "committed" | "released";
  reservationExpireTime: Date | undefined;
  payment: "none" | "authorized" | "captured" | "voided" | "refunded";
  paymentId: string;
  rejection: OrderRejection | undefined;
  cancelReason: string;
  cancelRequestedBy: string;
}

export const TERMINAL_STATUSES: ReadonlySet<OrderStatus> = new Set([
  OrderStatus.CONFIRMED,
  OrderStatus.REJECTED,
  OrderStatus.CANCELLED,
]);

/** Terminal for the saga: nothing runs until someone acts (a CONFIRMED order may be cancelled). */
export function isTerminal(status: OrderStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}

export class InvalidOrderTransitionError extends Error {
  override name = "InvalidOrderTransitionError";
  constructor(
    readonly kind: string,
    readonly from: OrderStatus | undefined,
    detail?: string,
  ) {
    super(
      `event ${kind} is not allowed in status ${from === undefined ? "(none)" : OrderStatus[from]}` +
        (detail ? `: ${detail}` : ""),
    );
  }
}

const IN_SAGA = [OrderStatus.PENDING, OrderStatus.STOCK_RESERVED, OrderStatus.PAYMENT_AUTHORIZED];
const COMPENSATING = [...IN_SAGA, OrderStatus.CANCELLING];

/** Statuses each change may be applied in; the fold rejects anything else. */
const ALLOWED_FROM: Record<Exclude<OrderChangeKind, "placed">, readonly OrderStatus[]> = {
  stockReserved: [OrderStatus.PENDING],
  paymentAuthorized: [OrderStatus.STOCK_RESERVED],
  paymentCaptured: [OrderStatus.PAYMENT_AUTHORIZED],
  stockCommitted: [OrderStatus.PAYMENT_AUTHORIZED],
  confirmed: [OrderStatus.PAYMENT_AUTHORIZED],
  rejected: IN_SAGA,
  cancellationRequested: [...IN_SAGA, OrderStatus.CONFIRMED],
  stockReleased: COMPENSATING,
  paymentVoided: COMPENSATING,
  paymentRefunded: [OrderStatus.PAYMENT_AUTHORIZED, OrderStatus.CANCELLING],
  cancelled: [OrderStatus.CANCELLING],
};

/** May `change` be applied to an order in `state`? (Commands check this before appending.) */
export function canApply(state: OrderState | undefined, kind: OrderChangeKind): boolean {
  if (kind === "placed") return state === undefined;
  return state !== undefined && ALLOWED_FROM[kind].includes(state.status);
}

/**
 * Applies one change; pure. `sequence` and `at` come from the event envelope.
 * Throws InvalidOrderTransitionError for a change the order's status forbids,
 * so a corrupt history or a buggy command is caught instead of folded.
 */
export function applyChange(
  state: OrderState | undefined,
  change: OrderChange,
  sequence: number,
  at: Date,
): OrderState {
  const expected = (state?.lastSequence ?? 0) + 1;
  if (sequence !== expected) {
    throw new InvalidOrderTransitionError(
      change.case,
      state?.status,
      `sequence ${sequence}, expected ${expected}`,
    );
  }
  if (change.case === "placed") {
    if (state !== undefined) throw new InvalidOrderTransitionError("placed", state.status);
    const placed = change.value;
    return {
      id: "",
      userId: placed.userId,
      requestId: placed.requestId,
      items: placed.items,
      total: placed.total!,
      shippingAddress: placed.shippingAddress,
      status: OrderStatus.PENDING,
      lastSequence: sequence,
      createTime: at,
      updateTime: at,
      stock: "none",
      reservationExpireTime: undefined,
      payment: "none",
      paymentId: "",
      rejection: undefined,
      cancelReason: "",
      cancelRequestedBy: "",
    };
  }
  if (!state || !ALLOWED_FROM[change.case].includes(state.status)) {
    throw new InvalidOrderTransitionError(change.case, state?.status);
  }
  const next: OrderState = { ...state, lastSequence: sequence, updateTime: at };
  switch (change.case) {
    case "stockReserved": {
      const expire = change.value.reservationExpireTime;
      next.stock = "reserved";
      next.reservationExpireTime = expire
        ? new Date(Number(expire.seconds) * 1000 + Math.floor(expire.nanos / 1e6))
        : undefined;
      next.status = OrderStatus.STOCK_RESERVED;
      break;
    }
    case "paymentAuthorized":
      next.payment = "authorized";
      next.paymentId = change.value.paymentId;
      next.status = OrderStatus.PAYMENT_AUTHORIZED;
      break;
    case "paymentCaptured":
      next.payment = "captured";
      next.paymentId = change.value.paymentId || state.paymentId;
      break;
    case "stockCommitted":
      next.stock = "committed";
      break;
    case "confirmed":
      if (state.payment !== "captured" || state.stock !== "committed") {
        throw new InvalidOrderTransitionError(
          "confirmed",
          state.status,
          "not captured and committed",
        );
      }
      next.status = OrderStatus.CONFIRMED;
      break;
    case "rejected":
      next.rejection = change.value.rejection;
      next.status = OrderStatus.REJECTED;
      break;
    case "cancellationRequested":
      next.cancelReason = change.value.reason;
      next.cancelRequestedBy = change.value.requestedBy;
      next.status = OrderStatus.CANCELLING;
      break;
    case "stockReleased":
      next.stock = "released";
      break;
    case "paymentVoided":
      next.payment = "voided";
      next.paymentId = change.value.paymentId || state.paymentId;
      break;
    case "paymentRefunded":
      next.payment = "refunded";
      next.paymentId = change.value.paymentId || state.paymentId;
      break;
    case "cancelled":
      next.status = OrderStatus.CANCELLED;
      break;
  }
  return next;
}

/** Applies a stored event (its envelope carries sequence, time and id). */
export function applyEvent(state: OrderState | undefined, event: OrderEvent): OrderState {
  if (event.kind.case === undefined) {
    throw new InvalidOrderTransitionError("(empty)", state?.status, `event ${event.eventId}`);
  }
  const at = event.occurTime
    ? new Date(Number(event.occurTime.seconds) * 1000 + Math.floor(event.occurTime.nanos / 1e6))
    : (state?.updateTime ?? new Date(0));
  const next = applyChange(state, event.kind, Number(event.sequence), at);
  if (next.id === "") next.id = event.orderId;
  return next;
}

/** The state after all events, in sequence order; undefined for no events. */
export function foldEvents(events: Iterable<OrderEvent>): OrderState | undefined {
  let state: OrderState | undefined;
  for (const event of events) state = applyEvent(state, event);
  return state;
}
