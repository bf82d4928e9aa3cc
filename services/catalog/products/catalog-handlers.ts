import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Sql } from "postgres";
import { v7 as uuidv7 } from "uuid";
import {
  type CatalogService,
  CreateCategoryResponseSchema,
  CreateProductResponseSchema,
  type GetProductResponse,
  GetProductResponseSchema,
  type ListProductsResponse,
  ListProductsResponseSchema,
  SearchProductsResponseSchema,
} from "../../../gen/commerce/catalog/v1/catalog_service_pb.js";
import { type Product, ProductSchema } from "../../../gen/commerce/catalog/v1/product_pb.js";
import type { CacheAside } from "../../../platform/cache/cache-aside.js";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from "../../../platform/errors/domain-errors.js";
import {
  singleMessageFieldEncoding,
  withKnownEncoding,
} from "../../../platform/server/unary-call.js";
import { claimRequest, requestHash, storeResponse } from "../domain/idempotency.js";
import type { PageTokens } from "../domain/page-token.js";
import { checkText, optionalUuid, requireUuid, Violations } from "../domain/validation.js";
import type { CatalogEvents } from "../events/catalog-events.js";
import { findCategory, insertCategory, listCategories, toCategory } from "./category-store.js";
import {
  MASK_PATHS,
  OUTPUT_ONLY_PATHS,
  type ProductField,
  type ProductFields,
  readProductFields,
} from "./product-fields.js";
import {
  buildProductQuery,
  cursorOf,
  type NormalizedFilter,
  type QueryRow,
  queryScope,
  readFilter,
  readOrder,
  readPageSize,
  type SearchText,
  type SortOrder,
} from "./product-query.js";
import { toProduct, toVersioned, type VersionedProduct } from "./product-row.js";
import {
  fieldsOf,
  findProduct,
  findProducts,
  insertProduct,
  liveProductWithSku,
  lockProduct,
  setDeleted,
  translateWriteError,
  writeProduct,
} from "./product-store.js";

/** Page sizes as documented in catalog_service.proto. */
export const PAGE_SIZES = {
  products: { default: 50, max: 200 },
  search: { default: 20, max: 100 },
  categories: { default: 100, max: 500 },
} as const;
export const MAX_BATCH_GET = 100;
const MAX_QUERY_LENGTH = 200;

export interface CatalogDeps {
  /** Primary: writes and reads-after-write. */
  sql: Sql;
  /** Replica when configured, else the primary: plain reads. */
  readSql: Sql;
  events: CatalogEvents;
  cache: CacheAside<VersionedProduct>;
  tokens: PageTokens;
  /** Matches a RELEVANCE search ranks (product-query.ts); default DEFAULT_RANK_WINDOW. */
  searchRankWindow?: number;
}

const SLUG = /^[a-z0-9-]{1,100}$/;

/**
 * Concurrent reads of one product share one cache read (single flight), so
 * they share one answer too; when the product came from the cache as bytes,
 * the binary paths send those bytes instead of encoding it per call.
 */
const productResponses = new WeakMap<VersionedProduct, GetProductResponse>();
const PRODUCT_FIELD = GetProductResponseSchema.field.product.number;

function productResponse(found: VersionedProduct): GetProductResponse {
  let response = productResponses.get(found);
  if (response === undefined) {
    response = create(GetProductResponseSchema, { product: found.product });
    if (found.encoded) {
      withKnownEncoding(response, singleMessageFieldEncoding(PRODUCT_FIELD, found.encoded));
    }
    productResponses.set(found, response);
  }
  return response;
}

