import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResourceInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
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

describe("products: create, get, update with a FieldMask, delete, undelete", () => {
  it("creates a product with a UUIDv7 id, zero stock and a ProductCreated outbox row", async () => {
    const { product } = await t.catalog.createProduct({ product: productInput() });
    expect(product?.id).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(product?.price?.amountMinor).toBe(4999n);
    expect(product?.attributes).toEqual({ color: "red" });
    const [stored] = await t.db
      .sql`select jsonb_typeof(attributes) as type, attributes->>'color' as color from products where id = ${product!.id}`;
    expect(stored).toEqual({ type: "object", color: "red" });
    expect(product?.createTime).toBeDefined();
    const { stock } = await t.inventory.getStock({ productId: product!.id });
    expect(stock?.onHand).toBe(0n);
    const rows = await t.db
      .sql`select subject, aggregate_seq from outbox where aggregate_id = ${product!.id}`;
    expect(rows.map((r) => r.subject)).toEqual([`${t.env.CATALOG_EVENT_DOMAIN}.product.created`]);
    const got = await t.catalog.getProduct({ id: product!.id });
    expect(got.product).toEqual(product);
  });

  it("updates only the fields named in the mask and records what changed", async () => {
    const { product } = await t.catalog.createProduct({ product: productInput() });
    const { product: updated } = await t.catalog.updateProduct({
      product: {
        id: product!.id,
        name: "Renamed",
        description: "ignored: not in mask",
        price: { amountMinor: 1n, currencyCode: "USD" },
      },
      updateMask: { paths: ["name", "price"] },
    });
    expect(updated?.name).toBe("Renamed");
    expect(updated?.description).toBe(product!.description);
    expect(updated?.price).toMatchObject({ amountMinor: 1n, currencyCode: "USD" });
    expect(updated?.attributes).toEqual(product!.attributes);
    const [event] = await t.db
      .sql`select payload, aggregate_seq from outbox where aggregate_id = ${product!.id} and subject like '%.updated'`;
    expect(Number(event!.aggregate_seq)).toBe(2);
    const [row] = await t.db.sql`select version from products where id = ${product!.id}`;
    expect(Number(row!.version)).toBe(2);
    // The same update again changes nothing: no new version, no new event.
    await t.catalog.updateProduct({
      product: { id: product!.id, name: "Renamed" },
      updateMask: { paths: ["name"] },
    });
    const [again] = await t.db.sql`select version from products where id = ${product!.id}`;
    expect(Number(again!.version)).toBe(2);
  });

  it("rejects output-only and unknown mask paths with field violations", async () => {
    const { product } = await t.catalog.createProduct({ product: productInput() });
    const err = await rpcError(
      t.catalog.updateProduct({
        product: { id: product!.id },
        updateMask: { paths: ["create_time", "colour"] },
      }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(fieldViolations(err)).toEqual(["update_mask", "update_mask"]);
    const empty = await rpcError(
      t.catalog.updateProduct({ product: { id: product!.id }, updateMask: { paths: [] } }),
    );
    expect(empty.code).toBe(Code.InvalidArgument);
  });

  it("SKU is unique among live products only; a deleted product frees it", async () => {
    const input = productInput();
    const { product: first } = await t.catalog.createProduct({ product: input });
    const dup = await rpcError(t.catalog.createProduct({ product: { ...input } }));
    expect(dup.code).toBe(Code.AlreadyExists);
    const { product: deleted } = await t.catalog.deleteProduct({ id: first!.id });
    expect(deleted?.deleteTime).toBeDefined();
    const { product: second } = await t.catalog.createProduct({ product: { ...input } });
    expect(second?.sku).toBe(input.sku);
    // Deleted products stay readable by id, with delete_time.
    const { product: stillThere } = await t.catalog.getProduct({ id: first!.id });
    expect(stillThere?.deleteTime).toBeDefined();
    // Deleting again: NOT_FOUND; updating a deleted product: NOT_FOUND.
    expect((await rpcError(t.catalog.deleteProduct({ id: first!.id }))).code).toBe(Code.NotFound);
    expect(
      (
        await rpcError(
          t.catalog.updateProduct({
            product: { id: first!.id, name: "x" },
            updateMask: { paths: ["name"] },
          }),
        )
      ).code,
    ).toBe(Code.NotFound);
  });

  it("undelete reports a SKU conflict and changes nothing; succeeds once the SKU is free", async () => {
    const input = productInput();
    const { product: old } = await t.catalog.createProduct({ product: input });
    await t.catalog.deleteProduct({ id: old!.id });
    const { product: taker } = await t.catalog.createProduct({ product: { ...input } });
    const conflict = await rpcError(t.catalog.undeleteProduct({ id: old!.id }));
    expect(conflict.code).toBe(Code.AlreadyExists);
    expect(conflict.message).toContain("SKU");
    const { product: unchanged } = await t.catalog.getProduct({ id: old!.id });
    expect(unchanged?.deleteTime).toBeDefined();
    const live = await rpcError(t.catalog.undeleteProduct({ id: taker!.id }));
    expect(live.code).toBe(Code.FailedPrecondition);
    await t.catalog.deleteProduct({ id: taker!.id });
    const { product: restored } = await t.catalog.undeleteProduct({ id: old!.id });
    expect(restored?.deleteTime).toBeUndefined();
    const subjects = await t.db
      .sql`select subject from outbox where aggregate_id = ${old!.id} order by aggregate_seq`;
    expect(subjects.map((r) => String(r.subject).split(".").pop())).toEqual([
      "created",
      "deleted",
      "undeleted",
    ]);
  });

  it("CreateProduct is idempotent on request_id; a different body with the same key fails", async () => {
    const requestId = crypto.randomUUID();
    const input = productInput();
    const a = await t.catalog.createProduct({ product: input, requestId });
    const b = await t.catalog.createProduct({ product: input, requestId });
    expect(b.product?.id).toBe(a.product?.id);
    const c = await rpcError(
      t.catalog.createProduct({ product: { ...input, name: "Other" }, requestId }),
    );
    expect(c.code).toBe(Code.FailedPrecondition);
  });

  it("BatchGet returns products in request order and names the first unknown id", async () => {
    const { product: a } = await t.catalog.createProduct({ product: productInput() });
    const { product: b } = await t.catalog.createProduct({ product: productInput() });
    const { products } = await t.catalog.batchGetProducts({ ids: [b!.id, a!.id, b!.id] });
    expect(products.map((p) => p.id)).toEqual([b!.id, a!.id, b!.id]);
    const unknown = "0190a0a0-0000-7000-8000-000000000001";
    const err = await rpcError(t.catalog.batchGetProducts({ ids: [a!.id, unknown] }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.findDetails(ResourceInfoSchema)[0]?.resourceName).toBe(unknown);
  });

  it("categories: unique slug, unknown parent rejected, children listed", async () => {
    const { category: root } = await t.catalog.createCategory({
      category: { slug: "shoes", name: "Shoes" },
    });
    const { category: child } = await t.catalog.createCategory({
      category: { slug: "running-shoes", name: "Running shoes", parentId: root!.id },
    });
    expect(
      (await rpcError(t.catalog.createCategory({ category: { slug: "shoes", name: "Again" } })))
        .code,
    ).toBe(Code.AlreadyExists);
    const badParent = await rpcError(
      t.catalog.createCategory({
        category: { slug: "x", name: "X", parentId: "0190a0a0-0000-7000-8000-000000000002" },
      }),
    );
    expect(badParent.code).toBe(Code.InvalidArgument);
    const { categories } = await t.catalog.listCategories({ parentId: root!.id });
    expect(categories.map((c) => c.id)).toEqual([child!.id]);
    const { category } = await t.catalog.getCategory({ id: child!.id });
    expect(category?.parentId).toBe(root!.id);
  });
});
