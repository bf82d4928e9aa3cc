import { ConfigError, type Env, readInt, readOptionalString } from "../../platform/config/env.js";
import type { Limit } from "./rate-limiter.js";

export type RouteClass = "read" | "write" | "auth";
export type RateLimitConfig = Record<RouteClass, { anonymous: Limit; user: Limit }>;

export interface EdgeConfig {
  /** Origins allowed by CORS (exact match); empty: no CORS headers at all. */
  corsOrigins: ReadonlySet<string>;
  maxBodyBytes: number;
  maxJsonDepth: number;
  maxUrlLength: number;
  /** Proxies in front of the edge whose X-Forwarded-For entries are trusted. */
  trustedProxyHops: number;
  /** Strict-Transport-Security max-age; 0 sends none (set it when TLS terminates in front). */
  hstsMaxAgeSeconds: number;
  rateLimits: RateLimitConfig;
  /** Redis key prefix of rate-limit buckets. */
  rateLimitPrefix: string;
  /** HTTP/1.1 connections the edge keeps per upstream service. */
  upstreamConnections: number;
  /** Unary calls pipelined per upstream connection once every connection is busy. */
  upstreamPipeline: number;
}

export const DEFAULT_RATE_LIMITS: RateLimitConfig = {
  read: { anonymous: { ratePerSecond: 50, burst: 100 }, user: { ratePerSecond: 100, burst: 200 } },
  write: { anonymous: { ratePerSecond: 10, burst: 20 }, user: { ratePerSecond: 20, burst: 40 } },
  // Public writes: sign-up, sign-in, token refresh (credential guessing).
  auth: { anonymous: { ratePerSecond: 2, burst: 10 }, user: { ratePerSecond: 2, burst: 10 } },
};

/**
 * EDGE_RATE_LIMITS overrides defaults per class and caller kind, as JSON:
 * {"read":{"anonymous":{"ratePerSecond":100,"burst":200}}}.
 */
function readRateLimits(env: Env): RateLimitConfig {
  const text = readOptionalString(env, "EDGE_RATE_LIMITS");
  const out: RateLimitConfig = structuredClone(DEFAULT_RATE_LIMITS);
  if (text === undefined) return out;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigError("EDGE_RATE_LIMITS", "must be JSON");
  }
  if (parsed === null || typeof parsed !== "object") {
    throw new ConfigError("EDGE_RATE_LIMITS", "must be a JSON object");
  }
  for (const [routeClass, kinds] of Object.entries(parsed)) {
    if (!(routeClass in out)) {
      throw new ConfigError("EDGE_RATE_LIMITS", `has unknown route class "${routeClass}"`);
    }
    for (const [kind, limit] of Object.entries(kinds as object)) {
      if (kind !== "anonymous" && kind !== "user") {
        throw new ConfigError("EDGE_RATE_LIMITS", `has unknown caller kind "${kind}"`);
      }
      const { ratePerSecond, burst } = limit as Partial<Limit>;
      if (
        typeof ratePerSecond !== "number" ||
        !(ratePerSecond > 0) ||
        !Number.isInteger(burst) ||
        (burst as number) < 1
      ) {
        throw new ConfigError(
          "EDGE_RATE_LIMITS",
          `${routeClass}.${kind} needs ratePerSecond > 0 and an integer burst >= 1`,
        );
      }
      out[routeClass as RouteClass][kind] = { ratePerSecond, burst: burst as number };
    }
  }
  return out;
}

export function loadEdgeConfig(env: Env): EdgeConfig {
  const origins = (readOptionalString(env, "EDGE_CORS_ORIGINS") ?? "")
    .split(",")
    .map((o) => o.trim())
    .filter((o) => o !== "");
  for (const origin of origins) {
    if (!/^https?:\/\/[^/\s]+$/.test(origin)) {
      throw new ConfigError(
        "EDGE_CORS_ORIGINS",
        `entries must be origins like https://shop.example, got "${origin}"`,
      );
    }
  }
  return {
    corsOrigins: new Set(origins),
    maxBodyBytes: readInt(env, "EDGE_MAX_BODY_BYTES", 1024 * 1024, {
      min: 1024,
      max: 64 * 1024 * 1024,
    }),
    maxJsonDepth: readInt(env, "EDGE_MAX_JSON_DEPTH", 32, { min: 2, max: 100 }),
    maxUrlLength: readInt(env, "EDGE_MAX_URL_LENGTH", 8192, { min: 256, max: 65_536 }),
    trustedProxyHops: readInt(env, "EDGE_TRUSTED_PROXY_HOPS", 0, { min: 0, max: 10 }),
    hstsMaxAgeSeconds: readInt(env, "EDGE_HSTS_MAX_AGE", 0, { min: 0, max: 63_072_000 }),
    rateLimits: readRateLimits(env),
    rateLimitPrefix: readOptionalString(env, "EDGE_RATE_LIMIT_PREFIX") ?? "edge:rl:",
    // Few connections with deep pipelines: more calls share each read and
    // write on both sides (bench/edge-rest.ts: 2 × 32 answered 12–20% more
    // requests than 8 × 8 for the same CPU). The cost is head-of-line waiting
    // behind a slow call on the same connection; raise connections for
    // upstreams with slow unary calls.
    upstreamConnections: readInt(env, "EDGE_UPSTREAM_CONNECTIONS", 2, { min: 1, max: 256 }),
    upstreamPipeline: readInt(env, "EDGE_UPSTREAM_PIPELINE", 32, { min: 1, max: 256 }),
  };
}
