import type { Sql, TransactionSql } from "postgres";
import type { OrderStore } from "./order-store.js";

/** Every projected column of one row, comparable as a string. */
async function snapshot(sql: Sql | TransactionSql, orderId: string): Promise<string | undefined> {
  const [row] = await sql<{ text: string }[]>`
    select concat_ws('|', user_id, status, total_minor, currency, items::text, payment_id,
                     rejection_reason, last_sequence, encode(view, 'hex'), created_at, updated_at) as text
    from orders where id = ${orderId}`;
  return row?.text;
}

export interface RebuildResult {
  orders: number;
  /** Rows whose stored projection differed from the fold (repaired). */
  repaired: number;
}

/**
 * Recomputes every order's projection row from its events, one order per
 * transaction under the order's row lock (so it interleaves safely with a
 * running service), in id order with keyset batches.
 */
export async function rebuildProjections(
  sql: Sql,
  store: OrderStore,
  options: { batchSize?: number; onProgress?: (done: number) => void } = {},
): Promise<RebuildResult> {
  const batchSize = options.batchSize ?? 500;
  let after = "00000000-0000-0000-0000-000000000000";
  let orders = 0;
  let repaired = 0;
  for (;;) {
    const ids = await sql<{ order_id: string }[]>`
      select distinct order_id from order_events
      where order_id > ${after} order by order_id limit ${batchSize}`;
    if (ids.length === 0) break;
    for (const { order_id: orderId } of ids) {
      const changed = await sql.begin(async (tx) => {
        // Lock the row when it exists; a missing row is simply recreated.
        await tx`select 1 from orders where id = ${orderId} for update`;
        const before = await snapshot(tx, orderId);
        const state = await store.loadState(tx, orderId, "none");
        if (!state || state === "locked") return false;
        await store.writeProjection(tx, state, true);
        return before !== (await snapshot(tx, orderId));
      });
      orders++;
      if (changed) repaired++;
    }
    after = ids.at(-1)!.order_id;
    options.onProgress?.(orders);
  }
  return { orders, repaired };
}
