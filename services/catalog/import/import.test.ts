import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fromBinary } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ProductCreated,
  ProductCreatedSchema,
} from "../../../gen/commerce/catalog/v1/events_pb.js";
import { createDatabase, type Database, migrateDatabase } from "../../../platform/db/postgres.js";
import { TEST_DATABASE_URL, uniqueSchema } from "../../../platform/testing/service-harness.js";
import { parsePriceToMinor } from "../domain/price.js";
import { createCatalogEvents } from "../events/catalog-events.js";
import { type ProductRow, toProduct } from "../products/product-row.js";
import { ensureCategories } from "./demo-categories.js";
import { CSV_COLUMNS, formatRow, type GeneratedRow, generateRow } from "./feed-generator.js";
import { runImportCli } from "./import-cli.js";
import { importFeed } from "./importer.js";

/** The row fields of a ProductCreated's product (for building a follow-up event). */
function productRowOf(event: ProductCreated): ProductRow {
  const p = event.product!;
  const us = (t: Timestamp | undefined) =>
    (t!.seconds * 1_000_000n + BigInt(t!.nanos / 1000)).toString();
  return {
    id: p.id,
    sku: p.sku,
    name: p.name,
    description: p.description,
    price_minor: p.price!.amountMinor.toString(),
    currency: p.price!.currencyCode,
    category_id: p.categoryId || null,
    attributes: p.attributes,
    active: p.active,
    version: "1",
    created_us: us(p.createTime),
    updated_us: us(p.updateTime),
    deleted_us: null,
  };
}

const MIGRATIONS = fileURLToPath(new URL("../migrations/", import.meta.url));
let db: Database;
let schema: string;
let dir: string;

beforeAll(async () => {
  schema = uniqueSchema("t_imp");
  await migrateDatabase({ url: TEST_DATABASE_URL, schema }, MIGRATIONS);
  db = createDatabase({ url: TEST_DATABASE_URL, schema, maxConnections: 2 });
  await ensureCategories(db.sql);
  dir = await mkdtemp(join(tmpdir(), "catalog-import-"));
});

afterAll(async () => {
  await db?.sql.unsafe(`drop schema if exists "${schema}" cascade`);
  await db?.close();
  await rm(dir, { recursive: true, force: true });
});

/** One fault per kind, cycling: each bad row has exactly one problem. */
const FAULTS: [string, (row: GeneratedRow) => GeneratedRow | string][] = [
  ["negative price", (r) => ({ ...r, price: "-3.50" })],
  ["too many decimals", (r) => ({ ...r, price: "12.345", currency: "EUR" })],
  ["float notation", (r) => ({ ...r, price: "1e3" })],
  ["unknown currency", (r) => ({ ...r, currency: "ABC" })],
  ["unknown category", (r) => ({ ...r, category: "no-such-category" })],
  ["missing sku", (r) => ({ ...r, sku: "" })],
  ["long description", (r) => ({ ...r, description: "d".repeat(10_001) })],
  ["broken json", () => '{"sku": "BROKEN", "name": '],
  ["bad stock", (r) => ({ ...r, stock: -1 })],
  ["duplicate sku", (r) => ({ ...r, sku: generateRow(0, 7).sku })],
];

function writeFeed(
  path: string,
  count: number,
  seed: number,
  badEvery: number,
  format: "csv" | "ndjson",
) {
  const lines: string[] = format === "csv" ? [CSV_COLUMNS.join(",")] : [];
  let bad = 0;
  for (let i = 0; i < count; i++) {
    const row = generateRow(i, seed);
    if (i > 0 && i % badEvery === 0) {
      const faulty = FAULTS[bad % FAULTS.length]![1](row);
      bad++;
      lines.push(
        typeof faulty === "string"
          ? format === "csv"
            ? "BROKEN,only-two-columns"
            : faulty
          : formatRow(faulty, format),
      );
    } else {
      lines.push(formatRow(row, format));
    }
  }
  writeFileSync(path, `${lines.join("\n")}\n`);
  return { good: count - bad, bad };
}

const events = () => createCatalogEvents("timport");

