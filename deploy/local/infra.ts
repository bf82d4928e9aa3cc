import { accessSync, constants, existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect as connectNats } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import postgres from "postgres";
import { redact } from "../../platform/config/env.js";
import { type MeshConfig, scriptCommand } from "./mesh-config.js";
import { type LinePrinter, type ManagedProcess, startProcess } from "./processes.js";
import { tcpReachable, waitUntil } from "./readiness.js";

/**
 * The mesh's infrastructure: use what runs at the configured URLs, start a
 * local server (data under the mesh's data dir) for whatever does not, and
 * otherwise stop with the command that installs it. There is deliberately no
 * in-memory fallback: a fake broker or database would hide exactly the
 * behaviour (durability, transactions, redelivery) the services rely on.
 */

export type InfraKind = "postgres" | "nats" | "redis";

export class InfraError extends Error {
  override name = "InfraError";
}

export interface InfraTarget {
  kind: InfraKind;
  url: string;
  host: string;
  port: number;
}

const DEFAULT_PORTS: Record<InfraKind, number> = { postgres: 5432, nats: 4222, redis: 6379 };
const LABELS: Record<InfraKind, string> = { postgres: "Postgres", nats: "NATS", redis: "Redis" };
const ENV_NAMES: Record<InfraKind, string> = {
  postgres: "DATABASE_URL",
  nats: "NATS_URL",
  redis: "REDIS_URL",
};

export function infraTarget(kind: InfraKind, url: string): InfraTarget {
  const parsed = new URL(url);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = parsed.port === "" ? DEFAULT_PORTS[kind] : Number(parsed.port);
  return { kind, url, host, port };
}

export function isLocalHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

// ---------------------------------------------------------------- checks

function adminUrl(url: string): string {
  const admin = new URL(url);
  admin.pathname = "/postgres";
  return admin.toString();
}

export function databaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, "")) || "postgres";
}

