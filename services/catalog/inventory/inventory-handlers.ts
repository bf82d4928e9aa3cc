import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Sql, TransactionSql } from "postgres";
import {
  type InventoryService,
  ReleaseReservationResponseSchema,
} from "../../../gen/commerce/catalog/v1/inventory_service_pb.js";
import { StockAdjustmentReason, StockSchema } from "../../../gen/commerce/catalog/v1/stock_pb.js";
import { plainArray } from "../../../platform/db/pg-array.js";
import { FailedPreconditionError, NotFoundError } from "../../../platform/errors/domain-errors.js";
import type { OutboxEvent } from "../../../platform/events/outbox.js";
import { checkText, requireUuid, Violations } from "../domain/validation.js";
import type { CatalogEvents } from "../events/catalog-events.js";
import {
  type Item,
  itemsKey,
  parseItemsKey,
  RESERVATION_COLUMNS,
  type ReservationRow,
  STOCK_COLUMNS,
  type StockRow,
  toReservation,
  toStock,
  toStockItems,
} from "./reservation-row.js";
import { StockUnavailableError, type StockViolation } from "./stock-errors.js";

export const MAX_ITEMS = 100;
export const MAX_QUANTITY = 10_000;
const MAX_DELTA = 1_000_000_000;

export interface InventoryDeps {
  sql: Sql;
  readSql: Sql;
  events: CatalogEvents;
  reservationTtlSeconds: number;
  lowStockThreshold: number;
}

const REASONS: Record<number, string> = {
  [StockAdjustmentReason.RESTOCK]: "restock",
  [StockAdjustmentReason.STOCKTAKE]: "stocktake",
  [StockAdjustmentReason.DAMAGE]: "damage",
  [StockAdjustmentReason.CUSTOMER_RETURN]: "customer_return",
  [StockAdjustmentReason.OTHER]: "other",
};

/** StockLow fires once per downward crossing of the threshold. */
export function crossedLow(before: number, after: number, threshold: number): boolean {
  return before > threshold && after <= threshold;
}

async function lockReservation(
  tx: TransactionSql,
  orderId: string,
): Promise<ReservationRow | undefined> {
  const [row] = await tx.unsafe<ReservationRow[]>(
    `select ${RESERVATION_COLUMNS} from reservations r where r.order_id = $1::uuid for update`,
    [orderId],
  );
  return row;
}

/** Appends ledger rows for a reservation movement in one statement. */
async function ledger(
  tx: TransactionSql,
  kind: string,
  orderId: string,
  items: readonly Item[],
  deltas: { onHand: number; reserved: number },
  reason: string | null,
): Promise<void> {
  await tx.unsafe(
    `insert into stock_ledger (product_id, kind, delta_on_hand, delta_reserved, reason, order_id)
     select u.product_id, $1, u.quantity * $2::int8, u.quantity * $3::int8, $4, $5::uuid
     from unnest($6::uuid[], $7::int8[]) as u(product_id, quantity)`,
    [
      kind,
      deltas.onHand,
      deltas.reserved,
      reason,
      orderId,
      plainArray(items.map((i) => i.productId)),
      plainArray(items.map((i) => i.quantity)),
    ] as never[],
  );
}

