import { Counter, Gauge, type Registry } from "prom-client";

export interface CacheMetrics {
  requests: Counter<"cache" | "result">;
  errors: Counter<"cache" | "operation">;
  fallbacks: Counter<"cache">;
  /** Hits and misses per cache since start, read by the hit-ratio gauge. */
  track(cache: string): { hits: number; misses: number };
}

const byRegistry = new WeakMap<Registry, CacheMetrics>();

/**
 * Metrics are registered once per registry (prom-client refuses duplicate
 * names); several caches in one process share them through the `cache` label.
 */
export function cacheMetrics(registry: Registry | undefined): CacheMetrics {
  const existing = registry ? byRegistry.get(registry) : undefined;
  if (existing) return existing;
  const registers = registry ? [registry] : [];
  const counts = new Map<string, { hits: number; misses: number }>();
  const metrics: CacheMetrics = {
    requests: new Counter({
      name: "cache_requests_total",
      help: "Cache lookups by result: hit, miss (loaded from the source), bypass (cache unavailable).",
      labelNames: ["cache", "result"],
      registers,
    }),
    errors: new Counter({
      name: "cache_errors_total",
      help: "Failed cache operations (Redis down, timeout); reads fell back to the source.",
      labelNames: ["cache", "operation"],
      registers,
    }),
    fallbacks: new Counter({
      name: "cache_fallback_total",
      help: "Reads served from the source because the cache was unavailable.",
      labelNames: ["cache"],
      registers,
    }),
    track(cache) {
      let entry = counts.get(cache);
      if (!entry) {
        entry = { hits: 0, misses: 0 };
        counts.set(cache, entry);
      }
      return entry;
    },
  };
  new Gauge({
    name: "cache_hit_ratio",
    help: "Hits / (hits + misses) since the process started, per cache.",
    labelNames: ["cache"],
    registers,
    collect() {
      for (const [cache, { hits, misses }] of counts) {
        const total = hits + misses;
        this.set({ cache }, total === 0 ? 0 : hits / total);
      }
    },
  });
  if (registry) byRegistry.set(registry, metrics);
  return metrics;
}