export function createCatalogHandlers(deps: CatalogDeps): ServiceImpl<typeof CatalogService> {
  const { sql, readSql, events, cache, tokens } = deps;

  const loadOne = async (id: string) => {
    const row = await findProduct(readSql, id);
    return row ? toVersioned(row) : undefined;
  };
  const loadMany = async (ids: string[]) => {
    const rows = await findProducts(readSql, ids);
    return new Map(rows.map((row) => [row.id, toVersioned(row)]));
  };
  /** After commit, so a reader cannot re-cache the old row from a not-yet-committed state. */
  const invalidate = (product: Product, version: number) => cache.invalidate(product.id, version);

  async function queryProducts(options: {
    method: string;
    filter: NormalizedFilter;
    order: SortOrder;
    search?: SearchText;
    pageSize: number;
    pageToken: string;
  }): Promise<{ products: Product[]; nextPageToken: string }> {
    const scope = queryScope(options.method, options.filter, options.order, options.search);
    const cursor = tokens.decode(scope, options.pageToken);
    const query = buildProductQuery({
      filter: options.filter,
      order: options.order,
      ...(options.search ? { search: options.search } : {}),
      ...(cursor ? { cursor } : {}),
      limit: options.pageSize + 1,
      ...(deps.searchRankWindow ? { rankWindow: deps.searchRankWindow } : {}),
    });
    const rows = await readSql.unsafe<QueryRow[]>(query.text, query.params as string[], {
      prepare: query.prepare,
    });
    const page = rows.slice(0, options.pageSize);
    const last = page[page.length - 1];
    return {
      products: page.map(toProduct),
      nextPageToken:
        rows.length > options.pageSize && last
          ? tokens.encode(scope, cursorOf(last, options.order))
          : "",
    };
  }

  return {
    async createCategory(req) {
      const v = new Violations();
      const c = req.category;
      if (!c) v.add("category", "is required");
      const slug = c?.slug ?? "";
      if (!SLUG.test(slug)) v.add("category.slug", "must be 1 to 100 characters of a-z 0-9 -");
      const name = (c?.name ?? "").trim();
      checkText(v, "category.name", name, { min: 1, max: 200 });
      checkText(v, "category.description", c?.description ?? "", { min: 0, max: 10_000 });
      const parentId = optionalUuid(v, "category.parent_id", c?.parentId ?? "") ?? null;
      const requestId = optionalUuid(v, "request_id", req.requestId);
      v.throwIfAny();
      const fields = { parentId, slug, name, description: c?.description ?? "" };
      return sql.begin(async (tx) => {
        if (requestId) {
          const earlier = await claimRequest(tx, "CreateCategory", requestId, requestHash(fields));
          if (earlier) return fromBinary(CreateCategoryResponseSchema, earlier);
        }
        const row = await insertCategory(tx, uuidv7(), fields);
        const response = create(CreateCategoryResponseSchema, { category: toCategory(row) });
        if (requestId)
          await storeResponse(
            tx,
            "CreateCategory",
            requestId,
            toBinary(CreateCategoryResponseSchema, response),
          );
        return response;
      });
    },

    async getCategory(req) {
      const v = new Violations();
      const id = requireUuid(v, "id", req.id);
      v.throwIfAny();
      const row = await findCategory(readSql, id);
      if (!row) throw new NotFoundError("category", id, "commerce.catalog.v1.Category");
      return { category: toCategory(row) };
    },

    async listCategories(req) {
      const v = new Violations();
      const pageSize = readPageSize(v, "page_size", req.pageSize, PAGE_SIZES.categories);
      const parentId = optionalUuid(v, "parent_id", req.parentId);
      v.throwIfAny();
      const scope = JSON.stringify(["ListCategories", parentId ?? null]);
      const cursor = tokens.decode(scope, req.pageToken);
      if (cursor && (cursor.length !== 1 || typeof cursor[0] !== "string")) {
        throw InvalidArgumentError.field("page_token", "page token is invalid: malformed");
      }
      const rows = await listCategories(readSql, {
        parentId,
        afterSlug: cursor?.[0] as string | undefined,
        limit: pageSize + 1,
      });
      const page = rows.slice(0, pageSize);
      const last = page[page.length - 1];
      return {
        categories: page.map(toCategory),
        nextPageToken: rows.length > pageSize && last ? tokens.encode(scope, [last.slug]) : "",
      };
    },

    async createProduct(req) {
      const v = new Violations();
      if (!req.product) v.add("product", "is required");
      const fields = readProductFields(
        v,
        req.product ?? create(ProductSchema),
        "product",
      ) as ProductFields;
      const requestId = optionalUuid(v, "request_id", req.requestId);
      v.throwIfAny();
      return sql.begin(async (tx) => {
        if (requestId) {
          const earlier = await claimRequest(tx, "CreateProduct", requestId, requestHash(fields));
          if (earlier) return fromBinary(CreateProductResponseSchema, earlier);
        }
        const row = await insertProduct(tx, uuidv7(), fields);
        const product = toProduct(row);
        await events.append(tx, [events.productCreated(product)]);
        const response = create(CreateProductResponseSchema, { product });
        if (requestId)
          await storeResponse(
            tx,
            "CreateProduct",
            requestId,
            toBinary(CreateProductResponseSchema, response),
          );
        return response;
      });
    },

    async getProduct(req) {
      const v = new Violations();
      const id = requireUuid(v, "id", req.id);
      v.throwIfAny();
      const found = await cache.get(id, () => loadOne(id));
      if (!found) throw new NotFoundError("product", id, "commerce.catalog.v1.Product");
      return productResponse(found);
    },

    async batchGetProducts(req) {
      const v = new Violations();
      if (req.ids.length === 0) v.add("ids", "is required");
      if (req.ids.length > MAX_BATCH_GET) v.add("ids", `must have at most ${MAX_BATCH_GET} ids`);
      const ids = req.ids
        .slice(0, MAX_BATCH_GET + 1)
        .map((id, i) => requireUuid(v, `ids[${i}]`, id));
      v.throwIfAny();
      const found = await cache.getMany(ids, loadMany);
      const products: Product[] = [];
      for (const id of ids) {
        const entry = found.get(id);
        if (!entry) throw new NotFoundError("product", id, "commerce.catalog.v1.Product");
        products.push(entry.product);
      }
      return { products };
    },

    async listProducts(req) {
      const v = new Violations();
      const pageSize = readPageSize(v, "page_size", req.pageSize, PAGE_SIZES.products);
      const filter = readFilter(v, req.filter, "filter");
      const order = readOrder(v, req.orderBy, "order_by", "create_time_desc", false);
      v.throwIfAny();
      const page = await queryProducts({
        method: "ListProducts",
        filter,
        order,
        pageSize,
        pageToken: req.pageToken,
      });
      return create(ListProductsResponseSchema, page) as ListProductsResponse;
    },

    async searchProducts(req) {
      const v = new Violations();
      const query = req.query.trim();
      checkText(v, "query", query, { min: 1, max: MAX_QUERY_LENGTH });
      const pageSize = readPageSize(v, "page_size", req.pageSize, PAGE_SIZES.search);
      const filter = readFilter(v, req.filter, "filter");
      const order = readOrder(v, req.orderBy, "order_by", "relevance", true);
      v.throwIfAny();
      const page = await queryProducts({
        method: "SearchProducts",
        filter,
        order,
        search: { query, prefix: req.prefix },
        pageSize,
        pageToken: req.pageToken,
      });
      return create(SearchProductsResponseSchema, page);
    },

    async updateProduct(req) {
      const v = new Violations();
      const id = requireUuid(v, "product.id", req.product?.id ?? "");
      const paths = req.updateMask?.paths ?? [];
      if (paths.length === 0) v.add("update_mask", "is required and must name at least one field");
      const only = new Set<ProductField>();
      for (const path of paths) {
        const fields = MASK_PATHS[path];
        if (fields) for (const f of fields) only.add(f);
        else if (OUTPUT_ONLY_PATHS.has(path)) v.add("update_mask", `"${path}" is output only`);
        else v.add("update_mask", `"${path}" is not a field of Product that can be updated`);
      }
      const changes =
        only.size > 0 && req.product ? readProductFields(v, req.product, "product", only) : {};
      v.throwIfAny();
      const result = await sql.begin(async (tx) => {
        const row = await lockProduct(tx, id);
        if (!row || row.deleted_us !== null)
          throw new NotFoundError("product", id, "commerce.catalog.v1.Product");
        const before = fieldsOf(row);
        const after: ProductFields = { ...before, ...changes };
        const changed = changedPaths(before, after);
        if (changed.length === 0) return { row, changed };
        const updated = await writeProduct(tx, id, after);
        await events.append(tx, [events.productUpdated(toProduct(updated), changed)]);
        return { row: updated, changed };
      });
      const versioned = toVersioned(result.row);
      if (result.changed.length > 0) await invalidate(versioned.product, versioned.version);
      return { product: versioned.product };
    },

    async deleteProduct(req) {
      const v = new Violations();
      const id = requireUuid(v, "id", req.id);
      v.throwIfAny();
      const row = await sql.begin(async (tx) => {
        const current = await lockProduct(tx, id);
        if (!current || current.deleted_us !== null)
          throw new NotFoundError("product", id, "commerce.catalog.v1.Product");
        const deleted = await setDeleted(tx, id, true);
        await events.append(tx, [events.productDeleted(toProduct(deleted))]);
        return deleted;
      });
      const versioned = toVersioned(row);
      await invalidate(versioned.product, versioned.version);
      return { product: versioned.product };
    },

    async undeleteProduct(req) {
      const v = new Violations();
      const id = requireUuid(v, "id", req.id);
      v.throwIfAny();
      const row = await sql.begin(async (tx) => {
        const current = await lockProduct(tx, id);
        if (!current) throw new NotFoundError("product", id, "commerce.catalog.v1.Product");
        if (current.deleted_us === null) {
          throw new FailedPreconditionError("product is not deleted", "PRODUCT_NOT_DELETED", {
            product_id: id,
          });
        }
        const holder = await liveProductWithSku(tx, current.sku);
        if (holder) {
          throw new AlreadyExistsError("a live product now uses this product's SKU", "SKU_TAKEN", {
            sku: current.sku,
            conflicting_product_id: holder,
          });
        }
        let restored: Awaited<ReturnType<typeof setDeleted>>;
        try {
          restored = await setDeleted(tx, id, false);
        } catch (error) {
          // A product created concurrently took the SKU between the check and the update.
          translateWriteError(error, { sku: current.sku });
        }
        await events.append(tx, [events.productUndeleted(toProduct(restored))]);
        return restored;
      });
      const versioned = toVersioned(row);
      await invalidate(versioned.product, versioned.version);
      return { product: versioned.product };
    },
  };
}

/** Proto field names of the fields that differ (for ProductUpdated.changed_fields). */
export function changedPaths(before: ProductFields, after: ProductFields): string[] {
  const out: string[] = [];
  if (before.sku !== after.sku) out.push("sku");
  if (before.name !== after.name) out.push("name");
  if (before.description !== after.description) out.push("description");
  if (before.priceMinor !== after.priceMinor || before.currency !== after.currency)
    out.push("price");
  if (before.categoryId !== after.categoryId) out.push("category_id");
  if (!sameAttributes(before.attributes, after.attributes)) out.push("attributes");
  if (before.active !== after.active) out.push("active");
  return out;
}

function sameAttributes(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}
