import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Order, OrderSchema } from "../../../gen/commerce/orders/v1/order_pb.js";
import type { OrderState } from "./order-state.js";

/** The read view (Order message) of a folded order. */
export function toOrderView(state: OrderState): Order {
  return create(OrderSchema, {
    id: state.id,
    userId: state.userId,
    status: state.status,
    items: state.items,
    total: state.total,
    shippingAddress: state.shippingAddress,
    paymentId: state.paymentId,
    rejection: state.rejection,
    cancelReason: state.cancelReason,
    lastSequence: BigInt(state.lastSequence),
    createTime: timestampFromDate(state.createTime),
    updateTime: timestampFromDate(state.updateTime),
  });
}
