import { randomBytes } from "node:crypto";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { Redis } from "ioredis";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createRateLimiter,
  type Decision,
  type Limit,
  leaseSize,
  type RateLimiter,
  rateLimitHeaders,
} from "./rate-limiter.js";

const silent = { warn: () => {} };

async function counter(registry: Registry, name: string): Promise<number> {
  const metric = registry.getSingleMetric(name);
  return (await metric!.get()).values[0]?.value ?? 0;
}

/** n concurrent checks, as n connections of one client would make them. */
function flood(limiter: RateLimiter, key: string, limit: Limit, n: number): Promise<Decision[]> {
  return Promise.all(Array.from({ length: n }, () => limiter.check(key, limit)));
}
let redis: Redis;
const prefix = `edge-rl-test:${randomBytes(6).toString("hex")}:`;

beforeAll(async () => {
  redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379", { lazyConnect: true });
  await redis.connect();
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

describe("GCRA rate limiter in Redis", () => {
  it("allows the burst, then refuses with a retry time; replicas share the bucket", async () => {
    const a = createRateLimiter({ redis, prefix, logger: silent, registry: new Registry() });
    const b = createRateLimiter({ redis, prefix, logger: silent, registry: new Registry() });
    const limit = { ratePerSecond: 0.5, burst: 3 };
    const decisions = [
      await a.check("k1", limit),
      await b.check("k1", limit),
      await a.check("k1", limit),
    ];
    expect(decisions.map((d) => [d.allowed, d.remaining, d.source])).toEqual([
      [true, 2, "redis"],
      [true, 1, "redis"],
      [true, 0, "redis"],
    ]);
    const refused = await b.check("k1", limit);
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(2);
    expect(rateLimitHeaders(refused, limit)).toMatchObject({
      "ratelimit-limit": "3",
      "ratelimit-remaining": "0",
      "ratelimit-policy": "3;w=6",
      "retry-after": String(refused.retryAfterSeconds),
    });
    // Another key has its own bucket; the refused call consumed nothing.
    expect((await a.check("k2", limit)).remaining).toBe(2);
    const ttl = await redis.pttl(`${prefix}k1`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(6001);
  });

  it("refills at the configured rate", async () => {
    const limiter = createRateLimiter({ redis, prefix, logger: silent, registry: new Registry() });
    const limit = { ratePerSecond: 50, burst: 1 };
    expect((await limiter.check("fast", limit)).allowed).toBe(true);
    // One token per 20 ms: wait until one must be back (no upper bound asserted).
    await new Promise((r) => setTimeout(r, 60));
    expect((await limiter.check("fast", limit)).allowed).toBe(true);
  });

  it("falls back to the in-process limiter without Redis and counts each fallback", async () => {
    const registry = new Registry();
    const warnings: unknown[] = [];
    const dead = new Redis("redis://127.0.0.1:1", {
      lazyConnect: true,
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    dead.on("error", () => {});
    const limiter = createRateLimiter({
      redis: dead,
      prefix,
      logger: { warn: (o: unknown) => warnings.push(o) },
      registry,
    });
    const limit = { ratePerSecond: 0.1, burst: 2 };
    const results = [];
    for (let i = 0; i < 3; i++) results.push(await limiter.check("local", limit));
    expect(results.map((d) => [d.allowed, d.source])).toEqual([
      [true, "local"],
      [true, "local"],
      [false, "local"],
    ]);
    const metric = await registry.getSingleMetricAsString("edge_rate_limit_fallback_total");
    expect(metric).toMatch(/edge_rate_limit_fallback_total 3/);
    expect(warnings.length).toBe(1);
    dead.disconnect();
  });

  it("falls back for requests waiting on a lease when Redis hangs (command timeout)", async () => {
    // Accepts connections and never answers: a Redis that hangs.
    const sockets: Socket[] = [];
    const silentServer = createServer((socket) => sockets.push(socket));
    await new Promise<void>((r) => silentServer.listen(0, "127.0.0.1", r));
    const { port } = silentServer.address() as AddressInfo;
    const hung = new Redis(port, "127.0.0.1", {
      lazyConnect: true,
      enableReadyCheck: false,
      commandTimeout: 50,
      maxRetriesPerRequest: 0,
    });
    hung.on("error", () => {});
    try {
      await hung.connect();
      const registry = new Registry();
      const limiter = createRateLimiter({ redis: hung, prefix, logger: silent, registry });
      const decisions = await flood(limiter, "hung", { ratePerSecond: 0.1, burst: 2 }, 3);
      expect(decisions.map((d) => [d.allowed, d.source])).toEqual([
        [true, "local"],
        [true, "local"],
        [false, "local"],
      ]);
      expect(await counter(registry, "edge_rate_limit_redis_calls_total")).toBe(1);
      expect(await counter(registry, "edge_rate_limit_fallback_total")).toBe(3);
    } finally {
      hung.disconnect();
      for (const socket of sockets) socket.destroy();
      await new Promise((r) => silentServer.close(r));
    }
  });
});

describe("leases", () => {
  it("small bursts lease one token at a time, so concurrent callers get exactly the burst", async () => {
    const registry = new Registry();
    const limiter = createRateLimiter({ redis, prefix, logger: silent, registry });
    const limit = { ratePerSecond: 0.2, burst: 5 };
    expect(leaseSize(limit)).toBe(1);
    const decisions = await flood(limiter, "exact", limit, 20);
    expect(decisions.filter((d) => d.allowed)).toHaveLength(5);
    expect(decisions.slice(0, 5).map((d) => d.remaining)).toEqual([4, 3, 2, 1, 0]);
    const refused = decisions[19]!;
    expect(refused).toMatchObject({ allowed: false, remaining: 0, source: "redis" });
    // One token per 5 s.
    expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(4);
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(5);
    expect(rateLimitHeaders(refused, limit)).toMatchObject({
      "ratelimit-limit": "5",
      "ratelimit-remaining": "0",
      "retry-after": String(refused.retryAfterSeconds),
    });
    // Requests waiting on a lease are batched into the next one.
    const calls = await counter(registry, "edge_rate_limit_redis_calls_total");
    expect(calls).toBeLessThanOrEqual(3);
    // The refusal is cached until its retry time: no further round trips.
    const again = limiter.check("exact", limit);
    expect(again).not.toBeInstanceOf(Promise);
    expect((again as Decision).allowed).toBe(false);
    expect(await counter(registry, "edge_rate_limit_redis_calls_total")).toBe(calls);
    // Another replica, sharing the bucket, is refused too.
    const other = createRateLimiter({ redis, prefix, logger: silent, registry: new Registry() });
    expect((await other.check("exact", limit)).allowed).toBe(false);
  });

  it("replicas sharing a larger bucket admit between burst and burst + replicas × lease", async () => {
    const limit = { ratePerSecond: 20, burst: 200 };
    const k = leaseSize(limit);
    expect(k).toBe(10);
    const replicas = [1, 2].map(() =>
      createRateLimiter({ redis, prefix, logger: silent, registry: new Registry() }),
    );
    const started = performance.now();
    let allowed = 0;
    const refusedBy = new Set<number>();
    // Interleaved floods until both replicas are refused: every token either
    // was granted by the shared bucket or is still held by a replica.
    for (let round = 0; round < 100 && refusedBy.size < 2; round++) {
      for (const [i, limiter] of replicas.entries()) {
        for (const d of await flood(limiter, "shared", limit, 7)) {
          if (d.allowed) allowed++;
          else refusedBy.add(i);
        }
      }
    }
    expect(refusedBy.size).toBe(2);
    const refill = Math.ceil((limit.ratePerSecond * (performance.now() - started)) / 1000);
    expect(allowed).toBeGreaterThanOrEqual(limit.burst);
    expect(allowed).toBeLessThanOrEqual(limit.burst + refill + replicas.length * k);
  });

  it("a large burst is served with few Redis calls", async () => {
    const registry = new Registry();
    const limiter = createRateLimiter({ redis, prefix, logger: silent, registry });
    const limit = { ratePerSecond: 1000, burst: 1000 };
    const k = leaseSize(limit);
    expect(k).toBe(50);
    let allowed = (await limiter.check("big", limit)).allowed ? 1 : 0;
    // With tokens in hand the decision is synchronous.
    for (let i = 1; i < k; i++) {
      const decision = limiter.check("big", limit);
      expect(decision).not.toBeInstanceOf(Promise);
      if ((decision as Decision).allowed) allowed++;
    }
    for (let i = 0; i < 19; i++) {
      allowed += (await flood(limiter, "big", limit, 50)).filter((d) => d.allowed).length;
    }
    expect(allowed).toBe(1000);
    const calls = await counter(registry, "edge_rate_limit_redis_calls_total");
    expect(calls).toBeLessThanOrEqual(1000 / k + 2);
  });

  it("unspent leased tokens expire instead of being held forever", async () => {
    const registry = new Registry();
    const limiter = createRateLimiter({ redis, prefix, logger: silent, registry, leaseTtlMs: 30 });
    const limit = { ratePerSecond: 1000, burst: 1000 };
    expect((await limiter.check("ttl", limit)).allowed).toBe(true);
    expect(limiter.check("ttl", limit)).not.toBeInstanceOf(Promise);
    await new Promise((r) => setTimeout(r, 50));
    const renewed = limiter.check("ttl", limit);
    expect(renewed).toBeInstanceOf(Promise);
    expect((await renewed).allowed).toBe(true);
    expect(await counter(registry, "edge_rate_limit_redis_calls_total")).toBe(2);
  });

  it("lease size: 1 up to burst 10, then burst / 20 bounded by the refill of one lease and 1,000", () => {
    expect(leaseSize({ ratePerSecond: 1000, burst: 10 })).toBe(1);
    expect(leaseSize({ ratePerSecond: 100, burst: 200 })).toBe(10);
    expect(leaseSize({ ratePerSecond: 2, burst: 200 })).toBe(2);
    expect(leaseSize({ ratePerSecond: 0.1, burst: 200 })).toBe(1);
    expect(leaseSize({ ratePerSecond: 1e7, burst: 1e7 })).toBe(1000);
  });
});
