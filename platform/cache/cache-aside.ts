import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import type { Registry } from "prom-client";
import { cacheMetrics } from "./cache-metrics.js";
import { createSingleFlight } from "./single-flight.js";

/**
 * Cache-aside over Redis for values that carry a monotonically increasing
 * version (a row version, bumped on every write).
 *
 * Why versions: a plain "delete on write" races with a slow reader that
 * loaded the old row before the write and stores it after the delete, leaving
 * a stale entry until the TTL. Here an invalidation leaves a tombstone with
 * the new version, and a fill only lands if no newer version (value or
 * tombstone) is already there; both checks run atomically in Redis (Lua).
 *
 * Redis is an optimisation, never a dependency: every Redis failure or
 * timeout falls back to the loader, counts in `cache_errors_total` /
 * `cache_fallback_total`, and is logged (at most once per `logEveryMs`).
 */
export interface CacheCodec<V> {
  encode(value: V): Uint8Array;
  /** `version` is the one the entry was stored with. */
  decode(bytes: Uint8Array, version: number): V;
  version(value: V): number;
}

export interface CacheLogger {
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
}

export interface CacheAsideOptions<V> {
  /** Metric label and part of the key: `<keyPrefix><name>:<id>`. */
  name: string;
  redis: Redis | undefined;
  /** Namespace of every key (per deployment, per test run). */
  keyPrefix: string;
  ttlSeconds: number;
  codec: CacheCodec<V>;
  /** How long a tombstone blocks older fills (default 60 s; > slowest load). */
  tombstoneTtlSeconds?: number;
  /** Budget of one Redis operation before falling back (default 250 ms). */
  timeoutMs?: number;
  registry?: Registry;
  logger?: CacheLogger;
  logEveryMs?: number;
}

export interface CacheAside<V> {
  /** The cached value, or the loader's (stored for the next reader). */
  get(id: string, load: () => Promise<V | undefined>): Promise<V | undefined>;
  /** Like get for many ids: one MGET, one loader call for all misses. */
  getMany(
    ids: readonly string[],
    load: (missing: string[]) => Promise<Map<string, V>>,
  ): Promise<Map<string, V>>;
  /** Drops the entry; fills older than `version` are refused until the tombstone expires. */
  invalidate(id: string, version: number): Promise<void>;
  invalidateMany(entries: readonly { id: string; version: number }[]): Promise<void>;
  key(id: string): string;
}

export class CacheUnavailableError extends Error {
  override name = "CacheUnavailableError";
}

const VERSION_OF = `local function version_of(v)
  if not v then return nil end
  local n = string.match(v, '^[VT](%d+)|')
  if n then return tonumber(n) end
  return nil
end
`;

// KEYS[1] key; ARGV[1] version, ARGV[2] entry, ARGV[3] ttl seconds
const FILL = `${VERSION_OF}
local current = version_of(redis.call('GET', KEYS[1]))
if current and current > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1`;

// KEYS[1] key; ARGV[1] version, ARGV[2] tombstone ttl seconds
// An entry already at (or past) the invalidated version is current: keep it.
// A late event for the version a reader just cached must not evict it.
const INVALIDATE = `${VERSION_OF}
local current = version_of(redis.call('GET', KEYS[1]))
if current and current >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], 'T' .. ARGV[1] .. '|', 'EX', ARGV[2])
return 1`;

const sha1 = (text: string) => createHash("sha1").update(text).digest("hex");
const SCRIPTS = {
  fill: { lua: FILL, sha: sha1(FILL) },
  invalidate: { lua: INVALIDATE, sha: sha1(INVALIDATE) },
};

const VALUE = 0x56; // 'V'
const PIPE = 0x7c; // '|'

function encodeEntry(version: number, payload: Uint8Array): Buffer {
  const head = Buffer.from(`V${version}|`, "latin1");
  return Buffer.concat([head, payload]);
}

