import { createWriteStream, type WriteStream } from "node:fs";
import type { Sql, TransactionSql } from "postgres";
import { StockAdjustmentReason } from "../../../gen/commerce/catalog/v1/stock_pb.js";
import { plainArray, textArray } from "../../../platform/db/pg-array.js";
import type { OutboxEvent } from "../../../platform/events/outbox.js";
import type { CatalogEvents } from "../events/catalog-events.js";
import { toStock } from "../inventory/reservation-row.js";
import { changedPaths } from "../products/catalog-handlers.js";
import type { ProductFields } from "../products/product-fields.js";
import { PRODUCT_COLUMNS, type ProductRow, toProduct } from "../products/product-row.js";
import { fieldsOf } from "../products/product-store.js";
import { type FeedFormat, type FeedRow, openFeed } from "./feed-reader.js";
import { type ImportRow, normaliseRow } from "./feed-row.js";
import { appendImportEvents } from "./import-outbox.js";
import { uuidV7 } from "./uuid-v7.js";

export interface ImportReport {
  read: number;
  inserted: number;
  updated: number;
  unchanged: number;
  rejected: number;
  /** Rows whose stock could not be set because it is below the reserved units. */
  stockSkipped: number;
  stockChanged: number;
  seconds: number;
  rowsPerSecond: number;
  rejectsPath: string;
}

export interface ImportProgress {
  rows: number;
  bytes: number;
  totalBytes: number;
  elapsedMs: number;
}

export interface ImportOptions {
  /** postgres.js client whose search_path selects the catalog schema. */
  sql: Sql;
  events: CatalogEvents;
  /**
   * The events' subject domain (what `events` was created with). Given, the
   * batch's events go to the outbox through one prepared set-based statement
   * (import-outbox.ts); omitted, through `events.append`, same rows but slower.
   */
  eventDomain?: string;
  path: string;
  format: FeedFormat;
  rejectsPath: string;
  batchSize?: number;
  /** Batches in flight at once, each in its own transaction (default 2). */
  concurrency?: number;
  lowStockThreshold?: number;
  onProgress?: (progress: ImportProgress) => void;
}

interface ExistingRow extends ProductRow {
  on_hand: string;
  reserved: string;
}

interface Counts {
  inserted: number;
  updated: number;
  unchanged: number;
  stockSkipped: number;
  stockChanged: number;
}

/**
 * The bulk import (ETL): stream → validate/normalise → upsert by SKU in
 * batches, one transaction per batch, with the same events as the RPCs.
 * Unchanged rows are not written at all, so a second run of the same file
 * changes nothing (no version bump, no event). Bad rows go to the reject
 * file with their reason and never stop the run.
 */
export async function importFeed(options: ImportOptions): Promise<ImportReport> {
  const { sql, events, batchSize = 1000, concurrency = 2 } = options;
  const started = performance.now();
  const categories = new Map(
    (await sql<{ slug: string; id: string }[]>`select slug, id from categories`).map((c) => [
      c.slug,
      c.id,
    ]),
  );
  const feed = await openFeed(options.path, options.format);
  const rejects = createWriteStream(options.rejectsPath, { encoding: "utf8" });
  const counts: Counts = {
    inserted: 0,
    updated: 0,
    unchanged: 0,
    stockSkipped: 0,
    stockChanged: 0,
  };
  let read = 0;
  let rejected = 0;
  const firstLineOfSku = new Map<string, number>();
  let batch: ImportRow[] = [];

  const reject = async (row: FeedRow, reason: string) => {
    rejected++;
    await write(rejects, `${JSON.stringify({ line: row.line, reason, row: row.fields })}\n`);
  };
  // Batches hold disjoint SKUs (duplicates are rejected above), so they can
  // commit in any order; two in flight keep both Node and Postgres busy.
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  const flush = async () => {
    if (batch.length === 0) return;
    const rows = batch;
    batch = [];
    const task: Promise<void> = sql
      .begin((tx) =>
        upsertBatch(tx, rows, events, counts, options.lowStockThreshold ?? 5, options.eventDomain),
      )
      .then(
        () => {},
        (error: unknown) => {
          failure ??= error;
        },
      )
      .finally(() => inFlight.delete(task));
    inFlight.add(task);
    while (inFlight.size >= concurrency) await Promise.race(inFlight);
    if (failure) throw failure;
  };

  try {
    for await (const raw of feed.rows) {
      read++;
      if (raw.error) {
        await reject(raw, raw.error);
      } else {
        const result = normaliseRow(raw.line, raw.fields, categories);
        if (!result.ok) {
          await reject(raw, result.reason);
        } else {
          const earlier = firstLineOfSku.get(result.row.sku);
          if (earlier !== undefined) {
            await reject(raw, `duplicate sku "${result.row.sku}" (first on line ${earlier})`);
          } else {
            firstLineOfSku.set(result.row.sku, raw.line);
            batch.push(result.row);
            if (batch.length >= batchSize) await flush();
          }
        }
      }
      if (read % 1000 === 0) {
        options.onProgress?.({
          rows: read,
          bytes: feed.bytesRead(),
          totalBytes: feed.totalBytes,
          elapsedMs: performance.now() - started,
        });
      }
    }
    await flush();
    await Promise.all(inFlight);
    if (failure) throw failure;
  } finally {
    await Promise.allSettled(inFlight);
    await new Promise<void>((resolve) => rejects.end(resolve));
  }
  const seconds = (performance.now() - started) / 1000;
  options.onProgress?.({
    rows: read,
    bytes: feed.totalBytes,
    totalBytes: feed.totalBytes,
    elapsedMs: seconds * 1000,
  });
  return {
    read,
    ...counts,
    rejected,
    seconds,
    rowsPerSecond: seconds > 0 ? read / seconds : read,
    rejectsPath: options.rejectsPath,
  };
}

