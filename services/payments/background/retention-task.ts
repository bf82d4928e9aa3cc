import type { Logger } from "pino";
import type { Sql } from "postgres";
import type { BackgroundTask } from "../../../platform/service/run-service.js";
import { pruneExpired } from "../store/payment-store.js";

/** Deletes idempotency keys past their retention and old webhook receipts. */
export function createRetentionTask(options: {
  sql: () => Sql;
  logger: Logger;
  retentionHours: number;
  intervalMs?: number;
}): BackgroundTask {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  return {
    name: "payments-retention",
    start() {
      timer = setInterval(
        () => {
          running = pruneExpired(options.sql(), options.retentionHours)
            .then((pruned) => {
              if (pruned.keys + pruned.webhooks > 0)
                options.logger.info(pruned, "pruned expired rows");
            })
            .catch((err) => options.logger.warn({ err }, "retention pass failed"));
        },
        options.intervalMs ?? 10 * 60_000,
      );
      timer.unref();
    },
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
