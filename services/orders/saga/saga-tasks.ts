import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import type { Sql, TransactionSql } from "postgres";
import type { Registry } from "prom-client";
import { OrderEventSchema } from "../../../gen/commerce/orders/v1/events_pb.js";
import {
  createEventConsumer,
  type EventConsumer,
  eventHandlers,
  postgresTransactions,
} from "../../../platform/events/consumer.js";
import { createPeriodicTask } from "../../../platform/service/periodic-task.js";
import type { BackgroundTask } from "../../../platform/service/run-service.js";
import type { OrdersSettings } from "../orders-settings.js";
import type { SagaDriver } from "./saga-driver.js";
import type { SagaRunner } from "./saga-runner.js";
import { RetryableStepError } from "./upstream-errors.js";

/**
 * The saga's driver: a durable JetStream consumer of the order events. Each
 * event runs in one transaction with its inbox row (exactly-once effect);
 * a failed step rolls back and the event is redelivered after a backoff.
 */
export function createSagaConsumerTask(deps: {
  nats: () => NatsConnection | undefined;
  sql: Sql;
  runner: SagaRunner;
  /** Takes the following steps in-process once a delivery's step committed. */
  driver?: SagaDriver;
  settings: OrdersSettings;
  logger: Logger;
  registry?: Registry;
}): BackgroundTask {
  const { settings, runner } = deps;
  let consumer: EventConsumer | undefined;
  const handlers = eventHandlers<TransactionSql>().on(OrderEventSchema, async (event, { tx }) => {
    const { orderId, sequence } = event.message;
    if (deps.driver?.knowsLater(orderId, Number(sequence))) return;
    const result = await runner.advance(tx, orderId, { trigger: event.message });
    // Runs once this transaction commits (it waits for the order's row lock).
    if (result.outcome === "advanced") deps.driver?.kick(orderId);
  });
  return {
    name: "orders-saga-consumer",
    async start() {
      const nc = deps.nats();
      if (!nc) throw new Error("saga consumer needs NATS");
      consumer = createEventConsumer({
        nc,
        stream: settings.eventStream,
        name: settings.sagaConsumer,
        filterSubject: `${settings.eventDomain}.order.>`,
        transaction: postgresTransactions(deps.sql),
        handlers,
        // The saga's own deadline ends retrying (TIMEOUT + compensation);
        // the consumer only dead-letters a step that fails far beyond it.
        maxAttempts: 1_000,
        backoffMs: settings.sagaRetryBackoffMs,
        ackWaitMs: settings.sagaAckWaitMs,
        concurrency: settings.sagaConcurrency,
        deadLetters: { subjectPrefix: settings.deadLetterPrefix },
        ...(deps.registry ? { metricsRegistry: deps.registry } : {}),
        logger: {
          debug: (obj, msg) => deps.logger.debug(obj, msg),
          info: (obj, msg) => deps.logger.info(obj, msg),
          // Dependency outages are expected and retried: keep them at debug.
          warn: (obj, msg) =>
            (obj as { err?: unknown }).err instanceof RetryableStepError
              ? deps.logger.debug(obj, msg)
              : deps.logger.warn(obj, msg),
          error: (obj, msg) => deps.logger.error(obj, msg),
        },
      });
      await consumer.start();
    },
    async stop() {
      await consumer?.stop();
    },
  };
}

/**
 * Safety net beside the consumer: orders whose saga passed its deadline
 * (dependency down for long, event lost or dead-lettered) are advanced here,
 * which compensates them and ends them REJECTED (TIMEOUT), or finishes a
 * cancellation. Replicas share the work through SKIP LOCKED.
 */
export function createSagaSweeperTask(deps: {
  sql: Sql;
  runner: SagaRunner;
  settings: OrdersSettings;
  logger: Logger;
}): BackgroundTask & { sweep(): Promise<number> } {
  async function sweep(): Promise<number> {
    const due = await deps.sql<{ order_id: string }[]>`
      select order_id from order_sagas
      where completed_at is null and deadline_at <= now()
      order by deadline_at limit 50`;
    let advanced = 0;
    for (const { order_id: orderId } of due) {
      if (task.stopped) break;
      try {
        const { outcome } = await deps.sql.begin((tx) =>
          deps.runner.advance(tx, orderId, { skipLocked: true }),
        );
        if (outcome === "advanced") advanced++;
        if (outcome === "missing") {
          await deps.sql`update order_sagas set completed_at = now() where order_id = ${orderId}`;
        }
      } catch (error) {
        const log = error instanceof RetryableStepError ? deps.logger.debug : deps.logger.warn;
        log.call(deps.logger, { err: error, orderId }, "saga sweep could not advance order");
      }
    }
    return advanced;
  }

  const task = createPeriodicTask({
    name: "orders-saga-sweeper",
    intervalMs: deps.settings.sagaSweepIntervalMs,
    run: sweep,
    onError: (error) => deps.logger.warn({ err: error }, "saga sweep failed"),
  });
  return Object.assign(task, { sweep });
}
