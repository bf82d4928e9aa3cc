/**
 * The consumer side of bench/events-throughput.ts as its own process, as it
 * runs in the mesh (the consuming service is not the writing one). Started by
 * that bench with a JSON config as argv[2]; sends "ready" over IPC once
 * consuming, answers "stats" requests, and on "stop" stops gracefully, sends
 * its final stats and exits.
 */
import { Registry } from "prom-client";
import { createDatabase } from "../platform/db/postgres.js";
import { createEventConsumer, postgresTransactions } from "../platform/events/consumer.js";
import { silentLogger } from "../platform/events/logger.js";
import { connectNats } from "../platform/events/nats.js";
import { type BenchHandlerKind, benchHandlers } from "./events-bench-handlers.js";

export interface ConsumerProcessConfig {
  databaseUrl: string;
  natsUrl: string;
  schema: string;
  stream: string;
  name: string;
  dlqPrefix: string;
  concurrency: number;
  batchSize: number;
  parallelAggregates: boolean;
  handler: BenchHandlerKind;
}

const config = JSON.parse(process.argv[2]!) as ConsumerProcessConfig;
const db = createDatabase({
  url: config.databaseUrl,
  schema: config.schema,
  maxConnections: Math.min(config.concurrency, 40),
});
const nc = await connectNats({ servers: config.natsUrl, name: "bench-events-consumer" });
const consumer = createEventConsumer({
  nc,
  stream: config.stream,
  name: config.name,
  transaction: postgresTransactions(db.sql),
  handlers: benchHandlers(config.handler),
  concurrency: config.concurrency,
  batchSize: config.batchSize,
  maxAckPending: 10_000,
  parallelAggregates: config.parallelAggregates,
  deadLetters: { subjectPrefix: config.dlqPrefix },
  metricsRegistry: new Registry(),
  logger: silentLogger,
});
await consumer.start();
process.on("message", (message) => {
  if (message === "stats") process.send?.({ stats: consumer.stats });
  if (message === "stop") {
    void (async () => {
      await consumer.stop();
      await nc.close();
      await db.close();
      process.send?.({ stats: consumer.stats, stopped: true }, () => process.exit(0));
    })();
  }
});
process.send?.("ready");
