import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProductOrder } from "../../../gen/commerce/catalog/v1/product_pb.js";
import { StockAdjustmentReason } from "../../../gen/commerce/catalog/v1/stock_pb.js";
import {
  type CatalogTestEnv,
  fieldViolations,
  productInput,
  rpcError,
  startCatalog,
} from "../test-support.js";

let t: CatalogTestEnv;
let root: string;
let child: string;
let grandchild: string;
let other: string;
const inTree: string[] = [];

beforeAll(async () => {
  t = await startCatalog();
  const mk = async (slug: string, parentId = "") =>
    (
      await t.catalog.createCategory({
        category: { slug: `${slug}-${t.id}`, name: slug, parentId },
      })
    ).category!.id;
  root = await mk("root");
  child = await mk("child", root);
  grandchild = await mk("grandchild", child);
  other = await mk("other");
  const cats = [root, child, grandchild, other];
  for (let i = 0; i < 48; i++) {
    const categoryId = cats[i % 4]!;
    const { product } = await t.catalog.createProduct({
      product: productInput({
        name: `Item ${String.fromCharCode(97 + (i % 26))}${i}`,
        // Duplicate prices on purpose: the id must break ties.
        price: { amountMinor: BigInt(100 * (i % 5)), currencyCode: i % 6 === 0 ? "USD" : "EUR" },
        categoryId,
        active: i % 7 !== 0,
      }),
    });
    if (categoryId !== other) inTree.push(product!.id);
  }
});
afterAll(async () => {
  await t?.stop();
});

async function walk(order: ProductOrder, insertBetweenPages: boolean) {
  const seen: string[] = [];
  let pageToken = "";
  let pages = 0;
  do {
    const page = await t.catalog.listProducts({
      filter: { categoryId: root },
      orderBy: order,
      pageSize: 5,
      pageToken,
    });
    seen.push(...page.products.map((p) => p.id));
    for (const p of page.products) expect([root, child, grandchild]).toContain(p.categoryId);
    pageToken = page.nextPageToken;
    pages++;
    if (insertBetweenPages) {
      // Concurrent writers: new products land in the same category while we page.
      await Promise.all([
        t.catalog.createProduct({
          product: productInput({ categoryId: grandchild, name: "Aaa new" }),
        }),
        t.catalog.createProduct({
          product: productInput({
            categoryId: root,
            name: "Zzz new",
            price: { amountMinor: 250n, currencyCode: "EUR" },
          }),
        }),
      ]);
    }
  } while (pageToken !== "" && pages < 100);
  return seen;
}

