import { create } from "@bufbuild/protobuf";
import {
  type Reservation,
  ReservationSchema,
  ReservationState,
  type Stock,
  type StockItem,
  StockItemSchema,
  StockSchema,
} from "../../../gen/commerce/catalog/v1/stock_pb.js";
import { timestampFromMicros } from "../products/product-row.js";

export interface ReservationRow {
  order_id: string;
  state: "active" | "committed" | "released" | "expired";
  items_key: string;
  created_us: string;
  expires_us: string;
  ended_us: string | null;
}

export const RESERVATION_COLUMNS = `r.order_id, r.state, r.items_key,
  (extract(epoch from r.created_at) * 1000000)::int8::text as created_us,
  (extract(epoch from r.expires_at) * 1000000)::int8::text as expires_us,
  (extract(epoch from r.ended_at) * 1000000)::int8::text as ended_us`;

export interface Item {
  productId: string;
  quantity: number;
}

/** Canonical, sorted item list: also the lock order and the retry fingerprint. */
export function itemsKey(items: readonly Item[]): string {
  return items.map((i) => `${i.productId}:${i.quantity}`).join(",");
}

export function parseItemsKey(key: string): Item[] {
  return key.split(",").map((part) => {
    const [productId, quantity] = part.split(":");
    return { productId: productId!, quantity: Number(quantity) };
  });
}

export function toStockItems(items: readonly Item[]): StockItem[] {
  return items.map((i) =>
    create(StockItemSchema, { productId: i.productId, quantity: BigInt(i.quantity) }),
  );
}

const STATES = {
  active: ReservationState.ACTIVE,
  committed: ReservationState.COMMITTED,
  released: ReservationState.RELEASED,
  expired: ReservationState.EXPIRED,
} as const;

export function toReservation(row: ReservationRow): Reservation {
  return create(ReservationSchema, {
    orderId: row.order_id,
    items: toStockItems(parseItemsKey(row.items_key)),
    state: STATES[row.state],
    createTime: timestampFromMicros(row.created_us),
    expireTime: timestampFromMicros(row.expires_us),
    ...(row.ended_us === null ? {} : { endTime: timestampFromMicros(row.ended_us) }),
  });
}

export interface StockRow {
  product_id: string;
  on_hand: string;
  reserved: string;
  updated_us: string;
}

export const STOCK_COLUMNS = `s.product_id, s.on_hand::text as on_hand, s.reserved::text as reserved,
  (extract(epoch from s.updated_at) * 1000000)::int8::text as updated_us`;

export function toStock(row: StockRow): Stock {
  const onHand = BigInt(row.on_hand);
  const reserved = BigInt(row.reserved);
  return create(StockSchema, {
    productId: row.product_id,
    onHand,
    reserved,
    available: onHand - reserved,
    updateTime: timestampFromMicros(row.updated_us),
  });
}