/** A real query against the server (the target database may not exist yet). */
export async function checkPostgres(url: string): Promise<void> {
  const sql = postgres(adminUrl(url), { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    await sql`select 1`;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** Creates the database named in the URL when missing; returns whether it did. */
export async function ensureDatabase(url: string): Promise<boolean> {
  const name = databaseName(url);
  const sql = postgres(adminUrl(url), { max: 1, connect_timeout: 5, onnotice: () => {} });
  try {
    const rows = await sql`select 1 from pg_database where datname = ${name}`;
    if (rows.length > 0) return false;
    try {
      await sql.unsafe(`create database "${name.replace(/"/g, '""')}"`);
      return true;
    } catch (error) {
      // Another starter created it between our check and create.
      if ((error as { code?: string }).code === "42P04") return false;
      throw error;
    }
  } finally {
    await sql.end({ timeout: 1 });
  }
}

export async function checkRedis(url: string): Promise<void> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 2000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  redis.on("error", () => {});
  try {
    await redis.connect();
    const pong = await redis.ping();
    if (pong !== "PONG") throw new InfraError(`unexpected PING reply "${pong}"`);
  } finally {
    redis.disconnect();
  }
}

export class JetStreamDisabledError extends InfraError {
  override name = "JetStreamDisabledError";
}

export async function checkNats(url: string): Promise<void> {
  const nc = await connectNats({ servers: url, timeout: 2000, reconnect: false });
  try {
    try {
      const jsm = await jetstreamManager(nc, { timeout: 2000 });
      await jsm.getAccountInfo();
    } catch (error) {
      throw new JetStreamDisabledError(
        "the server answers but JetStream is not enabled (start it with -js)",
        { cause: error },
      );
    }
  } finally {
    await nc.close();
  }
}

const CHECKS: Record<InfraKind, (url: string) => Promise<void>> = {
  postgres: checkPostgres,
  nats: checkNats,
  redis: checkRedis,
};

// ---------------------------------------------------------------- binaries

const SYSTEM_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

export function findExecutable(
  name: string,
  envPath = process.env["PATH"] ?? "",
): string | undefined {
  const dirs = [...envPath.split(path.delimiter).filter(Boolean), ...SYSTEM_DIRS];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

const PACKAGES: Record<"nats" | "redis", { apt: string; dnf: string; apk: string; brew: string }> =
  {
    nats: { apt: "nats-server", dnf: "nats-server", apk: "nats-server", brew: "nats-server" },
    redis: { apt: "redis-server", dnf: "redis", apk: "redis", brew: "redis" },
  };

/** The exact command that installs the server on this machine's package manager. */
export function installCommand(kind: "nats" | "redis"): string {
  const pkg = PACKAGES[kind];
  if (process.platform === "darwin") return `brew install ${pkg.brew}`;
  const sudo = process.getuid?.() === 0 ? "" : "sudo ";
  if (existsSync("/usr/bin/apt-get")) return `${sudo}apt-get install -y ${pkg.apt}`;
  if (existsSync("/usr/bin/dnf")) return `${sudo}dnf install -y ${pkg.dnf}`;
  if (existsSync("/sbin/apk")) return `${sudo}apk add ${pkg.apk}`;
  return `${sudo}apt-get install -y ${pkg.apt}`;
}

// ---------------------------------------------------------------- local servers

export interface LocalServerCommand {
  command: string;
  args: string[];
  env?: Record<string, string>;
}

export function localNatsCommand(
  target: InfraTarget,
  dataDir: string,
  find: (name: string) => string | undefined = findExecutable,
): LocalServerCommand {
  const binary = find("nats-server");
  if (!binary) {
    throw new InfraError(
      `NATS is not reachable at ${redact(target.url)} and nats-server is not installed.\n` +
        `Install it with:  ${installCommand("nats")}\n` +
        `or point ${ENV_NAMES.nats} at a running NATS server with JetStream enabled.`,
    );
  }
  const storeDir = path.join(dataDir, "nats");
  mkdirSync(storeDir, { recursive: true });
  return {
    command: binary,
    args: ["-a", target.host, "-p", String(target.port), "-js", "-sd", storeDir],
  };
}

export function localRedisCommand(
  target: InfraTarget,
  dataDir: string,
  find: (name: string) => string | undefined = findExecutable,
): LocalServerCommand {
  const binary = find("redis-server");
  if (!binary) {
    throw new InfraError(
      `Redis is not reachable at ${redact(target.url)} and redis-server is not installed.\n` +
        `Install it with:  ${installCommand("redis")}\n` +
        `or point ${ENV_NAMES.redis} at a running Redis server.`,
    );
  }
  const dir = path.join(dataDir, "redis");
  mkdirSync(dir, { recursive: true });
  // Command-line arguments replace a config file: nothing outside .data/ is read or written.
  return {
    command: binary,
    args: [
      "--bind",
      target.host,
      "--port",
      String(target.port),
      "--dir",
      dir,
      "--save",
      "60 1",
      "--appendonly",
      "no",
      "--daemonize",
      "no",
    ],
  };
}

export function localPostgresCommand(
  target: InfraTarget,
  dataDir: string,
  root: string,
): LocalServerCommand {
  const url = new URL(target.url);
  const { args } = scriptCommand(root, "deploy/local/postgres-runner");
  return {
    command: process.execPath,
    args,
    env: {
      MESH_PG_DIR: path.join(dataDir, "postgres"),
      MESH_PG_HOST: target.host,
      MESH_PG_PORT: String(target.port),
      MESH_PG_USER: decodeURIComponent(url.username) || "postgres",
      MESH_PG_PASSWORD: decodeURIComponent(url.password),
    },
  };
}

export interface EnsureInfraOptions {
  config: Pick<MeshConfig, "databaseUrl" | "natsUrl" | "redisUrl" | "dataDir" | "repoRoot">;
  print: LinePrinter;
  /** Called as soon as a local server process exists, so shutdown can stop it even mid-start. */
  onStarted: (process: ManagedProcess) => void;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface InfraReport {
  kind: InfraKind;
  url: string;
  started: boolean;
}

/** Makes Postgres, NATS and Redis reachable, starting local ones as needed. */
export async function ensureInfra(options: EnsureInfraOptions): Promise<InfraReport[]> {
  const { config } = options;
  const urls: Record<InfraKind, string> = {
    postgres: config.databaseUrl,
    nats: config.natsUrl,
    redis: config.redisUrl,
  };
  const kinds: InfraKind[] = ["postgres", "nats", "redis"];
  const results = await Promise.allSettled(
    kinds.map((kind) => ensureOne(infraTarget(kind, urls[kind]), options)),
  );
  const failures = results.flatMap((result) =>
    result.status === "rejected" ? [result.reason as unknown] : [],
  );
  if (failures.length > 0) throw failures[0];
  return results.map((result) => (result as PromiseFulfilledResult<InfraReport>).value);
}

async function ensureOne(target: InfraTarget, options: EnsureInfraOptions): Promise<InfraReport> {
  const label = LABELS[target.kind];
  const shownUrl = redact(target.url);
  const check = CHECKS[target.kind];
  if (await tcpReachable(target.host, target.port)) {
    try {
      await check(target.url);
    } catch (error) {
      const detail = error instanceof InfraError ? error.message : String(error);
      throw new InfraError(`${label} at ${shownUrl} is listening but not usable: ${detail}`, {
        cause: error,
      });
    }
    return { kind: target.kind, url: target.url, started: false };
  }
  if (!isLocalHost(target.host)) {
    throw new InfraError(
      `${label} is not reachable at ${shownUrl}. It is not on this machine, so it cannot be ` +
        `started here: start it there, or unset ${ENV_NAMES[target.kind]} to use a local one.`,
    );
  }
  const dataDir = options.config.dataDir;
  const spec =
    target.kind === "postgres"
      ? localPostgresCommand(target, dataDir, options.config.repoRoot)
      : target.kind === "nats"
        ? localNatsCommand(target, dataDir)
        : localRedisCommand(target, dataDir);
  options.print(
    "mesh",
    `${label} not reachable at ${shownUrl}; starting a local one (data in ${dataDir})`,
  );
  const child = startProcess({
    tag: target.kind,
    command: spec.command,
    args: spec.args,
    cwd: options.config.repoRoot,
    env: { ...process.env, ...spec.env },
    print: options.print,
  });
  options.onStarted(child);
  await waitUntil({
    tag: target.kind,
    what: `connecting to ${shownUrl}`,
    check: async () => {
      await check(target.url);
      return true;
    },
    timeoutMs: options.timeoutMs ?? 90_000,
    process: child,
    signal: options.signal,
    intervalMs: 300,
  });
  return { kind: target.kind, url: target.url, started: true };
}
