import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CatalogTestEnv,
  fieldViolations,
  productInput,
  rpcError,
  startCatalog,
} from "../test-support.js";

let t: CatalogTestEnv;
beforeAll(async () => {
  t = await startCatalog();
});
afterAll(async () => {
  await t?.stop();
});

async function productCount(): Promise<number> {
  const [row] = await t.db
    .sql`select (select count(*) from products)::int + (select count(*) from outbox)::int as n`;
  return row!.n;
}

describe("bad input: INVALID_ARGUMENT with field violations, nothing written", () => {
  it.each([
    [
      "negative price",
      { price: { amountMinor: -1n, currencyCode: "EUR" } },
      ["product.price.amount_minor"],
    ],
    [
      "absurd price",
      { price: { amountMinor: 10n ** 18n, currencyCode: "EUR" } },
      ["product.price.amount_minor"],
    ],
    [
      "unknown currency",
      { price: { amountMinor: 1n, currencyCode: "XYZ" } },
      ["product.price.currency_code"],
    ],
    [
      "lower-case currency",
      { price: { amountMinor: 1n, currencyCode: "eur" } },
      ["product.price.currency_code"],
    ],
    ["missing price", { price: undefined }, ["product.price"]],
    ["1 MB description", { description: "x".repeat(1024 * 1024) }, ["product.description"]],
    ["empty name", { name: "   " }, ["product.name"]],
    ["NUL in name", { name: "bad\u0000name" }, ["product.name"]],
    ["bad SKU", { sku: "has spaces" }, ["product.sku"]],
    ["invalid category UUID", { categoryId: "123" }, ["product.category_id"]],
    [
      "too many attributes",
      { attributes: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, "v"])) },
      ["product.attributes"],
    ],
  ])("CreateProduct with %s", async (_, fields, expected) => {
    const before = await productCount();
    const err = await rpcError(t.catalog.createProduct({ product: productInput(fields) }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(fieldViolations(err)).toEqual(expected);
    expect(await productCount()).toBe(before);
  });

  it("reports every violation of a request at once", async () => {
    const err = await rpcError(
      t.catalog.createProduct({
        product: productInput({
          sku: "",
          name: "",
          price: { amountMinor: -5n, currencyCode: "ZZZ" },
        }),
        requestId: "not-a-uuid",
      }),
    );
    expect(fieldViolations(err).sort()).toEqual(
      [
        "product.name",
        "product.price.amount_minor",
        "product.price.currency_code",
        "product.sku",
        "request_id",
      ].sort(),
    );
  });

  it("an unknown category id (valid UUID) is INVALID_ARGUMENT, not an internal error", async () => {
    const err = await rpcError(
      t.catalog.createProduct({
        product: productInput({ categoryId: "0190a0a0-0000-7000-8000-0000000000ff" }),
      }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(fieldViolations(err)).toEqual(["product.category_id"]);
  });

  it("invalid UUIDs in reads are INVALID_ARGUMENT naming the field", async () => {
    expect(
      fieldViolations(await rpcError(t.catalog.getProduct({ id: "1; drop table products" }))),
    ).toEqual(["id"]);
    expect(
      fieldViolations(
        await rpcError(t.catalog.batchGetProducts({ ids: ["a", crypto.randomUUID()] })),
      ),
    ).toEqual(["ids[0]"]);
    expect(fieldViolations(await rpcError(t.catalog.batchGetProducts({ ids: [] })))).toEqual([
      "ids",
    ]);
    expect(fieldViolations(await rpcError(t.inventory.getStock({ productId: "" })))).toEqual([
      "product_id",
    ]);
    const tooMany = Array.from({ length: 101 }, () => crypto.randomUUID());
    expect(fieldViolations(await rpcError(t.catalog.batchGetProducts({ ids: tooMany })))).toEqual([
      "ids",
    ]);
  });

  it("an update with invalid values changes nothing", async () => {
    const { product } = await t.catalog.createProduct({ product: productInput() });
    const err = await rpcError(
      t.catalog.updateProduct({
        product: {
          id: product!.id,
          price: { amountMinor: -1n, currencyCode: "EUR" },
          description: "y".repeat(10_001),
        },
        updateMask: { paths: ["price", "description"] },
      }),
    );
    expect(fieldViolations(err).sort()).toEqual([
      "product.description",
      "product.price.amount_minor",
    ]);
    const { product: after } = await t.catalog.getProduct({ id: product!.id });
    expect(after).toEqual(product);
  });
});
