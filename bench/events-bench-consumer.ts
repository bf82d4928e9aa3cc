import { StructSchema } from "@bufbuild/protobuf/wkt";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Sql, TransactionSql } from "postgres";
import { Registry } from "prom-client";
import { plainArray } from "../platform/db/pg-array.js";
import {
  createEventConsumer,
  type EventConsumer,
  type EventHandlers,
  eventHandlers,
  postgresTransactions,
} from "../platform/events/consumer.js";
import type { EventLogger } from "../platform/events/logger.js";
import { env } from "./events-bench-load.js";

/**
 * The event benches' consumer, the same in the bench process and in
 * events-consumer-process.ts. Its effect is one `effects` row per event,
 * written either by a per-event handler (one statement per event, the common
 * shape) or by a set-based `onBatch` handler (one statement per transaction).
 */
export type BenchHandlerKind = "event" | "batch";

export interface BenchConsumerConfig {
  stream: string;
  name: string;
  dlqPrefix: string;
  concurrency: number;
  batchSize: number;
  parallelAggregates: boolean;
  handler: BenchHandlerKind;
}

export function benchHandlers(kind: BenchHandlerKind): EventHandlers<TransactionSql> {
  if (kind === "batch") {
    return eventHandlers<TransactionSql>().onBatch(StructSchema, async (events, { tx }) => {
      // Array literals: uuids and ISO timestamps need no quoting.
      const ids = plainArray(events.map((e) => e.eventId));
      const times = plainArray(events.map((e) => e.occurredAt.toISOString()));
      await tx`insert into effects (event_id, occurred_at)
               select * from unnest(${ids}::uuid[], ${times}::timestamptz[])`;
    });
  }
  return eventHandlers<TransactionSql>().on(StructSchema, async (event, { tx }) => {
    await tx`insert into effects (event_id, occurred_at)
             values (${event.eventId}, ${event.occurredAt.toISOString()}::timestamptz)`;
  });
}

export function createBenchConsumer(
  config: BenchConsumerConfig,
  deps: { nc: NatsConnection; sql: Sql; logger: EventLogger },
): EventConsumer {
  return createEventConsumer({
    nc: deps.nc,
    stream: config.stream,
    name: config.name,
    transaction: postgresTransactions(deps.sql),
    handlers: benchHandlers(config.handler),
    concurrency: config.concurrency,
    batchSize: config.batchSize,
    maxAckPending: env("MAX_ACK_PENDING", 10_000),
    parallelAggregates: config.parallelAggregates,
    deadLetters: { subjectPrefix: config.dlqPrefix },
    metricsRegistry: new Registry(),
    logger: deps.logger,
  });
}
