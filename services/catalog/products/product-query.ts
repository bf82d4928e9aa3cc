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

/**
 * The search restricted to names: every word with weight A (the name's
 * weight in the stored vector). Built from letters/digits only, like the
 * prefix term, so to_tsquery sees no operators but the ones added here.
 * undefined when the text has no word at all.
 */
function nameTsquerySql(search: SearchText, param: (value: unknown) => string): string | undefined {
  const words = (search.query.match(WORD) ?? []).map((w) => w.toLowerCase());
  const last = search.prefix ? words.pop() : undefined;
  const parts: string[] = [];
  if (words.length > 0) {
    parts.push(`to_tsquery('english', ${param(words.map((w) => `${w}:A`).join(" & "))})`);
  }
  if (last !== undefined) {
    const typed = param(`${last}:*A`);
    parts.push(`(to_tsquery('simple', ${typed}) || to_tsquery('english', ${typed}))`);
  }
  return parts.length === 0 ? undefined : `(${parts.join(" && ")})`;
}

/**
 * How many matches a RELEVANCE search ranks (see relevanceQuery): the cost
 * of a search is the matches whose rows are read and ranked, so this bounds
 * it however common the words are.
 */
export const DEFAULT_RANK_WINDOW = 200;

export interface BuiltQuery {
  text: string;
  params: unknown[];
  /**
   * Run as a named prepared statement (its text is fixed per filter shape):
   * no parse and, once Postgres settles on a generic plan, no planning.
   */
  prepare: boolean;
}

export function buildProductQuery(options: {
  filter: NormalizedFilter;
  order: SortOrder;
  search?: SearchText;
  cursor?: CursorKeys;
  limit: number;
  /** RELEVANCE only: matches ranked (default DEFAULT_RANK_WINDOW). */
  rankWindow?: number;
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
  if (order === "relevance") {
    if (!search) throw new Error("relevance order needs a search text");
    return relevanceQuery({
      search,
      cursor,
      limit,
      window: options.rankWindow ?? DEFAULT_RANK_WINDOW,
      categoryTree: prefix,
      where,
      params,
      param,
    });
  }
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
  let keyset: (a: string, b: string) => string;
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
  }
  if (cursor) {
    const [a, b] = cursor;
    if (cursor.length !== 2 || typeof b !== "string" || typeof a !== "string") {
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
    return { text, params, prepare: false };
  }
  // A search sorts every match (no index gives its order): pick the page by
  // id and rank first, then read the page's columns. Projected in the sort's
  // input, the columns (jsonb, timestamps as text, lower(name)) cost more
  // than the ranking for a word matching ~2k products.
  const text = `${prefix}select ${PRODUCT_COLUMNS}, lower(p.name) as name_key, r.rank
    from (
      select p.id, ${rank} as rank
      from products p
      where ${where.join("\n        and ")}
      order by ${orderBy}
      limit ${param(limit)}
    ) r
    join products p on p.id = r.id
    order by ${orderBy}`;
  return { text, params, prepare: false };
}

/**
 * RELEVANCE ranks a window of the matches, not all of them. A GIN index
 * yields matches unordered (by storage position), so ranking every match
 * means reading and ranking every matching row: ~3 ms of Postgres time for a
 * word in 2k of 100k products, growing with the catalog. The window:
 *   - up to `window` products whose name holds every word (weight A), in
 *     index order; name hits rank above description hits, so the first page
 *     of a query whose words are in any name starts with name hits, however
 *     many descriptions match too;
 *   - and only when fewer names match: also the first `window` matches of
 *     any kind.
 * Results and pages come from that window (at most 2 × window products);
 * the other orders return every match. Pages are keyset pages (rank, id)
 * over the window, so a token never repeats a product; a full window can
 * shift while products are written (a new row stored before others).
 *
 * Each step is a MATERIALIZED CTE: planned for all its rows (so a LIMIT
 * never tempts the planner into a sequential scan) but run lazily, so a
 * window stops reading rows once full. The tsqueries are built once in
 * `q`: with the statement prepared, a generic plan would otherwise rebuild
 * them per ranked row.
 */
/**
 * The row limit of a prepared search, a literal from a few sizes (callers
 * take the rows they asked for). A literal because Postgres estimates a
 * parameter LIMIT at 10 % of the rows, which made the generic plan look
 * dearer than re-planning every call; a few sizes because each distinct
 * text is one more prepared statement per connection.
 */
function statementLimit(limit: number): number {
  return STATEMENT_LIMITS.find((size) => size >= limit) ?? limit;
}
const STATEMENT_LIMITS = [21, 51, 101];

function relevanceQuery(o: {
  search: SearchText;
  cursor: CursorKeys | undefined;
  limit: number;
  window: number;
  categoryTree: string;
  where: string[];
  params: unknown[];
  param: (value: unknown) => string;
}): BuiltQuery {
  const { param, window } = o;
  if (!Number.isInteger(window) || window < 1) throw new Error("rank window must be >= 1");
  const nameQuery = nameTsquerySql(o.search, param);
  const ctes = o.categoryTree === "" ? [] : [o.categoryTree.replace(/^with recursive /, "").trim()];
  ctes.push(
    `q as materialized (select ${tsquerySql(o.search, param)} as q${nameQuery ? `, ${nameQuery} as n` : ""})`,
  );
  const matches = [...o.where, "p.search @@ q.q"].join("\n        and ");
  const ranked = "select p.id, ts_rank(p.search, q.q) as rank\n      from q, products p";
  ctes.push(`hits as materialized (
      ${ranked}
      where ${matches}
    )`);
  let windowed = `select id, rank from hits limit ${window}`;
  if (nameQuery) {
    // ts_match_vq is the @@ operator as a function: a filter on the rows the
    // GIN scan of q.q yields, not a second index condition (weights are not
    // in the index; as an index condition it doubles the index work).
    ctes.push(`name_hits as materialized (
      ${ranked}
      where ${matches}
        and ts_match_vq(p.search, q.n)
    )`);
    ctes.push(`top_names as materialized (select id, rank from name_hits limit ${window})`);
    windowed = `select id, rank from top_names
      union
      select id, rank from (${windowed}) h
      where (select count(*) from top_names) < ${window}`;
  }
  let keyset = "";
  if (o.cursor) {
    const [a, b] = o.cursor;
    if (o.cursor.length !== 2 || typeof b !== "string" || typeof a !== "number") {
      throw InvalidArgumentError.field("page_token", "page token is invalid: malformed");
    }
    keyset = `where (w.rank, w.id) < (${param(a)}::float8::real, ${param(b)}::uuid)`;
  }
  const text = `with ${o.categoryTree === "" ? "" : "recursive "}${ctes.join(",\n    ")}
    select ${PRODUCT_COLUMNS}, lower(p.name) as name_key, r.rank
    from (
      select w.id, w.rank from (${windowed}) w
      ${keyset}
      order by w.rank desc, w.id desc
      limit ${statementLimit(o.limit)}
    ) r
    join products p on p.id = r.id
    order by r.rank desc, p.id desc`;
  return { text, params: o.params, prepare: true };
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
