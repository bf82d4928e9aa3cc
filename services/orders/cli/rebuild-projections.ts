import { loadServiceConfig } from "../../../platform/config/service-config.js";
import { createDatabase } from "../../../platform/db/postgres.js";
import { loadOrdersSettings } from "../orders-settings.js";
import { createOrderStore } from "../store/order-store.js";
import { rebuildProjections } from "../store/rebuild-projections.js";

/**
 * `npm run orders:rebuild-projections`: recomputes the `orders` read
 * projection from `order_events` (after a projection bug fix, or to check
 * it). Uses the service's DATABASE_URL / DB_SCHEMA; safe while it runs.
 */
const config = loadServiceConfig("orders");
const settings = loadOrdersSettings();
const database = createDatabase({
  url: config.databaseUrl,
  schema: config.dbSchema,
  maxConnections: 2,
  applicationName: "orders-rebuild-projections",
});
try {
  const store = createOrderStore({ domain: settings.eventDomain, schema: database.schema });
  const result = await rebuildProjections(database.sql, store, {
    onProgress: (done) => process.stderr.write(`\r${done} orders`),
  });
  process.stderr.write("\n");
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  await database.close();
}