/** Version and payload of a value entry; undefined for tombstones and garbage. */
function decodeEntry(entry: Buffer | null): { version: number; payload: Uint8Array } | undefined {
  if (!entry || entry.length < 3 || entry[0] !== VALUE) return undefined;
  const bar = entry.indexOf(PIPE);
  if (bar < 2) return undefined;
  const version = Number(entry.subarray(1, bar).toString("latin1"));
  if (!Number.isSafeInteger(version)) return undefined;
  return { version, payload: entry.subarray(bar + 1) };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new CacheUnavailableError(`redis ${what} timed out after ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function createCacheAside<V>(options: CacheAsideOptions<V>): CacheAside<V> {
  const {
    name,
    redis,
    keyPrefix,
    ttlSeconds,
    codec,
    tombstoneTtlSeconds = 60,
    timeoutMs = 250,
    logger,
    logEveryMs = 10_000,
  } = options;
  const metrics = cacheMetrics(options.registry);
  const counts = metrics.track(name);
  const flights = createSingleFlight<V | undefined>();
  const key = (id: string) => `${keyPrefix}${name}:${id}`;
  let lastLog = 0;
  let degraded = false;

  const failed = (operation: string, error: unknown) => {
    metrics.errors.inc({ cache: name, operation });
    const now = Date.now();
    if (!degraded || now - lastLog >= logEveryMs) {
      lastLog = now;
      logger?.warn(
        { cache: name, operation, err: error },
        "cache unavailable; serving from the source of truth",
      );
    }
    degraded = true;
  };
  const recovered = () => {
    if (degraded) {
      degraded = false;
      logger?.info({ cache: name }, "cache available again");
    }
  };

  /** Runs a Redis call within the budget; undefined when Redis is unusable. */
  async function attempt<T>(
    operation: string,
    call: (client: Redis) => Promise<T>,
  ): Promise<T | undefined> {
    if (!redis) return undefined;
    if (redis.status !== "ready") {
      failed(operation, new CacheUnavailableError(`redis ${redis.status}`));
      return undefined;
    }
    try {
      const result = await withTimeout(call(redis), timeoutMs, operation);
      recovered();
      return result;
    } catch (error) {
      failed(operation, error);
      return undefined;
    }
  }

  async function script(
    client: Redis,
    which: keyof typeof SCRIPTS,
    keyName: string,
    args: (string | Buffer)[],
  ) {
    const { lua, sha } = SCRIPTS[which];
    try {
      return await client.evalsha(sha, 1, keyName, ...args);
    } catch (error) {
      if (error instanceof Error && error.message.startsWith("NOSCRIPT")) {
        return client.eval(lua, 1, keyName, ...args);
      }
      throw error;
    }
  }

  const fill = (id: string, value: V) => {
    const version = codec.version(value);
    return attempt("fill", (client) =>
      script(client, "fill", key(id), [
        String(version),
        encodeEntry(version, codec.encode(value)),
        String(ttlSeconds),
      ]),
    );
  };

  const invalidate = async (id: string, version: number) => {
    await attempt("invalidate", (client) =>
      script(client, "invalidate", key(id), [String(version), String(tombstoneTtlSeconds)]),
    );
  };

  return {
    key,
    invalidate,
    get(id, load) {
      return flights.run(id, async () => {
        const cached = await attempt("get", (client) => client.getBuffer(key(id)));
        if (cached === undefined) {
          // Redis unusable: straight to the source, no fill attempt.
          metrics.requests.inc({ cache: name, result: "bypass" });
          metrics.fallbacks.inc({ cache: name });
          return load();
        }
        const entry = decodeEntry(cached);
        if (entry) {
          try {
            const value = codec.decode(entry.payload, entry.version);
            counts.hits++;
            metrics.requests.inc({ cache: name, result: "hit" });
            return value;
          } catch (error) {
            failed("decode", error);
          }
        }
        counts.misses++;
        metrics.requests.inc({ cache: name, result: "miss" });
        const value = await load();
        if (value !== undefined) await fill(id, value);
        return value;
      });
    },
    async getMany(ids, load) {
      const unique = [...new Set(ids)];
      const out = new Map<string, V>();
      if (unique.length === 0) return out;
      const cached = await attempt("mget", (client) => client.mgetBuffer(...unique.map(key)));
      if (cached === undefined) {
        metrics.requests.inc({ cache: name, result: "bypass" }, unique.length);
        metrics.fallbacks.inc({ cache: name });
        return load(unique);
      }
      const missing: string[] = [];
      unique.forEach((id, index) => {
        const entry = decodeEntry(cached[index] ?? null);
        if (entry) {
          try {
            out.set(id, codec.decode(entry.payload, entry.version));
            return;
          } catch (error) {
            failed("decode", error);
          }
        }
        missing.push(id);
      });
      counts.hits += out.size;
      counts.misses += missing.length;
      if (out.size > 0) metrics.requests.inc({ cache: name, result: "hit" }, out.size);
      if (missing.length === 0) return out;
      metrics.requests.inc({ cache: name, result: "miss" }, missing.length);
      const loaded = await load(missing);
      const fills: Promise<unknown>[] = [];
      for (const [id, value] of loaded) {
        out.set(id, value);
        fills.push(fill(id, value));
      }
      await Promise.all(fills);
      return out;
    },
    async invalidateMany(entries) {
      await Promise.all(entries.map((e) => invalidate(e.id, e.version)));
    },
  };
}
