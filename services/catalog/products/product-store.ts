import type { Sql, TransactionSql } from "postgres";
import {
  AlreadyExistsError,
  InvalidArgumentError,
} from "../../../platform/errors/domain-errors.js";
import { FOREIGN_KEY_VIOLATION, pgError, UNIQUE_VIOLATION } from "../domain/postgres-errors.js";
import type { ProductFields } from "./product-fields.js";
import { PRODUCT_COLUMNS, type ProductRow } from "./product-row.js";

type Db = Sql | TransactionSql;

/** Maps constraint violations of product writes to client errors. */
export function translateWriteError(error: unknown, fields: Partial<ProductFields>): never {
  const pg = pgError(error);
  if (pg?.code === UNIQUE_VIOLATION && pg.constraint === "products_sku_live_key") {
    throw new AlreadyExistsError("a live product already uses this SKU", "SKU_TAKEN", {
      sku: fields.sku ?? "",
    });
  }
  if (
    pg?.code === FOREIGN_KEY_VIOLATION &&
    pg.constraint === "products_category_id_categories_id_fk"
  ) {
    throw InvalidArgumentError.field("product.category_id", "no category has this id");
  }
  throw error;
}

export async function findProduct(db: Db, id: string): Promise<ProductRow | undefined> {
  const [row] = await db.unsafe<ProductRow[]>(
    `select ${PRODUCT_COLUMNS} from products p where p.id = $1::uuid`,
    [id],
  );
  return row;
}

export async function findProducts(db: Db, ids: readonly string[]): Promise<ProductRow[]> {
  return db.unsafe<ProductRow[]>(
    `select ${PRODUCT_COLUMNS} from products p where p.id = any($1::uuid[])`,
    [`{${ids.join(",")}}`],
  );
}

export async function lockProduct(tx: TransactionSql, id: string): Promise<ProductRow | undefined> {
  const [row] = await tx.unsafe<ProductRow[]>(
    `select ${PRODUCT_COLUMNS} from products p where p.id = $1::uuid for update`,
    [id],
  );
  return row;
}

/** Inserts a product and its (empty) stock row in one statement. */
export async function insertProduct(
  tx: TransactionSql,
  id: string,
  f: ProductFields,
): Promise<ProductRow> {
  try {
    const [row] = await tx.unsafe<ProductRow[]>(
      `with p as (
         insert into products (id, sku, name, description, price_minor, currency, category_id, attributes, active)
         values ($1::uuid, $2, $3, $4, $5::int8, $6, $7::uuid, $8::text::jsonb, $9)
         returning *
       ), s as (insert into stock (product_id) select id from p)
       select ${PRODUCT_COLUMNS} from p`,
      [
        id,
        f.sku,
        f.name,
        f.description,
        f.priceMinor.toString(),
        f.currency,
        f.categoryId,
        JSON.stringify(f.attributes),
        f.active,
      ],
    );
    return row!;
  } catch (error) {
    translateWriteError(error, f);
  }
}

export async function writeProduct(
  tx: TransactionSql,
  id: string,
  f: ProductFields,
): Promise<ProductRow> {
  try {
    const [row] = await tx.unsafe<ProductRow[]>(
      `update products p set sku = $2, name = $3, description = $4, price_minor = $5::int8,
         currency = $6, category_id = $7::uuid, attributes = $8::text::jsonb, active = $9,
         version = version + 1, updated_at = now()
       where p.id = $1::uuid
       returning ${PRODUCT_COLUMNS}`,
      [
        id,
        f.sku,
        f.name,
        f.description,
        f.priceMinor.toString(),
        f.currency,
        f.categoryId,
        JSON.stringify(f.attributes),
        f.active,
      ],
    );
    return row!;
  } catch (error) {
    translateWriteError(error, f);
  }
}

export async function setDeleted(
  tx: TransactionSql,
  id: string,
  deleted: boolean,
): Promise<ProductRow> {
  const [row] = await tx.unsafe<ProductRow[]>(
    `update products p set deleted_at = ${deleted ? "now()" : "null"}, version = version + 1, updated_at = now()
     where p.id = $1::uuid returning ${PRODUCT_COLUMNS}`,
    [id],
  );
  return row!;
}

export async function liveProductWithSku(db: Db, sku: string): Promise<string | undefined> {
  const [row] = await db<
    { id: string }[]
  >`select id from products where sku = ${sku} and deleted_at is null`;
  return row?.id;
}

export function fieldsOf(row: ProductRow): ProductFields {
  return {
    sku: row.sku,
    name: row.name,
    description: row.description,
    priceMinor: BigInt(row.price_minor),
    currency: row.currency,
    categoryId: row.category_id,
    attributes: row.attributes ?? {},
    active: row.active,
  };
}