describe("bulk import", () => {
  it("parses prices exactly in minor units (no floats)", () => {
    expect(parsePriceToMinor("0.29", "EUR")).toBe(29n);
    expect(parsePriceToMinor("12.3", "EUR")).toBe(1230n);
    expect(parsePriceToMinor("19.990", "USD")).toBe(1999n);
    expect(parsePriceToMinor("1500", "JPY")).toBe(1500n);
    expect(parsePriceToMinor("1.234", "BHD")).toBe(1234n);
    expect(() => parsePriceToMinor("1.5", "JPY")).toThrow();
    expect(() => parsePriceToMinor("-1", "EUR")).toThrow(/negative/);
    expect(() => parsePriceToMinor("1,50", "EUR")).toThrow();
  });

  it("imports 10k rows with 1% bad: good rows in, bad rows rejected with reasons, second run changes nothing", async () => {
    const path = join(dir, "feed.ndjson");
    const { good, bad } = writeFeed(path, 10_000, 7, 100, "ndjson");
    expect(bad).toBe(99);
    const first = await importFeed({
      sql: db.sql,
      events: events(),
      eventDomain: "timport",
      path,
      format: "ndjson",
      rejectsPath: `${path}.rejects`,
    });
    expect(first).toMatchObject({
      read: 10_000,
      inserted: good,
      updated: 0,
      unchanged: 0,
      rejected: bad,
    });
    const rejects = readFileSync(`${path}.rejects`, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rejects).toHaveLength(bad);
    const reasons = rejects.map((r) => String(r.reason));
    for (const expected of [
      /negative/,
      /at most 2 decimals/,
      /not a decimal number/,
      /unknown currency/,
      /unknown category/,
      /sku is missing/,
      /description is longer/,
      /not valid JSON/,
      /stock must be/,
      /duplicate sku/,
    ]) {
      expect(reasons.some((r) => expected.test(r))).toBe(true);
    }
    expect(rejects.every((r) => Number.isInteger(r.line) && r.line > 1)).toBe(true);

    const [counts] = await db.sql`select (select count(*) from products)::int as products,
      (select count(*) from stock)::int as stock, (select count(*) from outbox)::int as events,
      (select sum(version) from products)::int as versions`;
    expect(counts!.products).toBe(good);
    expect(counts!.stock).toBe(good);

    // Outbox (set-based writer): one ProductCreated per product and one
    // StockAdjusted per product with stock, each its aggregate's sequence 1.
    const outbox = await db.sql<{ subject: string; n: number; seqs: string[]; ctx: string[] }[]>`
      select subject, count(*)::int as n, array_agg(distinct aggregate_seq::text) as seqs,
             array_agg(distinct jsonb_typeof(trace_context)) as ctx
      from outbox group by subject order by subject`;
    const [withStock] = await db.sql`select count(*)::int as n from stock where on_hand > 0`;
    expect(outbox).toEqual([
      { subject: "timport.product.created", n: good, seqs: ["1"], ctx: ["object"] },
      { subject: "timport.stock.adjusted", n: withStock!.n, seqs: ["1"], ctx: ["object"] },
    ]);
    const [aggregates] =
      await db.sql`select count(*)::int as n, max(last_seq)::int as max from outbox_aggregates`;
    expect(aggregates).toEqual({ n: good + withStock!.n, max: 1 });
    // The payload is the product as stored (timestamps to the microsecond).
    const [createdRow] = await db.sql<
      { payload: Buffer; id: string; price: string; created_us: string; event_id: string }[]
    >`select o.payload, p.id, p.price_minor::text as price, o.event_id::text as event_id,
        (extract(epoch from p.created_at) * 1000000)::int8::text as created_us
      from outbox o join products p on p.id::text = o.aggregate_id
      where o.subject = 'timport.product.created' and p.sku = ${generateRow(1, 7).sku}`;
    const event = fromBinary(ProductCreatedSchema, createdRow!.payload);
    expect(event.product?.id).toBe(createdRow!.id);
    expect(event.product?.price?.amountMinor.toString()).toBe(createdRow!.price);
    const created = event.product!.createTime!;
    expect((created.seconds * 1_000_000n + BigInt(created.nanos / 1000)).toString()).toBe(
      createdRow!.created_us,
    );
    expect(createdRow!.event_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab]/);
    // platform/events appendEvents continues the sequences the import started.
    const appended = await db.sql.begin((tx) =>
      events().append(tx, [
        events().productDeleted(toProduct({ ...productRowOf(event), deleted_us: null })),
      ]),
    );
    expect(appended).toMatchObject([{ aggregateId: createdRow!.id, aggregateSeq: 2 }]);
    await db.sql`delete from outbox where aggregate_seq = 2`;
    await db.sql`update outbox_aggregates set last_seq = 1`;
    // Prices landed exactly: row 1 of seed 7 as generated.
    const sample = generateRow(1, 7);
    const [stored] =
      await db.sql`select price_minor::text as price, currency from products where sku = ${sample.sku}`;
    expect(stored?.price).toBe(parsePriceToMinor(sample.price, sample.currency).toString());

    const second = await importFeed({
      sql: db.sql,
      events: events(),
      eventDomain: "timport",
      path,
      format: "ndjson",
      rejectsPath: `${path}.rejects2`,
    });
    expect(second).toMatchObject({ inserted: 0, updated: 0, unchanged: good, rejected: bad });
    const [after] =
      await db.sql`select (select count(*) from outbox)::int as events, (select sum(version) from products)::int as versions`;
    expect(after).toEqual({ events: counts!.events, versions: counts!.versions });
  });

  it("updates changed rows only, with ProductUpdated naming the changed fields", async () => {
    const path = join(dir, "small.csv");
    writeFeed(path, 50, 11, 1_000_000, "csv");
    const first = await runImportCli([path, "--rejects", `${path}.rej`], {
      DATABASE_URL: TEST_DATABASE_URL,
      DB_SCHEMA: schema,
      CATALOG_EVENT_DOMAIN: "timport",
    });
    expect(first).toMatchObject({ inserted: 50, rejected: 0 });
    const rows = readFileSync(path, "utf8").split("\n");
    // Re-price row 3 (line 4) and change row 5's stock only.
    const row3 = generateRow(3, 11);
    const row5 = generateRow(5, 11);
    rows[4] = formatRow({ ...row3, price: "1.00", currency: "EUR" }, "csv");
    rows[6] = formatRow({ ...row5, stock: row5.stock + 7 }, "csv");
    writeFileSync(path, rows.join("\n"));
    const second = await importFeed({
      sql: db.sql,
      events: events(),
      eventDomain: "timport",
      path,
      format: "csv",
      rejectsPath: `${path}.rej2`,
    });
    expect(second).toMatchObject({
      inserted: 0,
      updated: 2,
      unchanged: 48,
      rejected: 0,
      stockChanged: 1,
    });
    const [p3] =
      await db.sql`select price_minor::int as price, version::int as version from products where sku = ${row3.sku}`;
    expect(p3).toEqual({ price: 100, version: 2 });
    const [updated] =
      await db.sql`select count(*)::int as n from outbox where subject = 'timport.product.updated'
      and aggregate_id = (select id::text from products where sku = ${row3.sku})`;
    expect(updated!.n).toBe(1);
    // Sequences continue per aggregate: created = 1, updated = 2; stock adjusted twice.
    const seqs = await db.sql<{ subject: string; seq: number }[]>`
      select subject, aggregate_seq::int as seq from outbox
      where aggregate_id in (select id::text from products where sku in (${row3.sku}, ${row5.sku}))
      order by position`;
    expect(seqs.filter((e) => e.subject.startsWith("timport.product."))).toEqual([
      { subject: "timport.product.created", seq: 1 },
      { subject: "timport.product.created", seq: 1 },
      { subject: "timport.product.updated", seq: 2 },
    ]);
    const stockSeqs = seqs.filter((e) => e.subject === "timport.stock.adjusted").map((e) => e.seq);
    // row5's stock changed: a second StockAdjusted if the first import set stock, else the first.
    const expected = [...(row3.stock > 0 ? [1] : []), ...(row5.stock > 0 ? [1, 2] : [1])];
    expect(stockSeqs.sort()).toEqual(expected.sort());
    const [s5] =
      await db.sql`select s.on_hand::int as on_hand from stock s join products p on p.id = s.product_id where p.sku = ${row5.sku}`;
    expect(s5!.on_hand).toBe(row5.stock + 7);
  });
});
