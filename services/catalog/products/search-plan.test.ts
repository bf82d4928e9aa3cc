import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabase, type Database, migrateDatabase } from "../../../platform/db/postgres.js";
import { TEST_DATABASE_URL, uniqueSchema } from "../../../platform/testing/service-harness.js";
import { buildProductQuery, DEFAULT_RANK_WINDOW } from "./product-query.js";

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

/** Actual rows of every Bitmap Heap Scan in an EXPLAIN (ANALYZE, FORMAT JSON) plan. */
function heapScans(plan: unknown): number[] {
  const out: number[] = [];
  const visit = (node: Record<string, unknown>) => {
    if (node["Node Type"] === "Bitmap Heap Scan" && Number(node["Actual Loops"]) > 0) {
      out.push(Number(node["Actual Rows"]));
    }
    for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) visit(child);
  };
  visit(plan as Record<string, unknown>);
  return out;
}

const noFilter = {
  categoryId: undefined,
  currency: undefined,
  minPrice: undefined,
  maxPrice: undefined,
  inStockOnly: false,
  active: undefined,
};

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

  it("the prepared (generic) plan of a search uses the GIN index too", async () => {
    for (const search of [
      { query: "kettle", prefix: false },
      { query: "steel ket", prefix: true },
    ]) {
      const q = buildProductQuery({ filter: noFilter, order: "relevance", search, limit: 21 });
      expect(q.prepare).toBe(true);
      const types = q.params.map((p) => (typeof p === "number" ? "float8" : "text"));
      await db.sql.begin(async (tx) => {
        await tx.unsafe("set local plan_cache_mode = force_generic_plan");
        await tx.unsafe(`prepare generic_search(${types.join(",")}) as ${q.text}`);
        const args = q.params.map((p) => `'${String(p).replaceAll("'", "''")}'`).join(",");
        const [row] = await tx.unsafe(`explain (format json) execute generic_search(${args})`);
        await tx.unsafe("deallocate generic_search");
        const nodes = planNodes((row!["QUERY PLAN"] as { Plan: unknown }[])[0]!.Plan);
        expect(nodes.map((n) => n.index)).toContain("products_search_idx");
        expect(nodes.map((n) => n.type)).not.toContain("Seq Scan");
      });
    }
  });

  it("a relevance search reads a window of rows, and finds a name hit behind many description hits", async () => {
    // "kettle" is in 2.5k names: the scans stop at the window (200 rows).
    const q = buildProductQuery({
      filter: noFilter,
      order: "relevance",
      search: { query: "kettle", prefix: false },
      limit: 21,
    });
    const [row] = await db.sql.unsafe(
      `explain (analyze, format json) ${q.text}`,
      q.params as string[],
    );
    const scanned = heapScans((row!["QUERY PLAN"] as { Plan: unknown }[])[0]!.Plan);
    expect(scanned.length).toBeGreaterThan(0);
    for (const rows of scanned) expect(rows).toBeLessThanOrEqual(DEFAULT_RANK_WINDOW);
    // 300 description hits stored before the one name hit.
    await db.sql.unsafe(`
      insert into products (id, sku, name, description, price_minor, currency, active)
      select gen_random_uuid(), 'LANTERN-' || i, 'Tea set ' || i, 'Pairs well with a lantern.', 100, 'EUR', true
      from generate_series(1, 300) as i`);
    const [nameHit] = await db.sql.unsafe(`
      insert into products (id, sku, name, description, price_minor, currency, active)
      values (gen_random_uuid(), 'LANTERN-NAME', 'Brass lantern', 'Warm light.', 100, 'EUR', true)
      returning id`);
    const lantern = buildProductQuery({
      filter: noFilter,
      order: "relevance",
      search: { query: "lantern", prefix: false },
      limit: 21,
    });
    const rows = await db.sql.unsafe(lantern.text, lantern.params as string[]);
    expect(rows[0]!.id).toBe(nameHit!.id);
    expect(rows).toHaveLength(21);
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
