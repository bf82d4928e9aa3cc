import { jetstreamManager } from "@nats-io/jetstream";
import { OrderService } from "../../gen/commerce/orders/v1/order_service_pb.js";
import { WebhookService } from "../../gen/commerce/orders/v1/webhook_service_pb.js";
import type { Env } from "../../platform/config/env.js";
import { createOutboxRelay, type OutboxRelay } from "../../platform/events/relay.js";
import { deadLetterStream, domainStream, provisionStreams } from "../../platform/events/streams.js";
import { registerService } from "../../platform/server/rpc-server.js";
import type {
  BackgroundTask,
  ServiceDefinition,
  ServiceRuntime,
} from "../../platform/service/run-service.js";
import {
  loadOrdersSettings,
  type OrdersSettings,
  type WebhookSettings,
} from "./orders-settings.js";
import { createOrderService } from "./rpc/order-service.js";
import { createWebhookService } from "./rpc/webhook-service.js";
import { createCheckoutSteps, type SagaHooks } from "./saga/checkout-steps.js";
import { createSagaDriver } from "./saga/saga-driver.js";
import { createSagaRunner } from "./saga/saga-runner.js";
import { createSagaConsumerTask, createSagaSweeperTask } from "./saga/saga-tasks.js";
import { createUpstreamClients } from "./saga/upstream-clients.js";
import { createOrderStore } from "./store/order-store.js";
import { createRequestPrunerTask } from "./store/request-pruner.js";
import { createWatchHub } from "./watch/order-watch.js";
import {
  createWebhookTasks,
  subscriptionsChannel,
  webhookChannel,
} from "./webhooks/webhook-tasks.js";

export interface OrdersOptions {
  /** Overrides of the environment-derived settings (tests). */
  settings?: Partial<Omit<OrdersSettings, "webhooks">> & { webhooks?: Partial<WebhookSettings> };
  /** Environment read for settings; default process.env. */
  env?: Env;
  /** Fault injection between a saga step's remote effect and its record (tests). */
  hooks?: SagaHooks;
}

export function resolveOrdersSettings(options: OrdersOptions = {}): OrdersSettings {
  const base = loadOrdersSettings(options.env ?? process.env);
  const { webhooks, ...rest } = options.settings ?? {};
  return { ...base, ...rest, webhooks: { ...base.webhooks, ...webhooks } };
}

function task(name: string, start: () => Promise<void> | void, stop: () => Promise<void> | void) {
  return { name, start, stop } satisfies BackgroundTask;
}

/**
 * The orders service: event-sourced orders with a read projection, the
 * checkout saga (a durable consumer of the order events plus a deadline
 * sweeper), WatchOrder, and partner webhooks.
 */
export function createOrdersDefinition(options: OrdersOptions = {}): ServiceDefinition {
  return {
    name: "orders",
    migrations: new URL("./migrations/", import.meta.url),
    needs: { postgres: true, nats: true },
    build(runtime: ServiceRuntime) {
      const settings = resolveOrdersSettings(options);
      const database = runtime.database!;
      const nats = () => runtime.nats;
      const webhooks = createWebhookTasks({
        sql: database.sql,
        schema: database.schema,
        settings,
        logger: runtime.logger,
        registry: runtime.metrics.registry,
      });
      const store = createOrderStore({
        domain: settings.eventDomain,
        schema: database.schema,
        onAppend: (tx, events) => webhooks.fanOut(tx, events),
      });
      const clients = createUpstreamClients((name) => runtime.upstream(name));
      const hub = createWatchHub(database.sql, store.channel);
      const runner = createSagaRunner({
        store,
        steps: createCheckoutSteps(clients, options.hooks),
        registry: runtime.metrics.registry,
      });
      const driver = createSagaDriver({
        sql: database.sql,
        runner,
        logger: runtime.logger,
        concurrency: settings.sagaConcurrency,
      });

      let relay: OutboxRelay | undefined;
      const background: BackgroundTask[] = [
        task(
          "orders-streams",
          async () => {
            if (!settings.provisionStreams) return;
            await provisionStreams(await jetstreamManager(nats()!), [
              domainStream(settings.eventDomain, {}, settings.eventStream),
              deadLetterStream({
                name: settings.deadLetterStream,
                subjectPrefix: settings.deadLetterPrefix,
              }),
            ]);
          },
          () => {},
        ),
        task(
          "orders-outbox-relay",
          async () => {
            relay = createOutboxRelay({
              sql: database.sql,
              schema: database.schema,
              nc: nats()!,
              registry: runtime.metrics.registry,
              logger: runtime.logger,
            });
            await relay.start();
          },
          async () => {
            await relay?.stop();
          },
        ),
        task(
          "orders-watch-hub",
          () => hub.start(),
          () => hub.stop(),
        ),
        createSagaConsumerTask({
          nats,
          sql: database.sql,
          runner,
          driver,
          settings,
          logger: runtime.logger,
          registry: runtime.metrics.registry,
        }),
        createSagaSweeperTask({ sql: database.sql, runner, settings, logger: runtime.logger }),
        // Stops before the consumer (tasks stop in reverse order).
        task(
          "orders-saga-driver",
          () => {},
          () => driver.stop(),
        ),
        ...webhooks.tasks,
        createRequestPrunerTask({
          sql: database.sql,
          retentionMs: settings.idempotencyRetentionMs,
          logger: runtime.logger,
        }),
      ];

      return {
        services: [
          registerService(
            OrderService,
            createOrderService({
              sql: database.sql,
              readSql: database.readSql,
              store,
              clients,
              hub,
              settings,
              drive: (orderId) => driver.kick(orderId),
            }),
          ),
          registerService(
            WebhookService,
            createWebhookService({
              sql: database.sql,
              settings: settings.webhooks,
              channel: webhookChannel(database.schema),
              subscriptionsChannel: subscriptionsChannel(database.schema),
              wake: webhooks.wake,
              subscriptionsChanged: webhooks.subscriptionsChanged,
            }),
          ),
        ],
        background,
      };
    },
  };
}

/** The service as `main.ts` runs it (settings from the environment). */
export const definition = createOrdersDefinition();
