import { createDatabase } from "../platform/db/postgres.js";
import { silentLogger } from "../platform/events/logger.js";
import { connectNats } from "../platform/events/nats.js";
import { type BenchConsumerConfig, createBenchConsumer } from "./events-bench-consumer.js";
import { roleApplicationName } from "./events-cpu.js";

export interface ConsumerProcessConfig extends BenchConsumerConfig {
  databaseUrl: string;
  natsUrl: string;
  schema: string;
}

const config = JSON.parse(process.argv[2]!) as ConsumerProcessConfig;
const db = createDatabase({
  url: config.databaseUrl,
  schema: config.schema,
  maxConnections: Math.min(config.concurrency, 40),
  applicationName: roleApplicationName(config.schema, "consumer"),
});
const nc = await connectNats({ servers: config.natsUrl, name: "bench-events-consumer" });
const consumer = createBenchConsumer(config, { nc, sql: db.sql, logger: silentLogger });
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