function write(stream: WriteStream, text: string): Promise<void> {
  return stream.write(text)
    ? Promise.resolve()
    : new Promise((resolve) => stream.once("drain", resolve));
}

function toFields(row: ImportRow): ProductFields {
  return {
    sku: row.sku,
    name: row.name,
    description: row.description,
    priceMinor: row.priceMinor,
    currency: row.currency,
    categoryId: row.categoryId,
    attributes: row.attributes,
    active: row.active,
  };
}

function productJson(id: string, f: ProductFields, stock: number | undefined) {
  return {
    id,
    sku: f.sku,
    name: f.name,
    description: f.description,
    price_minor: f.priceMinor.toString(),
    currency: f.currency,
    category_id: f.categoryId,
    attributes: f.attributes,
    active: f.active,
    on_hand: stock ?? 0,
  };
}

const RECORD = `jsonb_to_recordset($1::text::jsonb) as u(id uuid, sku text, name text, description text,
  price_minor int8, currency text, category_id uuid, attributes jsonb, active bool, on_hand int8)`;

// New products, their stock rows and the ledger rows of their opening stock
// in one fixed statement over parallel arrays (array literals, platform/db/pg-array.ts):
// prepared once per connection, nothing returned but counts and now() (the
// rows are what was sent; their timestamps are the transaction start).
const INSERT_NEW = `
with p as (
  insert into products (id, sku, name, description, price_minor, currency, category_id, attributes, active)
  select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[],
                       $7::uuid[], $8::text[]::jsonb[], $9::bool[])
  returning id
),
s as (
  insert into stock (product_id, on_hand)
  select u.id, u.on_hand from unnest($1::uuid[], $10::int8[]) as u(id, on_hand)
  returning 1
),
l as (
  insert into stock_ledger (product_id, kind, delta_on_hand, reason)
  select u.id, 'import', u.on_hand, 'import' from unnest($1::uuid[], $10::int8[]) as u(id, on_hand)
  where u.on_hand > 0
  returning 1
)
select (select count(*) from p)::int as products, (select count(*) from s)::int as stock,
       (select count(*) from l)::int as ledger,
       (extract(epoch from now()) * 1000000)::int8::text as now_us`;

