import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProductOrder } from "../../../gen/commerce/catalog/v1/product_pb.js";
import {
  type CatalogTestEnv,
  fieldViolations,
  productInput,
  rpcError,
  startCatalog,
} from "../test-support.js";

let t: CatalogTestEnv;
let kitchen: string;
const ids: Record<string, string> = {};

beforeAll(async () => {
  t = await startCatalog();
  kitchen = (
    await t.catalog.createCategory({ category: { slug: `kitchen-${t.id}`, name: "Kitchen" } })
  ).category!.id;
  const make = async (key: string, fields: Record<string, unknown>) => {
    ids[key] = (await t.catalog.createProduct({ product: productInput(fields) })).product!.id;
  };
  await make("nameHit", {
    name: "Copper kettle",
    description: "Boils water on any stove.",
    categoryId: kitchen,
  });
  await make("descHit", {
    name: "Tea set",
    description: "Pairs well with a kettle.",
    categoryId: kitchen,
  });
  await make("elsewhere", {
    name: "Travel kettle",
    description: "Folds flat.",
    price: { amountMinor: 99999n, currencyCode: "EUR" },
  });
  await make("running", { name: "Running jacket", description: "Wind proof." });
  await make("inactive", { name: "Old kettle", description: "Discontinued.", active: false });
  await make("deleted", { name: "Broken kettle", description: "Gone." });
  await t.catalog.deleteProduct({ id: ids.deleted! });
});
afterAll(async () => {
  await t?.stop();
});

const found = (products: { id: string }[]) => products.map((p) => p.id);

describe("SearchProducts", () => {
  it("ranks a name hit above a description hit and never returns deleted products", async () => {
    const { products } = await t.catalog.searchProducts({ query: "kettle" });
    const result = found(products);
    expect(result).not.toContain(ids.deleted);
    expect(result).toContain(ids.descHit);
    expect(result.indexOf(ids.nameHit!)).toBeLessThan(result.indexOf(ids.descHit!));
    expect(result.indexOf(ids.elsewhere!)).toBeLessThan(result.indexOf(ids.descHit!));
  });

  it("stems words ('kettles' finds 'kettle') and combines with filters", async () => {
    const inKitchen = await t.catalog.searchProducts({
      query: "kettles",
      filter: { categoryId: kitchen },
    });
    expect(found(inKitchen.products).sort()).toEqual([ids.nameHit, ids.descHit].sort());
    const cheap = await t.catalog.searchProducts({
      query: "kettle",
      filter: { maxPrice: { amountMinor: 10_000n, currencyCode: "EUR" }, active: true },
    });
    expect(found(cheap.products)).not.toContain(ids.elsewhere);
    expect(found(cheap.products)).not.toContain(ids.inactive);
    expect(found(cheap.products)).toContain(ids.nameHit);
  });

  it("matches the last word as a prefix in type-ahead mode only", async () => {
    expect((await t.catalog.searchProducts({ query: "kett" })).products).toEqual([]);
    const typeAhead = await t.catalog.searchProducts({ query: "copper kett", prefix: true });
    expect(found(typeAhead.products)).toEqual([ids.nameHit]);
    // An unstemmed prefix of an inflected word: "runn" → "Running".
    const runn = await t.catalog.searchProducts({ query: "runn", prefix: true });
    expect(found(runn.products)).toEqual([ids.running]);
  });

  it("treats SQL and tsquery syntax as plain text", async () => {
    for (const query of [
      "'; DROP TABLE products; --",
      "kettle') OR 1=1 --",
      "kettle & !copper | (tea <-> set):*",
      "\\x00 ' \" ; -- /* */",
    ]) {
      const response = await t.catalog.searchProducts({ query, prefix: true });
      expect(Array.isArray(response.products)).toBe(true);
    }
    const [row] = await t.db.sql`select count(*)::int as n from products`;
    expect(row!.n).toBe(6);
    // Operators are words: "kettle & !copper" still finds the copper kettle (the '!' means nothing).
    const ops = await t.catalog.searchProducts({ query: "kettle & !copper" });
    expect(found(ops.products)).toEqual([ids.nameHit]);
  });

  it("pages through relevance-ordered results with tokens bound to the query", async () => {
    const all = found(
      (await t.catalog.searchProducts({ query: "kettle", pageSize: 100 })).products,
    );
    const paged: string[] = [];
    let pageToken = "";
    do {
      const page = await t.catalog.searchProducts({ query: "kettle", pageSize: 1, pageToken });
      paged.push(...found(page.products));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(paged).toEqual(all);
    const first = await t.catalog.searchProducts({ query: "kettle", pageSize: 1 });
    const otherQuery = await rpcError(
      t.catalog.searchProducts({ query: "tea", pageSize: 1, pageToken: first.nextPageToken }),
    );
    expect(otherQuery.code).toBe(Code.InvalidArgument);
    const byPrice = await t.catalog.searchProducts({
      query: "kettle",
      orderBy: ProductOrder.PRICE_DESC,
    });
    expect(byPrice.products[0]?.id).toBe(ids.elsewhere);
    // The page is picked by the sort keys first and read afterwards: the order survives.
    const prices = byPrice.products.map((p) => p.price!.amountMinor);
    expect(prices.length).toBeGreaterThan(2);
    expect(prices).toEqual([...prices].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0)));
    const pagedByPrice: string[] = [];
    pageToken = "";
    do {
      const page = await t.catalog.searchProducts({
        query: "kettle",
        orderBy: ProductOrder.PRICE_DESC,
        pageSize: 1,
        pageToken,
      });
      pagedByPrice.push(...found(page.products));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(pagedByPrice).toEqual(found(byPrice.products));
  });

  it("rejects empty and over-long queries", async () => {
    expect(fieldViolations(await rpcError(t.catalog.searchProducts({ query: "  " })))).toEqual([
      "query",
    ]);
    expect(
      fieldViolations(await rpcError(t.catalog.searchProducts({ query: "a".repeat(201) }))),
    ).toEqual(["query"]);
  });
});