export function createInventoryHandlers(deps: InventoryDeps): ServiceImpl<typeof InventoryService> {
  const { sql, readSql, events, reservationTtlSeconds, lowStockThreshold } = deps;
  const threshold = lowStockThreshold;

  /** Why an item could not be reserved (read after its conditional update matched nothing). */
  async function diagnose(tx: TransactionSql, item: Item): Promise<StockViolation> {
    const subject = `products/${item.productId}`;
    const [row] = await tx<{ deleted: boolean; active: boolean; available: string | null }[]>`
      select p.deleted_at is not null as deleted, p.active, (s.on_hand - s.reserved)::text as available
      from products p left join stock s on s.product_id = p.id
      where p.id = ${item.productId}::uuid`;
    if (!row) return { type: "PRODUCT_UNAVAILABLE", subject, description: "unknown product" };
    if (row.deleted)
      return { type: "PRODUCT_UNAVAILABLE", subject, description: "product is deleted" };
    if (!row.active)
      return { type: "PRODUCT_UNAVAILABLE", subject, description: "product is not active" };
    return {
      type: "STOCK",
      subject,
      description: `requested ${item.quantity}, available ${row.available ?? "0"}`,
    };
  }

  return {
    async getStock(req) {
      const v = new Violations();
      const productId = requireUuid(v, "product_id", req.productId);
      v.throwIfAny();
      const [row] = await readSql.unsafe<(StockRow & { exists: boolean })[]>(
        `select p.id as product_id, coalesce(s.on_hand, 0)::text as on_hand,
                coalesce(s.reserved, 0)::text as reserved,
                (extract(epoch from coalesce(s.updated_at, p.created_at)) * 1000000)::int8::text as updated_us
         from products p left join stock s on s.product_id = p.id where p.id = $1::uuid`,
        [productId],
      );
      if (!row) throw new NotFoundError("product", productId, "commerce.catalog.v1.Product");
      return { stock: toStock(row) };
    },

    async reserveStock(req) {
      const v = new Violations();
      const orderId = requireUuid(v, "order_id", req.orderId);
      if (req.items.length === 0) v.add("items", "is required");
      if (req.items.length > MAX_ITEMS) v.add("items", `must have at most ${MAX_ITEMS} items`);
      const seen = new Set<string>();
      const items: Item[] = [];
      req.items.slice(0, MAX_ITEMS).forEach((item, i) => {
        const productId = requireUuid(v, `items[${i}].product_id`, item.productId);
        if (seen.has(productId)) v.add(`items[${i}].product_id`, "appears more than once");
        seen.add(productId);
        if (item.quantity < 1n || item.quantity > BigInt(MAX_QUANTITY)) {
          v.add(`items[${i}].quantity`, `must be between 1 and ${MAX_QUANTITY}`);
        }
        items.push({ productId, quantity: Number(item.quantity) });
      });
      v.throwIfAny();
      // One global lock order (product id) makes concurrent multi-item
      // reservations wait for each other instead of deadlocking.
      items.sort((a, b) => (a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0));
      const key = itemsKey(items);
      const row = await sql.begin(async (tx) => {
        const [created] = await tx.unsafe<ReservationRow[]>(
          `insert into reservations as r (order_id, state, items_key, expires_at)
           values ($1::uuid, 'active', $2, now() + make_interval(secs => $3))
           on conflict (order_id) do nothing
           returning ${RESERVATION_COLUMNS}`,
          [orderId, key, reservationTtlSeconds],
        );
        if (!created) {
          const existing = await lockReservation(tx, orderId);
          if (!existing) throw new Error("reservation vanished after conflict");
          if (existing.items_key !== key) {
            throw new FailedPreconditionError(
              "this order id already reserved different items",
              "ORDER_ID_REUSED",
              { order_id: orderId },
            );
          }
          return existing;
        }
        const violations: StockViolation[] = [];
        const extra: OutboxEvent[] = [];
        for (const item of items) {
          const [level] = await tx<{ available: string }[]>`
            update stock s set reserved = s.reserved + ${item.quantity}, updated_at = now()
            from products p
            where s.product_id = ${item.productId}::uuid and p.id = s.product_id
              and p.deleted_at is null and p.active
              and s.on_hand - s.reserved >= ${item.quantity}
            returning (s.on_hand - s.reserved)::text as available`;
          if (!level) {
            // Keep checking the rest: the client learns every blocking item at once.
            violations.push(await diagnose(tx, item));
            continue;
          }
          const after = Number(level.available);
          if (crossedLow(after + item.quantity, after, threshold)) {
            extra.push(events.stockLow(item.productId, BigInt(after), BigInt(threshold)));
          }
        }
        if (violations.length > 0) throw new StockUnavailableError(violations);
        await tx.unsafe(
          `insert into reservation_items (order_id, product_id, quantity)
           select $1::uuid, u.product_id, u.quantity from unnest($2::uuid[], $3::int8[]) as u(product_id, quantity)`,
          [
            orderId,
            plainArray(items.map((i) => i.productId)),
            plainArray(items.map((i) => i.quantity)),
          ],
        );
        await ledger(tx, "reserve", orderId, items, { onHand: 0, reserved: 1 }, null);
        const reservation = toReservation(created);
        await events.append(tx, [
          events.stockReserved(orderId, reservation.items, reservation.expireTime!),
          ...extra,
        ]);
        return created;
      });
      return { reservation: toReservation(row) };
    },

    async commitReservation(req) {
      const v = new Violations();
      const orderId = requireUuid(v, "order_id", req.orderId);
      v.throwIfAny();
      const row = await sql.begin(async (tx) => {
        const current = await lockReservation(tx, orderId);
        if (!current)
          throw new NotFoundError("reservation", orderId, "commerce.catalog.v1.Reservation");
        if (current.state === "committed") return current;
        if (current.state !== "active") {
          throw new FailedPreconditionError(
            `reservation is ${current.state}`,
            "RESERVATION_ENDED",
            {
              order_id: orderId,
              state: current.state,
            },
          );
        }
        const items = parseItemsKey(current.items_key);
        for (const item of items) {
          await tx`update stock set on_hand = on_hand - ${item.quantity}, reserved = reserved - ${item.quantity},
                     updated_at = now()
                   where product_id = ${item.productId}::uuid`;
        }
        const [done] = await tx.unsafe<ReservationRow[]>(
          `update reservations r set state = 'committed', ended_at = now() where r.order_id = $1::uuid
           returning ${RESERVATION_COLUMNS}`,
          [orderId],
        );
        await ledger(tx, "commit", orderId, items, { onHand: -1, reserved: -1 }, null);
        await events.append(tx, [events.stockCommitted(orderId, toStockItems(items))]);
        return done!;
      });
      return { reservation: toReservation(row) };
    },

    async releaseReservation(req) {
      const v = new Violations();
      const orderId = requireUuid(v, "order_id", req.orderId);
      checkText(v, "reason", req.reason, { min: 0, max: 500 });
      v.throwIfAny();
      const row = await sql.begin(async (tx) => {
        const current = await lockReservation(tx, orderId);
        if (!current) return undefined;
        if (current.state === "released" || current.state === "expired") return current;
        if (current.state === "committed") {
          throw new FailedPreconditionError("reservation is committed", "RESERVATION_COMMITTED", {
            order_id: orderId,
          });
        }
        const items = parseItemsKey(current.items_key);
        for (const item of items) {
          await tx`update stock set reserved = reserved - ${item.quantity}, updated_at = now()
                   where product_id = ${item.productId}::uuid`;
        }
        const [done] = await tx.unsafe<ReservationRow[]>(
          `update reservations r set state = 'released', ended_at = now(), end_reason = $2
           where r.order_id = $1::uuid returning ${RESERVATION_COLUMNS}`,
          [orderId, req.reason],
        );
        await ledger(
          tx,
          "release",
          orderId,
          items,
          { onHand: 0, reserved: -1 },
          req.reason || null,
        );
        await events.append(tx, [events.stockReleased(orderId, toStockItems(items), req.reason)]);
        return done!;
      });
      return create(
        ReleaseReservationResponseSchema,
        row ? { reservation: toReservation(row) } : {},
      );
    },

    async adjustStock(req) {
      const v = new Violations();
      const productId = requireUuid(v, "product_id", req.productId);
      const requestId = requireUuid(v, "request_id", req.requestId);
      if (req.delta === 0n) v.add("delta", "must not be zero");
      else if (req.delta > BigInt(MAX_DELTA) || req.delta < BigInt(-MAX_DELTA)) {
        v.add("delta", `must be between -${MAX_DELTA} and ${MAX_DELTA}`);
      }
      const reason = REASONS[req.reason];
      if (!reason) v.add("reason", "is required");
      checkText(v, "note", req.note, { min: 0, max: 500 });
      v.throwIfAny();
      const delta = Number(req.delta);
      const { stock } = await sql.begin(async (tx) => {
        const [product] = await tx`select 1 from products where id = ${productId}::uuid`;
        if (!product) throw new NotFoundError("product", productId, "commerce.catalog.v1.Product");
        const [claimed] = await tx`
          insert into stock_ledger (product_id, kind, delta_on_hand, reason, note, request_id)
          values (${productId}::uuid, 'adjust', ${delta}, ${reason!}, ${req.note || null}, ${requestId}::uuid)
          on conflict (request_id) where request_id is not null do nothing
          returning 1`;
        if (!claimed) {
          const [earlier] = await tx<
            { product_id: string; delta_on_hand: string; reason: string }[]
          >`
            select product_id, delta_on_hand::text, reason from stock_ledger where request_id = ${requestId}::uuid`;
          if (
            !earlier ||
            earlier.product_id !== productId ||
            Number(earlier.delta_on_hand) !== delta ||
            earlier.reason !== reason
          ) {
            throw new FailedPreconditionError(
              "request_id was already used with a different adjustment",
              "REQUEST_ID_REUSED",
              { request_id: requestId },
            );
          }
          const [current] = await tx.unsafe<StockRow[]>(
            `select ${STOCK_COLUMNS} from stock s where s.product_id = $1::uuid`,
            [productId],
          );
          return {
            stock: current ? toStock(current) : create(StockSchema, { productId }),
            replay: true,
          };
        }
        await tx`insert into stock (product_id) values (${productId}::uuid) on conflict do nothing`;
        const [level] = await tx.unsafe<StockRow[]>(
          `update stock s set on_hand = s.on_hand + $2::int8, updated_at = now()
           where s.product_id = $1::uuid and s.on_hand + $2::int8 >= s.reserved
           returning ${STOCK_COLUMNS}`,
          [productId, delta] as never[],
        );
        if (!level) {
          throw new FailedPreconditionError(
            "on-hand stock cannot fall below the reserved units",
            "STOCK_BELOW_RESERVED",
            { product_id: productId },
          );
        }
        const stock = toStock(level);
        const after = Number(stock.available);
        const out: OutboxEvent[] = [events.stockAdjusted(stock, req.delta, req.reason)];
        if (crossedLow(after - delta, after, threshold)) {
          out.push(events.stockLow(productId, stock.available, BigInt(threshold)));
        }
        await events.append(tx, out);
        return { stock, replay: false };
      });
      return { stock };
    },
  };
}
