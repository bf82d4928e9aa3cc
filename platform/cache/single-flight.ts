/**
 * Collapses concurrent calls for the same key into one: the first caller runs
 * `fn`, everyone arriving while it runs gets the same promise. Protects the
 * database from a stampede when a hot cache entry expires or is invalidated.
 */
export interface SingleFlight<V> {
  run(key: string, fn: () => Promise<V>): Promise<V>;
  /** Calls currently in flight (for tests and metrics). */
  readonly size: number;
}

export function createSingleFlight<V>(): SingleFlight<V> {
  const flights = new Map<string, Promise<V>>();
  return {
    run(key, fn) {
      const existing = flights.get(key);
      if (existing) return existing;
      const flight = (async () => {
        try {
          return await fn();
        } finally {
          flights.delete(key);
        }
      })();
      flights.set(key, flight);
      return flight;
    },
    get size() {
      return flights.size;
    },
  };
}