describe("SearchProducts relevance window (CATALOG_SEARCH_RANK_WINDOW=3)", () => {
  let w: CatalogTestEnv;
  const descHits: string[] = [];
  let nameHit: string;
  beforeAll(async () => {
    w = await startCatalog({ CATALOG_SEARCH_RANK_WINDOW: "3" });
    // Stored first: five products that mention the word only in their description.
    for (let i = 0; i < 5; i++) {
      const { product } = await w.catalog.createProduct({
        product: productInput({ name: `Tea set ${i}`, description: "Pairs well with a lantern." }),
      });
      descHits.push(product!.id);
    }
    nameHit = (
      await w.catalog.createProduct({
        product: productInput({ name: "Brass lantern", description: "Warm light." }),
      })
    ).product!.id;
  });
  afterAll(async () => {
    await w?.stop();
  });

  it("ranks name hits above a window of other matches, and pages within it", async () => {
    const { products } = await w.catalog.searchProducts({ query: "lantern", pageSize: 100 });
    const result = found(products);
    // The one name hit, found however many descriptions match, plus 3 matches
    // of any kind (which 3 depends on the scan: storage order with the GIN
    // index at scale, any order in a 6-row table; the name hit may be one).
    expect(result[0]).toBe(nameHit);
    expect(result.length).toBeGreaterThanOrEqual(3);
    expect(result.length).toBeLessThanOrEqual(4);
    for (const id of result.slice(1)) expect(descHits).toContain(id);
    const paged: string[] = [];
    let pageToken = "";
    do {
      const page = await w.catalog.searchProducts({ query: "lantern", pageSize: 1, pageToken });
      paged.push(...found(page.products));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(paged).toEqual(result);
    // Other orders return every match.
    const byPrice = await w.catalog.searchProducts({
      query: "lantern",
      orderBy: ProductOrder.PRICE_ASC,
      pageSize: 100,
    });
    expect(byPrice.products).toHaveLength(6);
  });

  it("with a full window of name hits, ranks only those", async () => {
    const more: string[] = [];
    for (let i = 0; i < 3; i++) {
      more.push(
        (
          await w.catalog.createProduct({
            product: productInput({ name: `Paper lantern ${i}`, description: "Folds flat." }),
          })
        ).product!.id,
      );
    }
    const { products } = await w.catalog.searchProducts({ query: "lantern", pageSize: 100 });
    // Four names match; the window holds three of them and no description hit.
    const result = found(products);
    expect(result).toHaveLength(3);
    for (const id of result) expect([nameHit, ...more]).toContain(id);
    // Type-ahead goes through the same window.
    const typeAhead = await w.catalog.searchProducts({
      query: "lant",
      prefix: true,
      pageSize: 100,
    });
    expect(typeAhead.products).toHaveLength(3);
    for (const id of found(typeAhead.products)) expect([nameHit, ...more]).toContain(id);
  });
});
