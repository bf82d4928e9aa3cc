import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTcpProxy, type TcpProxy } from "../../../platform/testing/tcp-proxy.js";
import { createCatalogEvents } from "../events/catalog-events.js";
import { type CatalogTestEnv, productInput, startCatalog, waitFor } from "../test-support.js";
import { toProduct } from "./product-row.js";
import { findProduct } from "./product-store.js";

let t: CatalogTestEnv;
beforeAll(async () => {
  t = await startCatalog();
});
afterAll(async () => {
  await t?.stop();
});

/** Changes a row behind the service's back: only a cached copy can still show the old name. */
async function renameInDatabase(id: string, name: string) {
  await t.db.sql`update products set name = ${name} where id = ${id}`;
}

async function metric(url: string, line: RegExp): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const found = text.split("\n").find((l) => line.test(l));
  return found ? Number(found.split(" ").pop()) : 0;
}

describe("product cache (Redis cache-aside)", () => {
  it("serves the second Get from Redis and shows an update on the next Get", async () => {
    const { product } = await t.catalog.createProduct({
      product: productInput({ name: "Cached lamp" }),
    });
    const id = product!.id;
    await t.catalog.getProduct({ id });
    expect(await t.redis.exists(`${t.keyPrefix}product:${id}`)).toBe(1);
    await renameInDatabase(id, "Changed behind the cache");
    const hit = await t.catalog.getProduct({ id });
    // A hit answers the cached bytes as they are: the whole product survives.
    expect(hit.product).toEqual(product);
    await t.catalog.updateProduct({
      product: { id, name: "Updated lamp" },
      updateMask: { paths: ["name"] },
    });
    expect((await t.catalog.getProduct({ id })).product?.name).toBe("Updated lamp");
    expect(await metric(t.url, /^cache_hit_ratio\{.*cache="product"/)).toBeGreaterThan(0);
  });

  it("BatchGet uses the same cache and sees deletes", async () => {
    const a = (await t.catalog.createProduct({ product: productInput({ name: "A" }) })).product!.id;
    const b = (await t.catalog.createProduct({ product: productInput({ name: "B" }) })).product!.id;
    await t.catalog.batchGetProducts({ ids: [a, b] });
    await renameInDatabase(a, "stale?");
    expect((await t.catalog.batchGetProducts({ ids: [a] })).products[0]?.name).toBe("A");
    await t.catalog.deleteProduct({ id: a });
    const [deleted] = (await t.catalog.batchGetProducts({ ids: [a] })).products;
    expect(deleted?.deleteTime).toBeDefined();
    expect((await t.catalog.getProduct({ id: a })).product?.deleteTime).toBeDefined();
  });

  it("drops entries when product events arrive from another writer (e.g. another replica or the import)", async () => {
    const { product } = await t.catalog.createProduct({
      product: productInput({ name: "Event lamp" }),
    });
    const id = product!.id;
    await t.catalog.getProduct({ id });
    // Another writer: same transaction shape as the service (row + version + outbox event).
    const events = createCatalogEvents(t.env.CATALOG_EVENT_DOMAIN!);
    await t.db.sql.begin(async (tx) => {
      await tx`update products set name = 'Renamed elsewhere', version = version + 1, updated_at = now() where id = ${id}`;
      const row = await findProduct(tx, id);
      await events.append(tx, [events.productUpdated(toProduct(row!), ["name"])]);
    });
    await waitFor("the event to invalidate the cache", async () => {
      return (await t.catalog.getProduct({ id })).product?.name === "Renamed elsewhere";
    });
  });
});

describe("product cache with Redis down", () => {
  let proxy: TcpProxy;
  let t2: CatalogTestEnv;
  beforeAll(async () => {
    proxy = await startTcpProxy({ host: "127.0.0.1", port: 6379 });
    t2 = await startCatalog({
      REDIS_URL: `redis://${proxy.address}`,
      CATALOG_CACHE_TIMEOUT_MS: "200",
    });
  });
  afterAll(async () => {
    await t2?.stop();
    await proxy?.close();
  });

  it("Get and BatchGet still work from Postgres, and a metric says so", async () => {
    const { product } = await t2.catalog.createProduct({
      product: productInput({ name: "Resilient" }),
    });
    const id = product!.id;
    await t2.catalog.getProduct({ id });
    proxy.down();
    for (let i = 0; i < 3; i++) {
      expect((await t2.catalog.getProduct({ id })).product?.name).toBe("Resilient");
    }
    expect((await t2.catalog.batchGetProducts({ ids: [id, id] })).products).toHaveLength(2);
    await t2.catalog.updateProduct({
      product: { id, name: "Still writable" },
      updateMask: { paths: ["name"] },
    });
    expect((await t2.catalog.getProduct({ id })).product?.name).toBe("Still writable");
    expect(await metric(t2.url, /^cache_fallback_total\{.*cache="product"/)).toBeGreaterThanOrEqual(
      4,
    );
    proxy.up();
    // Back to caching once Redis is reachable again.
    await waitFor("redis to be used again", async () => {
      await t2.catalog.getProduct({ id });
      return (await t2.redis.exists(`${t2.keyPrefix}product:${id}`)) === 1;
    });
  });
});
