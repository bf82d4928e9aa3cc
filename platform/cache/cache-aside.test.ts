import { randomBytes } from "node:crypto";
import net from "node:net";
import { Redis } from "ioredis";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CacheCodec, createCacheAside } from "./cache-aside.js";

const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

interface Item {
  id: string;
  version: number;
  label: string;
}

const codec: CacheCodec<Item> = {
  encode: (v) => Buffer.from(JSON.stringify(v)),
  decode: (b) => JSON.parse(Buffer.from(b).toString()) as Item,
  version: (v) => v.version,
};

const prefix = `test:${randomBytes(6).toString("hex")}:`;
let redis: Redis;

beforeAll(async () => {
  redis = new Redis(REDIS_URL, { enableOfflineQueue: false, lazyConnect: true });
  await redis.connect();
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

async function metricValue(registry: Registry, name: string, labels: Record<string, string>) {
  const metric = await registry.getSingleMetric(name)?.get();
  const hit = metric?.values.find((v) =>
    Object.entries(labels).every(([k, val]) => v.labels[k] === val),
  );
  return hit?.value ?? 0;
}

describe("cache-aside", () => {
  it("loads on a miss and serves the next read from Redis", async () => {
    const registry = new Registry();
    const cache = createCacheAside({
      name: "items",
      redis,
      keyPrefix: prefix,
      ttlSeconds: 60,
      codec,
      registry,
    });
    let loads = 0;
    const load = async () => {
      loads++;
      return { id: "a", version: 1, label: "first" };
    };
    expect(await cache.get("a", load)).toEqual({ id: "a", version: 1, label: "first" });
    expect(await cache.get("a", load)).toEqual({ id: "a", version: 1, label: "first" });
    expect(loads).toBe(1);
    expect(await redis.exists(cache.key("a"))).toBe(1);
    expect(await redis.ttl(cache.key("a"))).toBeGreaterThan(0);
    expect(await metricValue(registry, "cache_hit_ratio", { cache: "items" })).toBe(0.5);
  });

  it("collapses concurrent misses for one key into one load (single-flight)", async () => {
    const cache = createCacheAside({ name: "sf", redis, keyPrefix: prefix, ttlSeconds: 60, codec });
    let loads = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const load = async () => {
      loads++;
      await gate;
      return { id: "hot", version: 1, label: "x" };
    };
    const calls = Array.from({ length: 25 }, () => cache.get("hot", load));
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    const results = await Promise.all(calls);
    expect(loads).toBe(1);
    expect(results.every((r) => r?.label === "x")).toBe(true);
  });

  it("refuses to store a value older than an invalidation (stale fill race)", async () => {
    const cache = createCacheAside({
      name: "race",
      redis,
      keyPrefix: prefix,
      ttlSeconds: 60,
      codec,
    });
    await cache.get("r", async () => ({ id: "r", version: 1, label: "v1" }));
    // A writer commits version 2 and invalidates; a slow reader then tries to
    // store the version 1 row it loaded before the write.
    await cache.invalidate("r", 2);
    let loads = 0;
    expect(
      await cache.get("r", async () => {
        loads++;
        return { id: "r", version: 1, label: "v1-stale" };
      }),
    ).toMatchObject({ label: "v1-stale" });
    const next = await cache.get("r", async () => {
      loads++;
      return { id: "r", version: 2, label: "v2" };
    });
    expect(next?.label).toBe("v2");
    expect(loads).toBe(2);
    // Now version 2 is cached; an older invalidation does not remove it.
    await cache.invalidate("r", 1);
    expect(
      (await cache.get("r", async () => ({ id: "r", version: 9, label: "never" })))?.label,
    ).toBe("v2");
  });

  it("keeps an entry that is already at the invalidated version (late event)", async () => {
    const cache = createCacheAside({
      name: "late",
      redis,
      keyPrefix: prefix,
      ttlSeconds: 60,
      codec,
    });
    let loads = 0;
    const load = async () => {
      loads++;
      return { id: "late", version: 3, label: "v3" };
    };
    await cache.get("late", load);
    await cache.invalidate("late", 3);
    expect(await cache.get("late", load)).toMatchObject({ version: 3 });
    expect(loads).toBe(1);
    await cache.invalidate("late", 4);
    await cache.get("late", async () => ({ id: "late", version: 4, label: "v4" }));
    expect(await cache.get("late", load)).toMatchObject({ version: 4, label: "v4" });
  });

  it("getMany mixes hits and one batched load for the misses", async () => {
    const cache = createCacheAside({
      name: "many",
      redis,
      keyPrefix: prefix,
      ttlSeconds: 60,
      codec,
    });
    await cache.get("m1", async () => ({ id: "m1", version: 1, label: "one" }));
    const asked: string[][] = [];
    const result = await cache.getMany(["m1", "m2", "m3", "m2"], async (missing) => {
      asked.push(missing);
      return new Map(
        missing.filter((id) => id !== "m3").map((id) => [id, { id, version: 1, label: id }]),
      );
    });
    expect(asked).toEqual([["m2", "m3"]]);
    expect([...result.keys()].sort()).toEqual(["m1", "m2"]);
    expect(await redis.exists(cache.key("m2"))).toBe(1);
    expect(await redis.exists(cache.key("m3"))).toBe(0);
  });

  it("falls back to the loader when Redis is down and counts it", async () => {
    // A port nobody listens on: bind, read the port, close.
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const dead = new Redis({
      host: "127.0.0.1",
      port,
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
    });
    dead.on("error", () => {});
    dead.connect().catch(() => {});
    const registry = new Registry();
    const warnings: object[] = [];
    const cache = createCacheAside({
      name: "down",
      redis: dead,
      keyPrefix: prefix,
      ttlSeconds: 60,
      codec,
      registry,
      logger: { warn: (o) => warnings.push(o), info: () => {} },
    });
    let loads = 0;
    for (let i = 0; i < 3; i++) {
      const value = await cache.get("d", async () => {
        loads++;
        return { id: "d", version: 1, label: "db" };
      });
      expect(value?.label).toBe("db");
    }
    expect(loads).toBe(3);
    expect(await metricValue(registry, "cache_fallback_total", { cache: "down" })).toBe(3);
    expect(warnings.length).toBe(1);
    await cache.invalidate("d", 2);
    expect(
      await metricValue(registry, "cache_errors_total", { cache: "down", operation: "invalidate" }),
    ).toBe(1);
    dead.disconnect();
  });
});
