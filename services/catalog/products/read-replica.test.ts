import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTcpProxy, type TcpProxy } from "../../../platform/testing/tcp-proxy.js";
import { type CatalogTestEnv, productInput, rpcError, startCatalog } from "../test-support.js";

// The "replica" is the same Postgres behind a proxy we can cut: while it is
// down, whatever still works provably does not read from it.
let proxy: TcpProxy;
let t: CatalogTestEnv;
beforeAll(async () => {
  proxy = await startTcpProxy({ host: "127.0.0.1", port: 5432 });
  t = await startCatalog({ DATABASE_REPLICA_URL: `postgres://postgres@${proxy.address}/test` });
});
afterAll(async () => {
  await t?.stop();
  await proxy?.close();
});

describe("read replica routing", () => {
  it("sends plain reads to the replica, writes and their responses to the primary", async () => {
    const { product } = await t.catalog.createProduct({
      product: productInput({ name: "Replica lamp" }),
    });
    expect((await t.catalog.listProducts({})).products.map((p) => p.id)).toContain(product!.id);
    expect(proxy.openConnections()).toBeGreaterThan(0);
    proxy.down();
    // Writes (and the row they return) do not touch the replica.
    const { product: updated } = await t.catalog.updateProduct({
      product: { id: product!.id, name: "Written on primary" },
      updateMask: { paths: ["name"] },
    });
    expect(updated?.name).toBe("Written on primary");
    const created = await t.catalog.createProduct({ product: productInput() });
    expect(created.product?.id).toBeDefined();
    // Reads do, so they fail while it is unreachable.
    await rpcError(t.catalog.listProducts({}, { timeoutMs: 3000 }));
    proxy.up();
    const after = await t.catalog.listProducts({});
    expect(after.products.map((p) => p.name)).toContain("Written on primary");
  });
});
