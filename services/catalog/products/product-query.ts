import type { ProductFilter } from "../../../gen/commerce/catalog/v1/product_pb.js";
import { ProductOrder } from "../../../gen/commerce/catalog/v1/product_pb.js";
import { InvalidArgumentError } from "../../../platform/errors/domain-errors.js";
import type { CursorKeys } from "../domain/page-token.js";
import { optionalUuid, type Violations } from "../domain/validation.js";
import { checkAmount, checkCurrency } from "./product-fields.js";
import { PRODUCT_COLUMNS, type ProductRow } from "./product-row.js";

/**
 * ListProducts and SearchProducts as one query builder: filters, an optional
 * full-text condition, a total sort order (the id breaks ties) and a keyset
 * condition "after the last row of the previous page". No OFFSET: a page
 * costs the same at the start and deep into the list, and rows inserted
 * meanwhile never shift later pages.
 */
export interface NormalizedFilter {
  categoryId: string | undefined;
  currency: string | undefined;
  minPrice: bigint | undefined;
  maxPrice: bigint | undefined;
  inStockOnly: boolean;
  active: boolean | undefined;
}

export type SortOrder = "create_time_desc" | "name_asc" | "price_asc" | "price_desc" | "relevance";

export interface SearchText {
  query: string;
  prefix: boolean;
}

export interface QueryRow extends ProductRow {
  name_key: string;
  rank?: number;
}

export function readFilter(
  v: Violations,
  filter: ProductFilter | undefined,
  field: string,
): NormalizedFilter {
  const out: NormalizedFilter = {
    categoryId: undefined,
    currency: undefined,
    minPrice: undefined,
    maxPrice: undefined,
    inStockOnly: filter?.inStockOnly ?? false,
    active: filter?.active,
  };
  if (!filter) return out;
  out.categoryId = optionalUuid(v, `${field}.category_id`, filter.categoryId);
  for (const [key, money] of [
    ["min_price", filter.minPrice],
    ["max_price", filter.maxPrice],
  ] as const) {
    if (!money) continue;
    checkCurrency(v, `${field}.${key}.currency_code`, money.currencyCode);
    checkAmount(v, `${field}.${key}.amount_minor`, money.amountMinor);
    if (out.currency !== undefined && out.currency !== money.currencyCode) {
      v.add(`${field}.${key}.currency_code`, "must be the same currency as min_price");
    }
    out.currency = money.currencyCode;
    if (key === "min_price") out.minPrice = money.amountMinor;
    else out.maxPrice = money.amountMinor;
  }
  if (out.minPrice !== undefined && out.maxPrice !== undefined && out.minPrice > out.maxPrice) {
    v.add(`${field}.max_price.amount_minor`, "must not be below min_price");
  }
  return out;
}

export function readOrder(
  v: Violations,
  order: ProductOrder,
  field: string,
  fallback: SortOrder,
  allowRelevance: boolean,
): SortOrder {
  switch (order) {
    case ProductOrder.UNSPECIFIED:
      return fallback;
    case ProductOrder.CREATE_TIME_DESC:
      return "create_time_desc";
    case ProductOrder.NAME_ASC:
      return "name_asc";
    case ProductOrder.PRICE_ASC:
      return "price_asc";
    case ProductOrder.PRICE_DESC:
      return "price_desc";
    case ProductOrder.RELEVANCE:
      if (!allowRelevance) v.add(field, "RELEVANCE is only valid for SearchProducts");
      return "relevance";
    default:
      v.add(field, "is not a known order");
      return fallback;
  }
}

/** Page size: 0 → default, above max → max (documented in the contract), negative → error. */
export function readPageSize(
  v: Violations,
  field: string,
  size: number,
  limits: { default: number; max: number },
): number {
  if (size < 0) {
    v.add(field, "must not be negative");
    return limits.default;
  }
  if (size === 0) return limits.default;
  return Math.min(size, limits.max);
}

/** What a page token is bound to: the same query must come back with it. */
export function queryScope(
  method: string,
  filter: NormalizedFilter,
  order: SortOrder,
  search?: SearchText,
): string {
  return JSON.stringify([
    method,
    filter.categoryId ?? null,
    filter.currency ?? null,
    filter.minPrice?.toString() ?? null,
    filter.maxPrice?.toString() ?? null,
    filter.inStockOnly,
    filter.active ?? null,
    order,
    search?.query ?? null,
    search?.prefix ?? null,
  ]);
}

const WORD = /[\p{L}\p{N}]+/gu;

/**
 * The search text only ever reaches Postgres as a bound parameter of
 * plainto_tsquery (which has no operators), and in prefix mode as one
 * `<word>:*` term whose word is letters and digits only — nothing a user
 * types can change the query's meaning.
 */
function tsquerySql(search: SearchText, param: (value: unknown) => string): string {
  if (!search.prefix) return `plainto_tsquery('english', ${param(search.query)})`;
  const words = search.query.match(WORD) ?? [];
  const last = words.pop();
  if (last === undefined) return `plainto_tsquery('english', ${param(search.query)})`;
  const prefix = param(`${last.toLowerCase()}:*`);
  const typed = `(to_tsquery('simple', ${prefix}) || to_tsquery('english', ${prefix}))`;
  // No head words: plainto_tsquery('') would only add a NOTICE ("no lexemes").
  if (words.length === 0) return typed;
  return `(plainto_tsquery('english', ${param(words.join(" "))}) && ${typed})`;
}

