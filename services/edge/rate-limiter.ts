import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";

/**
 * GCRA (the token bucket expressed as a "theoretical arrival time"), one
 * Redis round trip per decision: a Lua script reads and advances the key
 * atomically with the server's clock, so edge replicas share buckets and
 * their clocks do not matter.
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
  remaining: number;
  /** Seconds until the bucket is full again. */
  resetSeconds: number;
  /** Seconds to wait before retrying (0 when allowed). */
  retryAfterSeconds: number;
  /** Which store decided. */
  source: "redis" | "local";
}

export interface RateLimiter {
  check(key: string, limit: Limit): Promise<Decision>;
}

// KEYS[1] bucket; ARGV[1] emission interval (µs); ARGV[2] burst.
// Returns {allowed, remaining, retry_after_us, reset_us}.
const GCRA_LUA = `
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local capacity = interval * burst
if new_tat - now > capacity then
  return {0, 0, new_tat - capacity - now, tat - now}
end
-- %.0f: Lua's default number formatting (%.14g) would round microsecond times.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((capacity - (new_tat - now)) / interval), 0, new_tat - now}
`;

interface GcraRedis extends Redis {
  edgeGcra(
    key: string,
    intervalUs: number,
    burst: number,
  ): Promise<[number, number, number, number]>;
}

export interface RateLimiterOptions {
  redis: Redis | undefined;
  /** Key prefix (tests isolate with a unique one). */
  prefix: string;
  logger: Pick<Logger, "warn">;
  registry: Registry;
  /** Most buckets the local fallback keeps (least recently used are dropped). */
  localMaxKeys?: number;
}

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const redis = options.redis as GcraRedis | undefined;
  if (redis && typeof redis.edgeGcra !== "function") {
    redis.defineCommand("edgeGcra", { numberOfKeys: 1, lua: GCRA_LUA });
  }
  const local = createLocalGcra(options.localMaxKeys ?? 100_000);
  const fallbacks = new Counter({
    name: "edge_rate_limit_fallback_total",
    help: "Rate-limit decisions made by the in-process limiter because Redis was unavailable.",
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

  return {
    async check(key, limit) {
      const intervalUs = Math.max(1, Math.round(1_000_000 / limit.ratePerSecond));
      if (redis?.status !== "ready") {
        return fallback(key, limit, new Error(`redis ${redis?.status ?? "not configured"}`));
      }
      try {
        // A slow Redis fails the command through the client's commandTimeout.
        const [allowed, remaining, retryUs, resetUs] = await redis.edgeGcra(
          options.prefix + key,
          intervalUs,
          limit.burst,
        );
        return {
          allowed: allowed === 1,
          limit: limit.burst,
          remaining,
          resetSeconds: Math.ceil(resetUs / 1_000_000),
          retryAfterSeconds: Math.ceil(retryUs / 1_000_000),
          source: "redis",
        };
      } catch (error) {
        return fallback(key, limit, error);
      }
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
