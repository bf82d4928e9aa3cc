import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  ConfigError,
  type Env,
  readBool,
  readInt,
  readOptionalString,
  readString,
  readUrl,
} from "../../platform/config/env.js";

/**
 * Everything `npm start` needs, read once from the environment. The variable
 * names and defaults are the services' own (HOST, DATABASE_URL, NATS_URL,
 * REDIS_URL, LOG_LEVEL, OTEL_EXPORTER_OTLP_ENDPOINT, ...; all passed through
 * to every service) so a developer configures the mesh exactly as they would
 * configure one service. Knobs of the starter itself:
 *
 *   MESH_PORT_BASE         edge port; identity, catalog, orders, payments take the next four (8080)
 *   MESH_SCHEMA_PREFIX     prefix of every service's DB_SCHEMA, e.g. "t_ab12_" ("")
 *   MESH_DATA_DIR          lock file and data of locally started servers (.data)
 *   MESH_READY_TIMEOUT_MS  how long infrastructure and each service may take to get ready (120000)
 *   MESH_STOP_GRACE_MS     SIGTERM → SIGKILL grace per process on shutdown (15000)
 *   MESH_SEED              run services/<name>/seed.ts after start-up (true)
 *   NO_COLOR / FORCE_COLOR coloured [service] tags (on when stdout is a terminal)
 */

export const SERVICE_NAMES = ["identity", "catalog", "orders", "payments", "edge"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

/** Port = MESH_PORT_BASE + offset; with the default base these are the services' own defaults. */
const PORT_OFFSETS: Record<ServiceName, number> = {
  edge: 0,
  identity: 1,
  catalog: 2,
  orders: 3,
  payments: 4,
};

/** Env name of the address other processes use to reach a service (platform/config/service-config.ts). */
const upstreamEnv = (name: ServiceName) => `${name.toUpperCase()}_URL`;

export interface ServicePlan {
  readonly name: ServiceName;
  readonly port: number;
  readonly schema: string;
  /** Base URL other processes use to reach it (never 0.0.0.0). */
  readonly url: string;
}

export interface MeshConfig {
  readonly repoRoot: string;
  readonly dataDir: string;
  readonly host: string;
  readonly databaseUrl: string;
  readonly natsUrl: string;
  readonly redisUrl: string;
  readonly services: readonly ServicePlan[];
  readonly readyTimeoutMs: number;
  readonly stopGraceMs: number;
  readonly seed: boolean;
  readonly color: boolean;
  /** Shared by every service for mesh-internal calls (platform/auth service tokens). */
  readonly serviceTokenSecret: string;
}

export const DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/commerce";
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

const SCHEMA_PREFIX = /^[a-z_][a-z0-9_]{0,40}$/;

/** The repository root, both when run by tsx from deploy/local and compiled under dist/deploy/local. */
export function moduleRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
}

/** True when this code runs as compiled JS (dist/), where children are started without tsx. */
export function runningCompiled(): boolean {
  return import.meta.url.endsWith(".js");
}

/**
 * Command that runs a script of this repository given its path without
 * extension relative to the root, e.g. "services/catalog/main".
 */
export function scriptCommand(
  root: string,
  relativeNoExt: string,
): { args: string[]; file: string } {
  if (runningCompiled()) {
    const file = path.join(root, `${relativeNoExt}.js`);
    return { file, args: [file] };
  }
  const file = path.join(root, `${relativeNoExt}.ts`);
  return { file, args: ["--import", "tsx", file] };
}

export function readMeshConfig(env: Env, root: string = moduleRoot()): MeshConfig {
  const portBase = readInt(env, "MESH_PORT_BASE", 8080, { min: 1, max: 65535 - 4 });
  const host = readString(env, "HOST", "127.0.0.1");
  const prefix = readOptionalString(env, "MESH_SCHEMA_PREFIX") ?? "";
  if (prefix !== "" && !SCHEMA_PREFIX.test(prefix)) {
    throw new ConfigError(
      "MESH_SCHEMA_PREFIX",
      `must be lower-case letters, digits and underscores, got "${prefix}"`,
    );
  }
  // A wildcard listen address is not something a client can dial.
  const dialHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  const urlHost = dialHost.includes(":") ? `[${dialHost}]` : dialHost;
  const services = SERVICE_NAMES.map((name) => {
    const port = portBase + PORT_OFFSETS[name];
    return { name, port, schema: `${prefix}${name}`, url: `http://${urlHost}:${port}` };
  });
  const dataDir = path.resolve(root, readString(env, "MESH_DATA_DIR", ".data"));
  const noColor = env["NO_COLOR"] !== undefined && env["NO_COLOR"] !== "";
  return {
    repoRoot: root,
    dataDir,
    host,
    databaseUrl: readUrl(env, "DATABASE_URL", DEFAULT_DATABASE_URL, ["postgres:", "postgresql:"]),
    natsUrl: readUrl(env, "NATS_URL", DEFAULT_NATS_URL, ["nats:", "tls:"]),
    redisUrl: readUrl(env, "REDIS_URL", DEFAULT_REDIS_URL, ["redis:", "rediss:"]),
    services,
    readyTimeoutMs: readInt(env, "MESH_READY_TIMEOUT_MS", 120_000, { min: 1000 }),
    stopGraceMs: readInt(env, "MESH_STOP_GRACE_MS", 15_000, { min: 100 }),
    seed: readBool(env, "MESH_SEED", true),
    // One random secret per local mesh unless the caller pins one.
    serviceTokenSecret:
      readOptionalString(env, "SERVICE_TOKEN_SECRET") ?? randomBytes(32).toString("base64url"),
    color: !noColor && (readBool(env, "FORCE_COLOR", false) || process.stdout.isTTY === true),
  };
}

/** Environment of one service process: the caller's env plus its port, schema and every address. */
export function serviceEnv(
  config: MeshConfig,
  service: ServicePlan,
  base: Env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(base)) if (value !== undefined) env[key] = value;
  Object.assign(env, {
    PORT: String(service.port),
    HOST: config.host,
    DB_SCHEMA: service.schema,
    DATABASE_URL: config.databaseUrl,
    NATS_URL: config.natsUrl,
    REDIS_URL: config.redisUrl,
    SERVICE_TOKEN_SECRET: config.serviceTokenSecret,
  });
  for (const upstream of config.services) env[upstreamEnv(upstream.name)] = upstream.url;
  return env;
}