export interface BuiltQuery {
  text: string;
  params: unknown[];
}

export function buildProductQuery(options: {
  filter: NormalizedFilter;
  order: SortOrder;
  search?: SearchText;
  cursor?: CursorKeys;
  limit: number;
}): BuiltQuery {
  const { filter, order, search, cursor, limit } = options;
  const params: unknown[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const where = ["p.deleted_at is null"];
  let prefix = "";
  if (filter.categoryId !== undefined) {
    prefix = `with recursive category_tree(id) as (
      select id from categories where id = ${param(filter.categoryId)}::uuid
      union
      select c.id from categories c join category_tree t on c.parent_id = t.id
    ) `;
    where.push("p.category_id in (select id from category_tree)");
  }
  if (filter.currency !== undefined) where.push(`p.currency = ${param(filter.currency)}`);
  if (filter.minPrice !== undefined)
    where.push(`p.price_minor >= ${param(filter.minPrice.toString())}::int8`);
  if (filter.maxPrice !== undefined)
    where.push(`p.price_minor <= ${param(filter.maxPrice.toString())}::int8`);
  if (filter.inStockOnly) {
    where.push(
      "exists (select 1 from stock s where s.product_id = p.id and s.on_hand > s.reserved)",
    );
  }
  if (filter.active !== undefined) where.push(`p.active = ${param(filter.active)}`);
  let rank = "";
  if (search) {
    // Inline on purpose: the tsquery functions are immutable, so with the
    // parameters bound (unnamed statement, custom plan) the planner folds the
    // tsquery into a constant once instead of building it per ranked row.
    const tsq = tsquerySql(search, param);
    where.push(`p.search @@ ${tsq}`);
    rank = `ts_rank(p.search, ${tsq})`;
  }
  let orderBy: string;
  let keyset: ((a: string, b: string) => string) | undefined;
  switch (order) {
    case "create_time_desc":
      orderBy = "p.created_at desc, p.id desc";
      keyset = (a, b) =>
        `(p.created_at, p.id) < (timestamptz 'epoch' + ${a}::int8 * interval '1 microsecond', ${b}::uuid)`;
      break;
    case "name_asc":
      orderBy = `lower(p.name) collate "C", p.id`;
      keyset = (a, b) => `(lower(p.name) collate "C", p.id) > (${a}::text collate "C", ${b}::uuid)`;
      break;
    case "price_asc":
      orderBy = "p.price_minor, p.id";
      keyset = (a, b) => `(p.price_minor, p.id) > (${a}::int8, ${b}::uuid)`;
      break;
    case "price_desc":
      orderBy = "p.price_minor desc, p.id desc";
      keyset = (a, b) => `(p.price_minor, p.id) < (${a}::int8, ${b}::uuid)`;
      break;
    case "relevance":
      if (!search) throw new Error("relevance order needs a search text");
      orderBy = `${rank} desc, p.id desc`;
      keyset = (a, b) => `(${rank}, p.id) < (${a}::float8::real, ${b}::uuid)`;
      break;
  }
  if (cursor) {
    const [a, b] = cursor;
    const numeric = order === "relevance";
    if (
      cursor.length !== 2 ||
      typeof b !== "string" ||
      typeof a !== (numeric ? "number" : "string")
    ) {
      throw InvalidArgumentError.field("page_token", "page token is invalid: malformed");
    }
    where.push(keyset(param(a), param(b)));
  }
  if (!search) {
    const text = `${prefix}select ${PRODUCT_COLUMNS}, lower(p.name) as name_key
    from products p
    where ${where.join("\n      and ")}
    order by ${orderBy}
    limit ${param(limit)}`;
    return { text, params };
  }
  // A search sorts every match (no index gives its order): pick the page by
  // id and rank first, then read the page's columns. Projected in the sort's
  // input, the columns (jsonb, timestamps as text, lower(name)) cost more
  // than the ranking for a word matching ~2k products.
  const outerOrder = order === "relevance" ? "r.rank desc, p.id desc" : orderBy;
  const text = `${prefix}select ${PRODUCT_COLUMNS}, lower(p.name) as name_key, r.rank
    from (
      select p.id, ${rank} as rank
      from products p
      where ${where.join("\n        and ")}
      order by ${orderBy}
      limit ${param(limit)}
    ) r
    join products p on p.id = r.id
    order by ${outerOrder}`;
  return { text, params };
}

export function cursorOf(row: QueryRow, order: SortOrder): CursorKeys {
  switch (order) {
    case "create_time_desc":
      return [row.created_us, row.id];
    case "name_asc":
      return [row.name_key, row.id];
    case "price_asc":
    case "price_desc":
      return [row.price_minor, row.id];
    case "relevance":
      return [row.rank ?? 0, row.id];
  }
}