function byCategoryAndName(a: ImportRow, b: ImportRow): number {
  const ca = a.categoryId ?? "";
  const cb = b.categoryId ?? "";
  if (ca !== cb) return ca < cb ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

async function upsertBatch(
  tx: TransactionSql,
  rows: ImportRow[],
  events: CatalogEvents,
  counts: Counts,
  lowStockThreshold: number,
  eventDomain: string | undefined,
): Promise<void> {
  // Commits are flushed (synchronous_commit stays on): an asynchronous
  // commit is visible before it is durable, so the relay could publish a
  // batch's events and a crash then lose the batch; a re-run would create
  // those products under new ids. Skipping ~100 flushes per 100k rows saved
  // nothing measurable here.
  // Locked in product id order, the same order reservations lock stock rows:
  // an import running beside live traffic cannot deadlock with it.
  const existing = await tx.unsafe<ExistingRow[]>(
    `select ${PRODUCT_COLUMNS}, s.on_hand::text as on_hand, s.reserved::text as reserved
     from products p join stock s on s.product_id = p.id
     where p.sku = any($1::text[]) and p.deleted_at is null
     order by p.id
     for update of p, s`,
    [rows.map((r) => r.sku)],
    { prepare: true },
  );
  const bySku = new Map(existing.map((row) => [row.sku, row]));
  const inserts: ImportRow[] = [];
  const updates: ReturnType<typeof productJson>[] = [];
  const changedBySku = new Map<string, string[]>();
  const stockChanges: { id: string; onHand: number; delta: number }[] = [];
  for (const row of rows) {
    const current = bySku.get(row.sku);
    if (!current) {
      inserts.push(row);
      continue;
    }
    const fields = toFields(row);
    const changed = changedPaths(fieldsOf(current), fields);
    if (changed.length > 0) {
      updates.push(productJson(current.id, fields, row.stock));
      changedBySku.set(row.sku, changed);
    }
    let stockChanged = false;
    if (row.stock !== undefined && row.stock !== Number(current.on_hand)) {
      if (row.stock < Number(current.reserved)) counts.stockSkipped++;
      else {
        stockChanges.push({
          id: current.id,
          onHand: row.stock,
          delta: row.stock - Number(current.on_hand),
        });
        stockChanged = true;
      }
    }
    // A stock-only change counts as an update; the product row stays as it is.
    if (changed.length === 0) {
      if (stockChanged) counts.updated++;
      else counts.unchanged++;
    }
  }

  // Events of the products created here (fresh aggregates) and of the rest.
  const created: OutboxEvent[] = [];
  const out: OutboxEvent[] = [];
  if (inserts.length > 0) {
    // Heap order = insert order: a batch's products of one category land on
    // neighbouring pages, so a search for a word common within a category
    // ("kettle", "running shoe") reads a third of the heap pages it would
    // read with the feed's order (a relevance search reads a window of
    // matching rows in storage order, the other orders every matching row).
    inserts.sort(byCategoryAndName);
    const ids = inserts.map(() => uuidV7());
    const [inserted] = await tx.unsafe<
      { products: number; stock: number; ledger: number; now_us: string }[]
    >(
      INSERT_NEW,
      [
        plainArray(ids),
        textArray(inserts.map((r) => r.sku)),
        textArray(inserts.map((r) => r.name)),
        textArray(inserts.map((r) => r.description)),
        plainArray(inserts.map((r) => r.priceMinor)),
        textArray(inserts.map((r) => r.currency)),
        textArray(inserts.map((r) => r.categoryId)),
        textArray(inserts.map((r) => JSON.stringify(r.attributes))),
        plainArray(inserts.map((r) => r.active)),
        plainArray(inserts.map((r) => r.stock ?? 0)),
      ],
      { prepare: true },
    );
    // Transaction start in epoch microseconds: created_at/updated_at of these rows.
    const nowUs = inserted!.now_us;
    counts.inserted += inserted!.products;
    counts.stockChanged += inserted!.ledger;
    for (let i = 0; i < inserts.length; i++) {
      const row = inserts[i]!;
      const id = ids[i]!;
      created.push(
        events.productCreated(
          toProduct({
            id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            price_minor: row.priceMinor.toString(),
            currency: row.currency,
            category_id: row.categoryId,
            attributes: row.attributes,
            active: row.active,
            version: "1",
            created_us: nowUs,
            updated_us: nowUs,
            deleted_us: null,
          }),
        ),
      );
      const onHand = row.stock ?? 0;
      if (onHand > 0) {
        // Nothing can be reserved yet: the level is what was just inserted.
        const stock = toStock({
          product_id: id,
          on_hand: String(onHand),
          reserved: "0",
          updated_us: nowUs,
        });
        created.push(events.stockAdjusted(stock, BigInt(onHand), StockAdjustmentReason.STOCKTAKE));
      }
    }
  }
  if (updates.length > 0) {
    const updated = await tx.unsafe<ProductRow[]>(
      `update products p set name = u.name, description = u.description, price_minor = u.price_minor,
         currency = u.currency, category_id = u.category_id, attributes = u.attributes, active = u.active,
         version = p.version + 1, updated_at = now()
       from ${RECORD}
       where p.id = u.id
       returning ${PRODUCT_COLUMNS}`,
      [JSON.stringify(updates)],
    );
    counts.updated += updated.length;
    for (const row of updated)
      out.push(events.productUpdated(toProduct(row), changedBySku.get(row.sku) ?? []));
  }
  if (stockChanges.length > 0) {
    const levels = await tx.unsafe<Parameters<typeof toStock>[0][]>(
      `update stock s set on_hand = u.on_hand, updated_at = now()
       from unnest($1::uuid[], $2::int8[]) as u(id, on_hand)
       where s.product_id = u.id
       returning s.product_id, s.on_hand::text as on_hand, s.reserved::text as reserved,
         (extract(epoch from s.updated_at) * 1000000)::int8::text as updated_us`,
      [stockChanges.map((c) => c.id), stockChanges.map((c) => c.onHand)] as never[],
      { prepare: true },
    );
    await tx.unsafe(
      `insert into stock_ledger (product_id, kind, delta_on_hand, reason)
       select u.id, 'import', u.delta, 'import' from unnest($1::uuid[], $2::int8[]) as u(id, delta)`,
      [stockChanges.map((c) => c.id), stockChanges.map((c) => c.delta)] as never[],
      { prepare: true },
    );
    counts.stockChanged += stockChanges.length;
    const deltaById = new Map(stockChanges.map((c) => [c.id, c.delta]));
    for (const level of levels) {
      const stock = toStock(level);
      const delta = deltaById.get(stock.productId) ?? 0;
      out.push(events.stockAdjusted(stock, BigInt(delta), StockAdjustmentReason.STOCKTAKE));
      const after = Number(stock.available);
      if (after - delta > lowStockThreshold && after <= lowStockThreshold) {
        out.push(events.stockLow(stock.productId, stock.available, BigInt(lowStockThreshold)));
      }
    }
  }
  if (eventDomain === undefined) {
    if (created.length + out.length > 0) await events.append(tx, [...created, ...out]);
  } else {
    await appendImportEvents(tx, eventDomain, created, { newAggregates: true });
    await appendImportEvents(tx, eventDomain, out);
  }
}
