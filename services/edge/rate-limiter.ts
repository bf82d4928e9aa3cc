import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";

/**
 * GCRA (the token bucket expressed as a "theoretical arrival time") whose
 * shared truth lives in Redis, spent through local leases so a decision
 * normally needs no round trip. One EVALSHA per request cost about 11% of the
 * edge's CPU per request plus as much again on the Redis server; a lease makes
 * that cost per k requests.
 *
 * - A Lua script advances the shared bucket by up to `want` emission
 *   intervals at once (with the server's clock, so replicas' clocks do not
 *   matter) and returns how many tokens it granted. The process spends them
 *   in memory: with tokens in hand `check` answers synchronously.
 * - Lease size k adapts to the limit (`leaseSize`): bursts ≤ 10 lease 1 token,
 *   so small limits stay exact; larger ones lease ceil(burst / 20), at most
 *   what refills in one lease lifetime and at most 1,000. Requests that arrive
 *   while a key's lease is in flight wait for it (one call per key at a time)
 *   and are batched into the next lease, each taking a token it spends at
 *   once — so batching never makes a decision inexact.
 * - Bound: tokens are charged in Redis when leased, so replicas together are
 *   never granted more than the GCRA allows; what is approximate is when they
 *   are spent. In any window a key admits at most burst + rate × window +
 *   replicas × k (each replica can sit on at most one unspent lease). Unspent
 *   tokens expire after `leaseTtlMs` (1 s) and are lost rather than returned:
 *   the error is on the strict side, and k ≤ rate × ttl keeps a client far
 *   below its rate from being charged more than its rate.
 * - When Redis refuses, the refusal (with its retry-after) is cached until
 *   then: nothing can refill the shared bucket earlier, so a flood of refused
 *   requests costs no round trips and stays exact.
 * - `remaining` is the shared bucket's remainder at the last lease plus the
 *   tokens this process still holds: approximate when k > 1, exact when k = 1.
 *
 * Redis down or slow: each edge process falls back to the same algorithm in
 * memory. Limits then hold per replica instead of globally (with N replicas a
 * client can get up to N× its budget) — a floor, never a fail-open — and every
 * fallback decision is counted (edge_rate_limit_fallback_total) and logged at
 * most every 10 s. Decisions return to Redis as soon as it answers again.
 */

export interface Limit {
  /** Sustained requests per second. */
  ratePerSecond: number;
  /** Requests allowed at once (bucket size). */
  burst: number;
}

export interface Decision {
  allowed: boolean;
  limit: number;
  /** Approximate when the key's lease size is above 1 (see above). */
  remaining: number;
  /** Seconds until the bucket is full again. */
  resetSeconds: number;
  /** Seconds to wait before retrying (0 when allowed). */
  retryAfterSeconds: number;
  /** Which store decided: the shared bucket (directly or through a lease) or the fallback. */
  source: "redis" | "local";
}

export interface RateLimiter {
  /** Synchronous when the key holds leased tokens, a cached refusal, or Redis is down. */
  check(key: string, limit: Limit): Decision | Promise<Decision>;
}

// KEYS[1] bucket; ARGV[1] emission interval (µs); ARGV[2] burst; ARGV[3] tokens wanted.
// Returns {granted, remaining, retry_after_us, reset_us}; retry_after_us is
// the wait for the next token after this grant, 0 while the bucket has some.
const LEASE_LUA = `
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local capacity = interval * burst
local granted = math.floor((now + capacity - tat) / interval)
if granted > want then granted = want end
if granted <= 0 then
  return {0, 0, tat + interval - capacity - now, tat - now}
end
local new_tat = tat + granted * interval
-- %.0f: Lua's default number formatting (%.14g) would round microsecond times.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
local remaining = math.floor((capacity - (new_tat - now)) / interval)
local retry = 0
if remaining <= 0 then retry = new_tat + interval - capacity - now end
return {granted, remaining, retry, new_tat - now}
`;

interface LeaseRedis extends Redis {
  edgeGcraLease(
    key: string,
    intervalUs: number,
    burst: number,
    want: number,
  ): Promise<[number, number, number, number]>;
}

