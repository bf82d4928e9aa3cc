import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRateLimiter, rateLimitHeaders } from "./rate-limiter.js";

const silent = { warn: () => {} };
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
});
