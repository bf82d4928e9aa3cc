import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabase, type Database, migrateDatabase } from "../../../platform/db/postgres.js";
import { TEST_DATABASE_URL, uniqueSchema } from "../../../platform/testing/service-harness.js";
import { buildProductQuery } from "./product-query.js";

const MIGRATIONS = fileURLToPath(new URL("../migrations/", import.meta.url));
const ROWS = 100_000;
let db: Database;
let schema: string;

/** Plan node types and index names of an EXPLAIN (FORMAT JSON) plan. */
function planNodes(plan: unknown): { type: string; index?: string }[] {
  const out: { type: string; index?: string }[] = [];
  const visit = (node: Record<string, unknown>) => {
    out.push({
      type: String(node["Node Type"]),
      ...(node["Index Name"] ? { index: String(node["Index Name"]) } : {}),
    });
    for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) visit(child);
  };
  visit(plan as Record<string, unknown>);
  return out;
}

async function explain(text: string, params: unknown[]) {
  const [row] = await db.sql.unsafe(`explain (format json) ${text}`, params as string[]);
  return planNodes((row!["QUERY PLAN"] as { Plan: unknown }[])[0]!.Plan);
}

beforeAll(async () => {
  schema = uniqueSchema("t_plan");
  await migrateDatabase({ url: TEST_DATABASE_URL, schema }, MIGRATIONS);
  db = createDatabase({ url: TEST_DATABASE_URL, schema, maxConnections: 2 });
  // 100k products in one statement; 40 nouns make each word match ~2.5 %.
  await db.sql.unsafe(`
    insert into products (id, sku, name, description, price_minor, currency, active, created_at)
    select gen_random_uuid(), 'SKU-' || i,
           (array['red','blue','green','black','white','oak','steel','linen'])[1 + i % 8] || ' ' ||
           (array['kettle','lamp','chair','table','mug','towel','jacket','shoe','sock','bag',
                  'pan','knife','spoon','bowl','plate','vase','rug','pillow','sheet','mirror',
                  'clock','shelf','desk','stool','bench','basket','candle','frame','hook','tray',
                  'scarf','glove','hat','belt','wallet','watch','ring','bottle','flask','tent'])[1 + i % 40]
             || ' ' || i,
           'A sturdy item number ' || i || ' for everyday use.',
           (i * 37) % 100000, 'EUR', i % 10 <> 0, now() - i * interval '1 second'
    from generate_series(1, ${ROWS}) as i`);
  await db.sql.unsafe("analyze products");
});

afterAll(async () => {
  await db?.sql.unsafe(`drop schema if exists "${schema}" cascade`);
  await db?.close();
});

describe("query plans at 100k products", () => {
  it("search uses the GIN index on the weighted tsvector", async () => {
    const [count] = await db.sql`select count(*)::int as n from products`;
    expect(count!.n).toBe(ROWS);
    for (const search of [
      { query: "kettle", prefix: false },
      { query: "steel ket", prefix: true },
    ]) {
      const q = buildProductQuery({
        filter: {
          categoryId: undefined,
          currency: undefined,
          minPrice: undefined,
          maxPrice: undefined,
          inStockOnly: false,
          active: true,
        },
        order: "relevance",
        search,
        limit: 21,
      });
      const nodes = await explain(q.text, q.params);
      expect(nodes.map((n) => n.index)).toContain("products_search_idx");
      expect(nodes.map((n) => n.type)).not.toContain("Seq Scan");
    }
  });

  it("a keyset page deep into the list walks an index, not a sort of every row", async () => {
    const q = buildProductQuery({
      filter: {
        categoryId: undefined,
        currency: undefined,
        minPrice: undefined,
        maxPrice: undefined,
        inStockOnly: false,
        active: undefined,
      },
      order: "create_time_desc",
      cursor: [String((Date.now() - 50_000_000) * 1000), "00000000-0000-0000-0000-000000000000"],
      limit: 51,
    });
    const nodes = await explain(q.text, q.params);
    expect(nodes.map((n) => n.index)).toContain("products_created_idx");
    expect(nodes.map((n) => n.type)).not.toContain("Sort");
  });
});
