import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

/** One registry per process; every component registers its metrics here. */
export interface Metrics {
  registry: Registry;
  rpcDuration: Histogram<"rpc_service" | "rpc_method" | "rpc_grpc_status_code">;
  rpcTotal: Counter<"rpc_service" | "rpc_method" | "rpc_grpc_status_code">;
}

export function createMetrics(service: string, options: { defaults?: boolean } = {}): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  if (options.defaults ?? true) collectDefaultMetrics({ register: registry });
  const labelNames = ["rpc_service", "rpc_method", "rpc_grpc_status_code"] as const;
  return {
    registry,
    rpcDuration: new Histogram({
      name: "rpc_server_duration_seconds",
      help: "Duration of RPCs served, by method and status code.",
      labelNames,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    rpcTotal: new Counter({
      name: "rpc_server_requests_total",
      help: "RPCs served, by method and status code.",
      labelNames,
      registers: [registry],
    }),
  };
}

/**
 * A value made once per key, e.g. the label child of a hot metric: a labelled
 * `inc`/`observe` hashes its label object on every call, a child does not.
 */
export function perKey<A extends unknown[], V>(
  keyOf: (...args: A) => string,
  make: (...args: A) => V,
): (...args: A) => V {
  const made = new Map<string, V>();
  return (...args) => {
    const key = keyOf(...args);
    let value = made.get(key);
    if (value === undefined) {
      value = make(...args);
      made.set(key, value);
    }
    return value;
  };
}