export interface RateLimiterOptions {
  redis: Redis | undefined;
  /** Key prefix (tests isolate with a unique one). */
  prefix: string;
  logger: Pick<Logger, "warn">;
  registry: Registry;
  /** Most keys kept in memory, leases and fallback alike (least recently used are dropped). */
  localMaxKeys?: number;
  /** How long leased tokens may be spent (default 1 s). */
  leaseTtlMs?: number;
  /** Largest lease (default 1,000 tokens). */
  maxLease?: number;
}

const EXACT_BURST = 10;

/** Tokens one process leases at a time for this limit: the over-admission bound per replica. */
export function leaseSize(limit: Limit, leaseTtlMs = 1000, maxLease = 1000): number {
  if (limit.burst <= EXACT_BURST) return 1;
  const byBurst = Math.ceil(limit.burst / 20);
  const byRate = Math.floor((limit.ratePerSecond * leaseTtlMs) / 1000);
  return Math.max(1, Math.min(byBurst, byRate, maxLease));
}

interface Bucket {
  /** Leased tokens not yet spent. */
  tokens: number;
  /** performance.now() after which unspent tokens are dropped. */
  expiresAt: number;
  /** The shared bucket's remainder at the last lease. */
  sharedRemaining: number;
  /** performance.now() when the shared bucket is full again. */
  resetAt: number;
  /** performance.now() before which the shared bucket has no token (0: unknown). */
  refusedUntil: number;
  /** Requests waiting for the lease in flight; undefined when none is. */
  waiters: Array<(decision: Decision) => void> | undefined;
}

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const redis = options.redis as LeaseRedis | undefined;
  if (redis && typeof redis.edgeGcraLease !== "function") {
    redis.defineCommand("edgeGcraLease", { numberOfKeys: 1, lua: LEASE_LUA });
  }
  const maxKeys = options.localMaxKeys ?? 100_000;
  const leaseTtlMs = options.leaseTtlMs ?? 1000;
  const maxLease = options.maxLease ?? 1000;
  const local = createLocalGcra(maxKeys);
  const buckets = new Map<string, Bucket>();
  const fallbacks = new Counter({
    name: "edge_rate_limit_fallback_total",
    help: "Rate-limit decisions made by the in-process limiter because Redis was unavailable.",
    registers: [options.registry],
  });
  const redisCalls = new Counter({
    name: "edge_rate_limit_redis_calls_total",
    help: "Lease scripts run in Redis by the rate limiter (each serves up to one lease of decisions).",
    registers: [options.registry],
  });
  let lastWarning = 0;
  const fallback = (key: string, limit: Limit, error: unknown): Decision => {
    fallbacks.inc();
    const now = Date.now();
    if (now - lastWarning > 10_000) {
      lastWarning = now;
      options.logger.warn(
        { err: error },
        "rate limiter: Redis unavailable, using the per-process limiter",
      );
    }
    return local(key, limit);
  };

  const allowed = (bucket: Bucket, limit: Limit, now: number): Decision => ({
    allowed: true,
    limit: limit.burst,
    remaining: Math.min(limit.burst, bucket.sharedRemaining + bucket.tokens),
    resetSeconds: Math.max(0, Math.ceil((bucket.resetAt - now) / 1000)),
    retryAfterSeconds: 0,
    source: "redis",
  });
  const refused = (bucket: Bucket, limit: Limit, now: number): Decision => ({
    allowed: false,
    limit: limit.burst,
    remaining: 0,
    resetSeconds: Math.max(0, Math.ceil((bucket.resetAt - now) / 1000)),
    retryAfterSeconds: Math.ceil((bucket.refusedUntil - now) / 1000),
    source: "redis",
  });

  // Asks Redis for enough tokens for every waiter (at least one lease), hands
  // them out, and asks again for whoever arrived meanwhile and got none.
  const lease = (key: string, limit: Limit, bucket: Bucket): void => {
    const waiters = bucket.waiters!;
    const want = Math.max(leaseSize(limit, leaseTtlMs, maxLease), waiters.length);
    const intervalUs = Math.max(1, Math.round(1_000_000 / limit.ratePerSecond));
    redisCalls.inc();
    // A slow Redis fails the command through the client's commandTimeout.
    redis!.edgeGcraLease(options.prefix + key, intervalUs, limit.burst, want).then(
      ([granted, remaining, retryUs, resetUs]) => {
        const now = performance.now();
        bucket.tokens = granted;
        bucket.expiresAt = now + leaseTtlMs;
        bucket.sharedRemaining = remaining;
        bucket.resetAt = now + resetUs / 1000;
        bucket.refusedUntil = retryUs > 0 ? now + retryUs / 1000 : 0;
        let i = 0;
        for (; i < waiters.length && bucket.tokens > 0; i++) {
          bucket.tokens--;
          waiters[i]!(allowed(bucket, limit, now));
        }
        if (i < waiters.length && now >= bucket.refusedUntil) {
          bucket.waiters = waiters.slice(i);
          lease(key, limit, bucket);
          return;
        }
        bucket.waiters = undefined;
        for (; i < waiters.length; i++) waiters[i]!(refused(bucket, limit, now));
      },
      (error: unknown) => {
        bucket.waiters = undefined;
        for (const resolve of waiters) resolve(fallback(key, limit, error));
      },
    );
  };

  return {
    check(key, limit) {
      if (redis?.status !== "ready") {
        return fallback(key, limit, new Error(`redis ${redis?.status ?? "not configured"}`));
      }
      const now = performance.now();
      let bucket = buckets.get(key);
      if (bucket !== undefined) {
        if (bucket.tokens > 0) {
          if (now < bucket.expiresAt) {
            bucket.tokens--;
            return allowed(bucket, limit, now);
          }
          bucket.tokens = 0;
        }
        if (now < bucket.refusedUntil) return refused(bucket, limit, now);
        const waiters = bucket.waiters;
        if (waiters !== undefined) return new Promise((resolve) => waiters.push(resolve));
        // Least recently leased goes first when the map is full.
        buckets.delete(key);
      } else {
        bucket = {
          tokens: 0,
          expiresAt: 0,
          sharedRemaining: 0,
          resetAt: 0,
          refusedUntil: 0,
          waiters: undefined,
        };
        if (buckets.size >= maxKeys) buckets.delete(buckets.keys().next().value!);
      }
      buckets.set(key, bucket);
      const leased = bucket;
      return new Promise((resolve) => {
        leased.waiters = [resolve];
        lease(key, limit, leased);
      });
    },
  };
}

