import {
  ConfigError,
  type Env,
  readBool,
  readInt,
  readOptionalString,
  readString,
} from "../../platform/config/env.js";
import { DEFAULT_RANK_WINDOW } from "./products/product-query.js";

/** Catalog-only settings (the platform reads the shared ones). */
export interface CatalogSettings {
  /** Namespace of every Redis key; tests set a unique one. */
  redisKeyPrefix: string;
  cacheTtlSeconds: number;
  cacheTimeoutMs: number;
  /** Unreadable secret ⇒ unforgeable page tokens; replicas must share it. */
  pageTokenSecret: string;
  pageTokenSecretIsDefault: boolean;
  reservationTtlSeconds: number;
  sweepIntervalMs: number;
  lowStockThreshold: number;
  /** Subject prefix of the catalog's events (`<domain>.product.updated`). */
  eventDomain: string;
  /** JetStream stream capturing `<eventDomain>.>`. */
  eventStream: string;
  /** Provision the stream at start (off when the platform/ops owns it). */
  provisionStream: boolean;
  /** Stream size cap; JetStream reserves it up front, so tests keep it small. */
  streamMaxBytes: number | undefined;
  /** Matches a RELEVANCE search ranks (see products/product-query.ts). */
  searchRankWindow: number;
}

const DEV_PAGE_TOKEN_SECRET = "commerce-mesh-local-page-token-secret";

export function loadCatalogSettings(env: Env = process.env): CatalogSettings {
  const secret = readOptionalString(env, "PAGE_TOKEN_SECRET");
  if (secret !== undefined && secret.length < 16) {
    throw new ConfigError("PAGE_TOKEN_SECRET", "must be at least 16 characters");
  }
  const eventDomain = readString(env, "CATALOG_EVENT_DOMAIN", "catalog");
  if (!/^[A-Za-z0-9_-]+$/.test(eventDomain)) {
    throw new ConfigError("CATALOG_EVENT_DOMAIN", "must be one NATS subject token");
  }
  return {
    redisKeyPrefix: readString(env, "REDIS_KEY_PREFIX", "catalog:"),
    cacheTtlSeconds: readInt(env, "CATALOG_CACHE_TTL_SECONDS", 300, { min: 1, max: 86_400 }),
    cacheTimeoutMs: readInt(env, "CATALOG_CACHE_TIMEOUT_MS", 250, { min: 5, max: 10_000 }),
    pageTokenSecret: secret ?? DEV_PAGE_TOKEN_SECRET,
    pageTokenSecretIsDefault: secret === undefined,
    reservationTtlSeconds: readInt(env, "RESERVATION_TTL_SECONDS", 900, {
      min: 1,
      max: 7 * 86_400,
    }),
    sweepIntervalMs: readInt(env, "RESERVATION_SWEEP_INTERVAL_MS", 5_000, {
      min: 50,
      max: 600_000,
    }),
    lowStockThreshold: readInt(env, "LOW_STOCK_THRESHOLD", 5, { min: 0, max: 1_000_000 }),
    eventDomain,
    eventStream: readString(env, "CATALOG_EVENT_STREAM", eventDomain.toUpperCase()),
    provisionStream: readBool(env, "CATALOG_PROVISION_STREAM", true),
    streamMaxBytes: readOptionalString(env, "CATALOG_STREAM_MAX_BYTES")
      ? readInt(env, "CATALOG_STREAM_MAX_BYTES", 0, { min: 1024 * 1024 })
      : undefined,
    searchRankWindow: readInt(env, "CATALOG_SEARCH_RANK_WINDOW", DEFAULT_RANK_WINDOW, {
      min: 1,
      max: 100_000,
    }),
  };
}
