import type { Logger } from "pino";
import type { Sql } from "postgres";
import type { BackgroundTask } from "../../../platform/service/run-service.js";

/** Inbox rows older than this are deleted; redeliveries come within minutes. */
const INBOX_RETENTION_MS = 7 * 24 * 3_600_000;

/**
 * Forgets CreateOrder idempotency keys after the retention (at least 24 h,
 * as promised to clients) and old inbox rows, hourly and in small batches.
 */
export function createRequestPrunerTask(deps: {
  sql: Sql;
  retentionMs: number;
  logger: Logger;
  intervalMs?: number;
}): BackgroundTask & { prune(): Promise<number> } {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();

  async function prune(): Promise<number> {
    let total = 0;
    for (;;) {
      const deleted = await deps.sql`
        delete from order_requests where ctid in (
          select ctid from order_requests
          where created_at < now() - ${deps.retentionMs} * interval '1 millisecond'
          limit 1000)`;
      total += deleted.count;
      if (deleted.count < 1000) break;
    }
    await deps.sql`
      delete from inbox where ctid in (
        select ctid from inbox
        where processed_at < now() - ${INBOX_RETENTION_MS} * interval '1 millisecond'
        limit 10000)`;
    return total;
  }

  return {
    name: "orders-request-pruner",
    prune,
    start() {
      timer = setInterval(() => {
        running = prune().catch((error) => deps.logger.warn({ err: error }, "pruning failed"));
      }, deps.intervalMs ?? 3_600_000);
      timer.unref();
    },
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