/** The same GCRA in memory, bounded by an LRU on the Map's insertion order. */
function createLocalGcra(maxKeys: number): (key: string, limit: Limit) => Decision {
  const tats = new Map<string, number>();
  return (key, limit) => {
    const interval = 1000 / limit.ratePerSecond;
    const capacity = interval * limit.burst;
    const now = performance.now();
    let tat = tats.get(key) ?? now;
    if (tat < now) tat = now;
    const newTat = tat + interval;
    if (newTat - now > capacity) {
      return {
        allowed: false,
        limit: limit.burst,
        remaining: 0,
        resetSeconds: Math.ceil((tat - now) / 1000),
        retryAfterSeconds: Math.ceil((newTat - capacity - now) / 1000),
        source: "local",
      };
    }
    tats.delete(key);
    tats.set(key, newTat);
    if (tats.size > maxKeys) tats.delete(tats.keys().next().value!);
    return {
      allowed: true,
      limit: limit.burst,
      remaining: Math.floor((capacity - (newTat - now)) / interval),
      resetSeconds: Math.ceil((newTat - now) / 1000),
      retryAfterSeconds: 0,
      source: "local",
    };
  };
}

/** IETF draft-ietf-httpapi-ratelimit-headers fields, plus Retry-After when refused. */
export function rateLimitHeaders(decision: Decision, limit: Limit): Record<string, string> {
  const window = Math.max(1, Math.ceil(limit.burst / limit.ratePerSecond));
  const headers: Record<string, string> = {
    "ratelimit-limit": String(decision.limit),
    "ratelimit-remaining": String(decision.remaining),
    "ratelimit-reset": String(decision.resetSeconds),
    "ratelimit-policy": `${limit.burst};w=${window}`,
  };
  if (!decision.allowed) headers["retry-after"] = String(Math.max(1, decision.retryAfterSeconds));
  return headers;
}
