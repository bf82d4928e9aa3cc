import {
  ConfigError,
  type Env,
  readEnum,
  readInt,
  readOptionalString,
  readOptionalUrl,
  readPort,
  readString,
  readUrl,
} from "./env.js";

/** Default local ports; the edge is the public door on 8080. */
export const SERVICE_PORTS = {
  edge: 8080,
  identity: 8081,
  catalog: 8082,
  orders: 8083,
  payments: 8084,
} as const;

export type ServiceName = keyof typeof SERVICE_PORTS;

export interface ServiceConfig {
  service: string;
  host: string;
  port: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  databaseUrl: string;
  databaseReplicaUrl: string | undefined;
  dbSchema: string;
  /** Connections per pool (primary and replica each). */
  databasePoolMax: number;
  natsUrl: string;
  redisUrl: string;
  otlpEndpoint: string | undefined;
  limits: {
    maxMessageBytes: number;
    maxDeadlineMs: number;
    defaultDeadlineMs: number;
    maxConcurrentStreams: number;
    shutdownGraceMs: number;
  };
  /** Base URLs of the other services, for typed clients. */
  upstreams: Record<ServiceName, string>;
}

const POSTGRES = ["postgres:", "postgresql:"];
const HTTP = ["http:", "https:"];

/**
 * Reads and validates the whole configuration once, at start. Any bad value
 * throws a ConfigError naming the variable; `main` prints it and exits 1.
 */
export function loadServiceConfig(service: string, env: Env = process.env): ServiceConfig {
  const upstreams = Object.fromEntries(
    (Object.keys(SERVICE_PORTS) as ServiceName[]).map((name) => [
      name,
      readUrl(env, `${name.toUpperCase()}_URL`, `http://127.0.0.1:${SERVICE_PORTS[name]}`, HTTP),
    ]),
  ) as Record<ServiceName, string>;
  const schema = readString(env, "DB_SCHEMA", service);
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new ConfigError("DB_SCHEMA", `must be a lower-case SQL identifier, got "${schema}"`);
  }
  return {
    service,
    host: readString(env, "HOST", "127.0.0.1"),
    port: readPort(env, "PORT", SERVICE_PORTS[service as ServiceName] ?? 0),
    logLevel: readEnum(env, "LOG_LEVEL", "info", [
      "fatal",
      "error",
      "warn",
      "info",
      "debug",
      "trace",
      "silent",
    ] as const),
    databaseUrl: readUrl(
      env,
      "DATABASE_URL",
      "postgres://postgres@127.0.0.1:5432/commerce",
      POSTGRES,
    ),
    databaseReplicaUrl: readOptionalUrl(env, "DATABASE_REPLICA_URL", POSTGRES),
    dbSchema: schema,
    databasePoolMax: readInt(env, "DATABASE_POOL_MAX", 10, { min: 1, max: 500 }),
    natsUrl: readUrl(env, "NATS_URL", "nats://127.0.0.1:4222", ["nats:", "tls:"]),
    redisUrl: readUrl(env, "REDIS_URL", "redis://127.0.0.1:6379", ["redis:", "rediss:"]),
    otlpEndpoint: readOptionalString(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
      ? readUrl(env, "OTEL_EXPORTER_OTLP_ENDPOINT", "", HTTP)
      : undefined,
    limits: {
      maxMessageBytes: readInt(env, "RPC_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, {
        min: 1024,
        max: 64 * 1024 * 1024,
      }),
      maxDeadlineMs: readInt(env, "RPC_MAX_DEADLINE_MS", 60_000, { min: 100, max: 3_600_000 }),
      defaultDeadlineMs: readInt(env, "RPC_DEFAULT_DEADLINE_MS", 15_000, {
        min: 100,
        max: 3_600_000,
      }),
      maxConcurrentStreams: readInt(env, "HTTP2_MAX_CONCURRENT_STREAMS", 256, {
        min: 1,
        max: 10_000,
      }),
      shutdownGraceMs: readInt(env, "SHUTDOWN_GRACE_MS", 10_000, { min: 0, max: 300_000 }),
    },
    upstreams,
  };
}
