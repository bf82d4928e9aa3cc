import { afterAll, describe, expect, it } from "vitest";
import { createDatabase } from "../../platform/db/postgres.js";
import { TEST_DATABASE_URL, uniqueSchema } from "../../platform/testing/service-harness.js";
import { seed } from "./seed.js";

const schema = uniqueSchema("t_seed");
const env = { DATABASE_URL: TEST_DATABASE_URL, DB_SCHEMA: schema, CATALOG_EVENT_DOMAIN: "tseed" };

afterAll(async () => {
  const db = createDatabase({ url: TEST_DATABASE_URL, schema, maxConnections: 1 });
  await db.sql.unsafe(`drop schema if exists "${schema}" cascade`);
  await db.close();
});

describe("seed", () => {
  it("seeds an empty catalog once with products, stock and categories", async () => {
    const first = await seed({ env, count: 300, log: () => {} });
    expect(first?.inserted).toBe(300);
    expect(await seed({ env, count: 300, log: () => {} })).toBeUndefined();
    const db = createDatabase({ url: TEST_DATABASE_URL, schema, maxConnections: 1 });
    const [row] = await db.sql`select (select count(*) from products)::int as products,
      (select count(*) from stock where on_hand > 0)::int as stocked,
      (select count(*) from categories)::int as categories`;
    await db.close();
    expect(row!.products).toBe(300);
    expect(row!.stocked).toBeGreaterThan(200);
    expect(row!.categories).toBeGreaterThan(10);
  });
});
