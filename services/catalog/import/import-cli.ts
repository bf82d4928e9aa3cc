import { parseArgs } from "node:util";
import { type Env, readInt, readString } from "../../../platform/config/env.js";
import { createDatabase, migrateDatabase } from "../../../platform/db/postgres.js";
import { createCatalogEvents } from "../events/catalog-events.js";
import { loadCatalogSettings } from "../settings.js";
import { ensureCategories } from "./demo-categories.js";
import { formatOf } from "./feed-reader.js";
import { type ImportReport, importFeed } from "./importer.js";
import { createProgressBar } from "./progress-bar.js";

const USAGE = `usage: npm run catalog:import -- <file.csv|file.ndjson> [options]

  --format csv|ndjson     override the format guessed from the extension
  --rejects <path>        where rejected rows go (default: <file>.rejects.ndjson)
  --batch-size <n>        rows per transaction (default 1000)
  --demo-categories       create the demo category tree first (for generated feeds)

Columns / fields: sku, name, description, price ("12.34"), currency (ISO 4217),
category (slug), active (true/false), attributes (JSON object), stock (on hand).
Environment: DATABASE_URL, DB_SCHEMA (default "catalog"), CATALOG_EVENT_DOMAIN.
Re-running a file changes nothing; rows are upserted by SKU.`;

/** Runs the import; prints a summary on stdout and the progress on stderr. */
export async function runImportCli(argv: string[], env: Env = process.env): Promise<ImportReport> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      format: { type: "string" },
      rejects: { type: "string" },
      "batch-size": { type: "string" },
      "demo-categories": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  const path = positionals[0];
  if (values.help || !path) {
    process.stdout.write(`${USAGE}\n`);
    if (!path && !values.help) process.exitCode = 2;
    throw new Error(values.help ? "help" : "missing file");
  }
  const settings = loadCatalogSettings(env);
  const url = readString(env, "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/commerce");
  const schema = readString(env, "DB_SCHEMA", "catalog");
  const batchSize = values["batch-size"]
    ? Number(values["batch-size"])
    : readInt(env, "IMPORT_BATCH_SIZE", 1000, { min: 1, max: 5000 });
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 5000)
    throw new Error("--batch-size must be 1..5000");
  await migrateDatabase({ url, schema }, new URL("../migrations/", import.meta.url).pathname);
  const database = createDatabase({
    url,
    schema,
    maxConnections: 2,
    applicationName: "catalog-import",
  });
  try {
    if (values["demo-categories"]) await ensureCategories(database.sql);
    const bar = createProgressBar();
    const report = await importFeed({
      sql: database.sql,
      events: createCatalogEvents(settings.eventDomain),
      eventDomain: settings.eventDomain,
      path,
      format: formatOf(path, values.format),
      rejectsPath: values.rejects ?? `${path}.rejects.ndjson`,
      batchSize,
      lowStockThreshold: settings.lowStockThreshold,
      onProgress: (p) => bar.update(p),
    });
    bar.done();
    process.stdout.write(
      `read ${report.read}, inserted ${report.inserted}, updated ${report.updated}, unchanged ${report.unchanged}, ` +
        `rejected ${report.rejected}${report.stockSkipped ? `, stock below reserved (kept) ${report.stockSkipped}` : ""} ` +
        `in ${report.seconds.toFixed(1)} s (${Math.round(report.rowsPerSecond)} rows/s)` +
        `${report.rejected ? `; rejects in ${report.rejectsPath}` : ""}\n`,
    );
    return report;
  } finally {
    await database.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runImportCli(process.argv.slice(2)).catch((error: Error) => {
    if (error.message !== "help" && error.message !== "missing file") {
      process.stderr.write(`import failed: ${error.message}\n`);
      process.exitCode = 1;
    }
  });
}
