import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  customType,
  foreignKey,
  index,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

export { inbox, outbox, outboxAggregates } from "../../../platform/events/tables.js";

const tsvector = customType<{ data: string }>({ dataType: () => "tsvector" });
const bytea = customType<{ data: Uint8Array; driverData: Buffer }>({ dataType: () => "bytea" });

const timestamps = {
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
};

export const categories = pgTable(
  "categories",
  {
    id: uuid("id").primaryKey(),
    parentId: uuid("parent_id"),
    slug: text("slug").notNull(),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    ...timestamps,
  },
  (t) => [
    uniqueIndex("categories_slug_key").on(t.slug),
    index("categories_parent_idx").on(t.parentId),
    foreignKey({ columns: [t.parentId], foreignColumns: [t.id], name: "categories_parent_fk" }),
    check("categories_slug_format", sql`${t.slug} ~ '^[a-z0-9-]{1,100}$'`),
  ],
);

export const products = pgTable(
  "products",
  {
    id: uuid("id").primaryKey(),
    sku: text("sku").notNull(),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    priceMinor: bigint("price_minor", { mode: "bigint" }).notNull(),
    currency: text("currency").notNull(),
    categoryId: uuid("category_id").references(() => categories.id),
    attributes: jsonb("attributes").$type<Record<string, string>>().notNull().default({}),
    active: boolean("active").notNull().default(true),
    // Bumped on every change; the cache refuses to store an older version
    // than one it was told about (see platform/cache).
    version: bigint("version", { mode: "number" }).notNull().default(1),
    ...timestamps,
    deletedAt: timestamp("deleted_at", { withTimezone: true, mode: "date" }),
    // Name words twice: stemmed (english) for search, unstemmed (simple) so a
    // type-ahead prefix like "runn" still finds "running".
    search: tsvector("search")
      .notNull()
      .generatedAlwaysAs(
        sql`setweight(to_tsvector('english'::regconfig, name), 'A') || setweight(to_tsvector('simple'::regconfig, name), 'A') || setweight(to_tsvector('english'::regconfig, description), 'B')`,
      ),
  },
  (t) => [
    check("products_price_nonnegative", sql`${t.priceMinor} >= 0`),
    check("products_currency_format", sql`${t.currency} ~ '^[A-Z]{3}$'`),
    check("products_sku_format", sql`${t.sku} ~ '^[A-Za-z0-9._-]{1,64}$'`),
    // SKUs are unique among live products only: a deleted product frees its SKU.
    uniqueIndex("products_sku_live_key").on(t.sku).where(sql`deleted_at is null`),
    index("products_search_idx").using("gin", t.search).where(sql`deleted_at is null`),
    // One index per sort order of ListProducts (keyset scans), live rows only.
    index("products_created_idx")
      .on(t.createdAt.desc().nullsFirst(), t.id.desc().nullsFirst())
      .where(sql`deleted_at is null`),
    index("products_name_idx")
      .on(sql`lower(name) collate "C"`, t.id)
      .where(sql`deleted_at is null`),
    index("products_price_idx").on(t.priceMinor, t.id).where(sql`deleted_at is null`),
    index("products_category_idx")
      .on(t.categoryId, t.createdAt.desc().nullsFirst(), t.id.desc().nullsFirst())
      .where(sql`deleted_at is null`),
  ],
);

export const stock = pgTable(
  "stock",
  {
    productId: uuid("product_id")
      .primaryKey()
      .references(() => products.id),
    onHand: bigint("on_hand", { mode: "number" }).notNull().default(0),
    reserved: bigint("reserved", { mode: "number" }).notNull().default(0),
    updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [
    check("stock_on_hand_nonnegative", sql`${t.onHand} >= 0`),
    check("stock_reserved_nonnegative", sql`${t.reserved} >= 0`),
    // available = on_hand - reserved never goes negative, whatever the code does.
    check("stock_available_nonnegative", sql`${t.reserved} <= ${t.onHand}`),
    index("stock_available_idx").on(t.productId).where(sql`on_hand > reserved`),
  ],
);

export const reservations = pgTable(
  "reservations",
  {
    orderId: uuid("order_id").primaryKey(),
    state: text("state").notNull(),
    // Canonical item list, to tell a retry from a different request.
    itemsKey: text("items_key").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
    endedAt: timestamp("ended_at", { withTimezone: true, mode: "date" }),
    endReason: text("end_reason"),
  },
  (t) => [
    check(
      "reservations_state_valid",
      sql`${t.state} in ('active', 'committed', 'released', 'expired')`,
    ),
    index("reservations_expiry_idx").on(t.expiresAt).where(sql`state = 'active'`),
  ],
);

export const reservationItems = pgTable(
  "reservation_items",
  {
    orderId: uuid("order_id")
      .notNull()
      .references(() => reservations.orderId),
    productId: uuid("product_id")
      .notNull()
      .references(() => products.id),
    quantity: bigint("quantity", { mode: "number" }).notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.orderId, t.productId] }),
    check("reservation_items_quantity_positive", sql`${t.quantity} > 0`),
  ],
);

/** Every stock movement, append-only: who changed what, when and why. */
export const stockLedger = pgTable(
  "stock_ledger",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    productId: uuid("product_id")
      .notNull()
      .references(() => products.id),
    kind: text("kind").notNull(),
    deltaOnHand: bigint("delta_on_hand", { mode: "number" }).notNull().default(0),
    deltaReserved: bigint("delta_reserved", { mode: "number" }).notNull().default(0),
    reason: text("reason"),
    note: text("note"),
    orderId: uuid("order_id"),
    requestId: uuid("request_id"),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [
    check(
      "stock_ledger_kind_valid",
      sql`${t.kind} in ('adjust', 'reserve', 'commit', 'release', 'expire', 'import')`,
    ),
    uniqueIndex("stock_ledger_request_key").on(t.requestId).where(sql`request_id is not null`),
    index("stock_ledger_product_idx").on(t.productId, t.id),
  ],
);

/** Idempotency keys of create RPCs (`request_id`), kept 24 hours. */
export const idempotencyKeys = pgTable(
  "idempotency_keys",
  {
    requestId: uuid("request_id").notNull(),
    operation: text("operation").notNull(),
    requestHash: text("request_hash").notNull(),
    response: bytea("response"),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.operation, t.requestId] }),
    index("idempotency_keys_created_idx").on(t.createdAt),
  ],
);
