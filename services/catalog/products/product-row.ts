import { create } from "@bufbuild/protobuf";
import { type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { type Product, ProductSchema } from "../../../gen/commerce/catalog/v1/product_pb.js";
import { MoneySchema } from "../../../gen/commerce/common/v1/money_pb.js";

/** A products row as the queries below select it (timestamps as epoch microseconds). */
export interface ProductRow {
  id: string;
  sku: string;
  name: string;
  description: string;
  price_minor: string;
  currency: string;
  category_id: string | null;
  attributes: Record<string, string>;
  active: boolean;
  version: string;
  created_us: string;
  updated_us: string;
  deleted_us: string | null;
}

/**
 * Timestamps leave Postgres as exact microseconds: a JS Date would cut them
 * to milliseconds, and keyset cursors compare against the stored value.
 */
export const PRODUCT_COLUMNS = `p.id, p.sku, p.name, p.description, p.price_minor::text as price_minor,
  p.currency, p.category_id, p.attributes, p.active, p.version::text as version,
  (extract(epoch from p.created_at) * 1000000)::int8::text as created_us,
  (extract(epoch from p.updated_at) * 1000000)::int8::text as updated_us,
  (extract(epoch from p.deleted_at) * 1000000)::int8::text as deleted_us`;

export function timestampFromMicros(micros: string | bigint): Timestamp {
  const us = BigInt(micros);
  let seconds = us / 1_000_000n;
  let rest = us % 1_000_000n;
  if (rest < 0n) {
    seconds -= 1n;
    rest += 1_000_000n;
  }
  return create(TimestampSchema, { seconds, nanos: Number(rest) * 1000 });
}

export function toProduct(row: ProductRow): Product {
  return create(ProductSchema, {
    id: row.id,
    sku: row.sku,
    name: row.name,
    description: row.description,
    price: create(MoneySchema, {
      amountMinor: BigInt(row.price_minor),
      currencyCode: row.currency,
    }),
    categoryId: row.category_id ?? "",
    attributes: row.attributes ?? {},
    active: row.active,
    createTime: timestampFromMicros(row.created_us),
    updateTime: timestampFromMicros(row.updated_us),
    ...(row.deleted_us === null ? {} : { deleteTime: timestampFromMicros(row.deleted_us) }),
  });
}

/** A product with its row version: what the cache stores. */
export interface VersionedProduct {
  product: Product;
  version: number;
  /** The product's protobuf binary, when it was read from the cache as such. */
  encoded?: Uint8Array;
}

export function toVersioned(row: ProductRow): VersionedProduct {
  return { product: toProduct(row), version: Number(row.version) };
}
