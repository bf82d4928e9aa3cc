import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Env, readInt, readString } from "../../platform/config/env.js";
import { createDatabase, migrateDatabase } from "../../platform/db/postgres.js";
import { createCatalogEvents } from "./events/catalog-events.js";
import { ensureCategories } from "./import/demo-categories.js";
import { generateFeedFile } from "./import/generate-cli.js";
import { type ImportReport, importFeed } from "./import/importer.js";
import { loadCatalogSettings } from "./settings.js";

export interface SeedOptions {
  env?: Env;
  /** Products to create (default CATALOG_SEED_COUNT or 2,000). */
  count?: number;
  seed?: number;
  log?: (line: string) => void;
}

/**
 * Seeds a demo catalog (category tree, products with stock) through the
 * bulk import, so it emits the same events as any import. Idempotent: does
 * nothing when the catalog already has products (it runs on every npm start).
 */
export async function seed(options: SeedOptions = {}): Promise<ImportReport | undefined> {
  const env = options.env ?? process.env;
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const url = readString(env, "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/commerce");
  const schema = readString(env, "DB_SCHEMA", "catalog");
  const count =
    options.count ?? readInt(env, "CATALOG_SEED_COUNT", 2000, { min: 0, max: 10_000_000 });
  const settings = loadCatalogSettings(env);
  await migrateDatabase({ url, schema }, fileURLToPath(new URL("./migrations/", import.meta.url)));
  const database = createDatabase({
    url,
    schema,
    maxConnections: 3,
    applicationName: "catalog-seed",
  });
  try {
    const [row] = await database.sql<
      { any: boolean }[]
    >`select exists (select 1 from products) as any`;
    if (row?.any) {
      log("catalog already has products; seed skipped");
      return undefined;
    }
    await ensureCategories(database.sql);
    const file = join(tmpdir(), `catalog-seed-${process.pid}-${Date.now()}.ndjson`);
    try {
      await generateFeedFile({ count, out: file, seed: options.seed ?? 42, format: "ndjson" });
      const report = await importFeed({
        sql: database.sql,
        events: createCatalogEvents(settings.eventDomain),
        eventDomain: settings.eventDomain,
        path: file,
        format: "ndjson",
        rejectsPath: `${file}.rejects`,
        lowStockThreshold: settings.lowStockThreshold,
      });
      log(`seeded ${report.inserted} products with stock in ${report.seconds.toFixed(1)} s`);
      return report;
    } finally {
      await rm(file, { force: true });
      await rm(`${file}.rejects`, { force: true });
    }
  } finally {
    await database.close();
  }
}

if (
  import.meta.url === `file://${process.argv[1]}` ||
  process.argv[1] === fileURLToPath(import.meta.url)
) {
  seed().catch((error: Error) => {
    process.stderr.write(`catalog seed failed: ${error.message}\n`);
    process.exitCode = 1;
  });
}
