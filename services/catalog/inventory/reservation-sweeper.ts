import type { Sql } from "postgres";
import { Counter, type Registry } from "prom-client";
import { plainArray } from "../../../platform/db/pg-array.js";
import { createPeriodicTask } from "../../../platform/service/periodic-task.js";
import type { BackgroundTask } from "../../../platform/service/run-service.js";
import type { CatalogEvents } from "../events/catalog-events.js";
import {
  type Item,
  parseItemsKey,
  RESERVATION_COLUMNS,
  type ReservationRow,
  toReservation,
  toStockItems,
} from "./reservation-row.js";

export interface SweeperOptions {
  sql: Sql;
  events: CatalogEvents;
  intervalMs: number;
  batchSize?: number;
  registry?: Registry;
  logger?: { error(obj: object, msg?: string): void; info(obj: object, msg?: string): void };
}

export interface ReservationSweeper extends BackgroundTask {
  /** Expires every overdue reservation now; returns how many. */
  sweep(): Promise<number>;
}

/**
 * Returns the stock of ACTIVE reservations past their expiry and marks them
 * EXPIRED, emitting ReservationExpired. Replicas share the work with
 * SKIP LOCKED; stock rows are updated in product id order (summed over the
 * batch) so a sweep never deadlocks with reservations in flight.
 */
export function createReservationSweeper(options: SweeperOptions): ReservationSweeper {
  const { sql, events, intervalMs, batchSize = 200, logger } = options;
  const expired = new Counter({
    name: "catalog_reservations_expired_total",
    help: "Reservations released by the expiry sweeper.",
    registers: options.registry ? [options.registry] : [],
  });
  async function sweepBatch(): Promise<number> {
    return sql.begin(async (tx) => {
      const rows = await tx.unsafe<ReservationRow[]>(
        `select ${RESERVATION_COLUMNS} from reservations r
         where r.state = 'active' and r.expires_at <= now()
         order by r.expires_at limit $1
         for update skip locked`,
        [batchSize],
      );
      if (rows.length === 0) return 0;
      const totals = new Map<string, number>();
      const perOrder = rows.map((row) => ({ row, items: parseItemsKey(row.items_key) }));
      for (const { items } of perOrder) {
        for (const item of items)
          totals.set(item.productId, (totals.get(item.productId) ?? 0) + item.quantity);
      }
      const sorted = [...totals.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      for (const [productId, quantity] of sorted) {
        await tx`update stock set reserved = reserved - ${quantity}, updated_at = now()
                 where product_id = ${productId}::uuid`;
      }
      const orderIds = plainArray(rows.map((r) => r.order_id));
      await tx`update reservations set state = 'expired', ended_at = now(), end_reason = 'expired'
               where order_id = any(${orderIds}::uuid[])`;
      const ledgerItems: (Item & { orderId: string })[] = perOrder.flatMap(({ row, items }) =>
        items.map((i) => ({ ...i, orderId: row.order_id })),
      );
      await tx.unsafe(
        `insert into stock_ledger (product_id, kind, delta_reserved, reason, order_id)
         select u.product_id, 'expire', -u.quantity, 'expired', u.order_id
         from unnest($1::uuid[], $2::int8[], $3::uuid[]) as u(product_id, quantity, order_id)`,
        [
          plainArray(ledgerItems.map((i) => i.productId)),
          plainArray(ledgerItems.map((i) => i.quantity)),
          plainArray(ledgerItems.map((i) => i.orderId)),
        ],
      );
      await events.append(
        tx,
        perOrder.map(({ row, items }) =>
          events.reservationExpired(
            row.order_id,
            toStockItems(items),
            toReservation(row).expireTime!,
          ),
        ),
      );
      return rows.length;
    });
  }

  let lastPrune = 0;
  /** Create-RPC idempotency keys are promised for 24 hours; older ones go. */
  async function pruneIdempotencyKeys(): Promise<void> {
    if (Date.now() - lastPrune < 60_000) return;
    lastPrune = Date.now();
    await sql`delete from idempotency_keys where created_at < now() - interval '24 hours'`;
  }

  async function sweep(): Promise<number> {
    await pruneIdempotencyKeys();
    let total = 0;
    for (;;) {
      const n = await sweepBatch();
      total += n;
      if (n < batchSize) break;
    }
    if (total > 0) {
      expired.inc(total);
      logger?.info({ expired: total }, "expired reservations released");
    }
    return total;
  }

  const task = createPeriodicTask({
    name: "reservation-sweeper",
    intervalMs,
    run: sweep,
    onError: (error) => logger?.error({ err: error }, "reservation sweep failed"),
  });
  return Object.assign(task, { sweep });
}