describe("ListProducts", () => {
  it.each([
    ["create time", ProductOrder.CREATE_TIME_DESC],
    ["name", ProductOrder.NAME_ASC],
    ["price asc", ProductOrder.PRICE_ASC],
    ["price desc", ProductOrder.PRICE_DESC],
  ])("walks every page by %s while rows are inserted: no duplicates, no gaps", async (_, order) => {
    const seen = await walk(order, true);
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of inTree) expect(seen).toContain(id);
  });

  it("orders pages consistently (price ascending, id breaking ties)", async () => {
    const { products } = await t.catalog.listProducts({
      orderBy: ProductOrder.PRICE_ASC,
      pageSize: 200,
    });
    for (let i = 1; i < products.length; i++) {
      const [a, b] = [products[i - 1]!, products[i]!];
      const cmp =
        a.price!.amountMinor < b.price!.amountMinor ||
        (a.price!.amountMinor === b.price!.amountMinor && a.id < b.id);
      expect(cmp).toBe(true);
    }
  });

  it("combines filters: category subtree, price range in one currency, active, in stock", async () => {
    const { products } = await t.catalog.listProducts({
      filter: {
        categoryId: child,
        minPrice: { amountMinor: 100n, currencyCode: "EUR" },
        maxPrice: { amountMinor: 300n, currencyCode: "EUR" },
        active: true,
      },
      pageSize: 200,
    });
    expect(products.length).toBeGreaterThan(0);
    for (const p of products) {
      expect([child, grandchild]).toContain(p.categoryId);
      expect(p.price!.currencyCode).toBe("EUR");
      expect(p.price!.amountMinor >= 100n && p.price!.amountMinor <= 300n).toBe(true);
      expect(p.active).toBe(true);
    }
    expect(
      (await t.catalog.listProducts({ filter: { inStockOnly: true }, pageSize: 200 })).products,
    ).toEqual([]);
    const target = products[0]!;
    await t.inventory.adjustStock({
      productId: target.id,
      delta: 1n,
      reason: StockAdjustmentReason.RESTOCK,
      requestId: crypto.randomUUID(),
    });
    const inStock = await t.catalog.listProducts({ filter: { inStockOnly: true }, pageSize: 200 });
    expect(inStock.products.map((p) => p.id)).toEqual([target.id]);
    const deleted = await t.catalog.deleteProduct({ id: target.id });
    expect((await t.catalog.listProducts({ filter: { inStockOnly: true } })).products).toEqual([]);
    expect(deleted.product?.deleteTime).toBeDefined();
  });

  it("clamps page_size 10^9 to 200 and rejects negative sizes", async () => {
    const big = await t.catalog.listProducts({ pageSize: 1_000_000_000 });
    expect(big.products.length).toBeLessThanOrEqual(200);
    expect(big.products.length).toBeGreaterThan(50);
    const err = await rpcError(t.catalog.listProducts({ pageSize: -1 }));
    expect(fieldViolations(err)).toEqual(["page_size"]);
  });

  it("rejects tampered page tokens and tokens from another filter or order", async () => {
    const first = await t.catalog.listProducts({ pageSize: 3 });
    const token = first.nextPageToken;
    expect(token).not.toBe("");
    const [payload, mac] = token.split(".");
    const original = Buffer.from(payload!, "base64url").toString();
    const forged = original.replace(/"k":\["/, '"k":["9');
    expect(forged).not.toBe(original);
    // The first character carries six whole bits of the MAC, so another
    // character always changes it (zeroing the last byte was a no-op 1 in 256).
    const otherMac = `${mac!.startsWith("A") ? "B" : "A"}${mac!.slice(1)}`;
    for (const bad of [
      `${Buffer.from(forged).toString("base64url")}.${mac}`,
      `${payload}.${otherMac}`,
      "garbage",
      "a.b.c",
    ]) {
      const err = await rpcError(t.catalog.listProducts({ pageSize: 3, pageToken: bad }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(fieldViolations(err)).toEqual(["page_token"]);
    }
    const foreign = await rpcError(
      t.catalog.listProducts({ pageSize: 3, pageToken: token, filter: { active: true } }),
    );
    expect(fieldViolations(foreign)).toEqual(["page_token"]);
    const otherOrder = await rpcError(
      t.catalog.listProducts({ pageSize: 3, pageToken: token, orderBy: ProductOrder.NAME_ASC }),
    );
    expect(otherOrder.code).toBe(Code.InvalidArgument);
    const fromSearch = await rpcError(
      t.catalog.searchProducts({ query: "item", pageToken: token }),
    );
    expect(fromSearch.code).toBe(Code.InvalidArgument);
    // The genuine token still works.
    const second = await t.catalog.listProducts({ pageSize: 3, pageToken: token });
    expect(second.products[0]?.id).not.toBe(first.products[0]?.id);
  });

  it("rejects bad filters with field violations", async () => {
    const err = await rpcError(
      t.catalog.listProducts({
        filter: {
          categoryId: "x",
          minPrice: { amountMinor: -1n, currencyCode: "EUR" },
          maxPrice: { amountMinor: 5n, currencyCode: "usd" },
        },
        orderBy: ProductOrder.RELEVANCE,
      }),
    );
    expect(fieldViolations(err).sort()).toEqual(
      [
        "filter.category_id",
        "filter.max_price.currency_code",
        "filter.max_price.currency_code",
        "filter.min_price.amount_minor",
        "order_by",
      ].sort(),
    );
  });
});
