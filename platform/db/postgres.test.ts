import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { TEST_DATABASE_URL, uniqueSchema } from "../testing/service-harness.js";
import { createDatabase, migrateDatabase } from "./postgres.js";

const folder = fileURLToPath(new URL("./test-fixtures/migrations/", import.meta.url));
const admin = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
const schemas: string[] = [];

afterAll(async () => {
  for (const schema of schemas) await admin.unsafe(`drop schema if exists "${schema}" cascade`);
  await admin.end();
});

describe("postgres pools and migrations", () => {
  it("applies committed migrations into the service schema, once, even from concurrent replicas", async () => {
    const schema = uniqueSchema("mig");
    schemas.push(schema);
    await Promise.all([
      migrateDatabase({ url: TEST_DATABASE_URL, schema }, folder),
      migrateDatabase({ url: TEST_DATABASE_URL, schema }, folder),
      migrateDatabase({ url: TEST_DATABASE_URL, schema }, folder),
    ]);
    await migrateDatabase({ url: TEST_DATABASE_URL, schema }, folder);
    const applied = await admin.unsafe(
      `select count(*)::int as n from "${schema}".__drizzle_migrations`,
    );
    expect(applied[0]?.n).toBe(2);
    const columns = await admin`
      select column_name from information_schema.columns
      where table_schema = ${schema} and table_name = 'widgets' order by column_name`;
    expect(columns.map((c) => c.column_name)).toEqual(["id", "name", "price_minor"]);
    // The CHECK lives in the database, not only in code.
    await expect(
      admin.unsafe(
        `insert into "${schema}".widgets (id, name, price_minor) values (gen_random_uuid(), 'x', -1)`,
      ),
    ).rejects.toThrow(/widgets_price_check/);
  });

  it("resolves unqualified table names through the service schema, and routes replica reads", async () => {
    const schema = uniqueSchema("mig");
    schemas.push(schema);
    await migrateDatabase({ url: TEST_DATABASE_URL, schema }, folder);
    const database = createDatabase({
      url: TEST_DATABASE_URL,
      replicaUrl: `${TEST_DATABASE_URL}?application_name=replica`,
      schema,
      applicationName: "primary-test",
    });
    try {
      await database.sql`insert into widgets (id, name) values (gen_random_uuid(), 'gear')`;
      const [row] = await database.readSql`select name, current_schema() as schema from widgets`;
      expect(row).toMatchObject({ name: "gear", schema });
      expect(database.readSql).not.toBe(database.sql);
      await database.ping();
    } finally {
      await database.close();
    }
  });

  it("refuses schema names that are not plain identifiers", () => {
    expect(() =>
      createDatabase({ url: TEST_DATABASE_URL, schema: 'x"; drop schema public; --' }),
    ).toThrow(/invalid schema name/);
  });
});
