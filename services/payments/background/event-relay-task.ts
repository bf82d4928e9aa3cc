import { jetstreamManager } from "@nats-io/jetstream";
import {
  createOutboxRelay,
  domainStream,
  type OutboxRelay,
  provisionStreams,
} from "../../../platform/events/index.js";
import type { BackgroundTask, ServiceRuntime } from "../../../platform/service/run-service.js";

/**
 * Publishes the outbox to JetStream: makes sure the domain stream exists
 * (idempotent, safe from every replica), then runs the relay until stop.
 * Started after NATS connected and migrations ran.
 */
export function createEventRelayTask(
  runtime: ServiceRuntime,
  events: { domain: string; stream: string; pollMs: number },
): BackgroundTask & { relay(): OutboxRelay | undefined } {
  let relay: OutboxRelay | undefined;
  return {
    name: "payments-outbox-relay",
    relay: () => relay,
    async start() {
      const nc = runtime.nats;
      const database = runtime.database;
      if (!nc || !database) throw new Error("the outbox relay needs NATS and Postgres");
      await provisionStreams(await jetstreamManager(nc), [
        domainStream(events.domain, {}, events.stream),
      ]);
      relay = createOutboxRelay({
        sql: database.sql,
        schema: database.schema,
        nc,
        pollIntervalMs: events.pollMs,
        registry: runtime.metrics.registry,
        logger: runtime.logger,
      });
      await relay.start();
    },
    async stop() {
      await relay?.stop();
    },
  };
}
