import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Interceptor } from "@connectrpc/connect";
import { connect as connectNats, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import type { Logger } from "pino";
import { createAccessPolicyInterceptor } from "../auth/access-policy-interceptor.js";
import { loadAuthConfig } from "../auth/auth-config.js";
import { createMeshTokenVerifier } from "../auth/mesh-verifier.js";
import { createServiceTokenInterceptor, createServiceTokenSource } from "../auth/service-tokens.js";
import type { TokenVerifier } from "../auth/token-verifier.js";
import { createServiceClient, createUpstream, type Upstream } from "../clients/service-client.js";
import { ConfigError } from "../config/env.js";
import {
  loadServiceConfig,
  type ServiceConfig,
  type ServiceName,
} from "../config/service-config.js";
import { createDatabase, type Database, migrateDatabase } from "../db/postgres.js";
import { type ReadinessCheck, ReadinessMonitor } from "../health/readiness.js";
import { createLogger } from "../log/logger.js";
import {
  createRpcServer,
  type RpcServerOptions,
  type ServiceRegistration,
} from "../server/rpc-server.js";
import { createMetrics, type Metrics } from "../telemetry/metrics.js";
import { setupTracing } from "../telemetry/tracing.js";

export { createServiceClient };

/** Something that runs beside the RPC server (outbox relay, consumers, sweepers). */
export interface BackgroundTask {
  name: string;
  start(): Promise<void> | void;
  /** Stop taking new work, finish what is in flight. */
  stop(): Promise<void> | void;
}

export interface ServiceRuntime {
  config: ServiceConfig;
  logger: Logger;
  metrics: Metrics;
  /** Present when the service declared `postgres`. */
  database: Database | undefined;
  redis: Redis | undefined;
  nats: NatsConnection | undefined;
  /** A resilient connection to another service (deadlines, retries, breaker). */
  upstream(name: ServiceName): Upstream;
}

export interface ServiceDefinition {
  /** A mesh service name; its default port comes from SERVICE_PORTS. */
  name: ServiceName | (string & {});
  /** drizzle-kit output folder (URL relative to the service's main.ts). */
  migrations?: URL;
  needs?: { postgres?: boolean; redis?: boolean; nats?: boolean };
  build(runtime: ServiceRuntime): Promise<ServiceDefinitionResult> | ServiceDefinitionResult;
}

export interface ServiceDefinitionResult {
  services: ServiceRegistration[];
  background?: BackgroundTask[];
  /** Server interceptors run inside the platform one and the access policy. */
  interceptors?: Interceptor[];
  /** Verifies bearer tokens; default: identity's JWKS (+ service tokens). */
  tokenVerifier?: TokenVerifier;
  /** Extra front-door handlers for the server (the edge); see RpcServerOptions. */
  http?: Pick<RpcServerOptions, "httpHandler" | "streamHandler" | "upgradeHandler">;
}

export interface RunningService {
  port: number;
  runtime: ServiceRuntime;
  readiness: ReadinessMonitor;
  /** Connects dependencies, applies migrations; resolves when ready once. */
  ready: Promise<void>;
  shutdown(reason?: string): Promise<void>;
}

/**
 * The composition every service shares: config → logs/metrics/tracing →
 * server (up at once, not ready) → dependencies + migrations in the
 * background with retries → ready. SIGTERM/SIGINT → graceful stop, exit 0.
 */
export async function runService(
  definition: ServiceDefinition,
  options: { env?: NodeJS.ProcessEnv; handleSignals?: boolean } = {},
): Promise<RunningService> {
  let config: ServiceConfig;
  let authConfig: ReturnType<typeof loadAuthConfig>;
  try {
    config = loadServiceConfig(definition.name, options.env ?? process.env);
    authConfig = loadAuthConfig(options.env ?? process.env);
  } catch (error) {
    if (error instanceof ConfigError && (options.handleSignals ?? true)) {
      process.stderr.write(`${definition.name}: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger({ service: definition.name, level: config.logLevel });
  const metrics = createMetrics(definition.name);
  const tracing = setupTracing({ service: definition.name, otlpEndpoint: config.otlpEndpoint });
  const needs = definition.needs ?? {};

  const database = needs.postgres
    ? createDatabase({
        url: config.databaseUrl,
        replicaUrl: config.databaseReplicaUrl,
        schema: config.dbSchema,
        maxConnections: config.databasePoolMax,
        applicationName: definition.name,
      })
    : undefined;
  const redis = needs.redis
    ? new Redis(config.redisUrl, {
        lazyConnect: true,
        maxRetriesPerRequest: 1,
        enableOfflineQueue: false,
        connectTimeout: 2000,
        // Commands issued in one tick leave in one write (e.g. the cache reads
        // of calls that arrived pipelined together).
        enableAutoPipelining: true,
      })
    : undefined;
  redis?.on("error", (error) => logger.debug({ err: error }, "redis error"));
  const upstreams = new Map<ServiceName, Upstream>();
  const serviceTokens = authConfig.serviceTokenSecret
    ? createServiceTokenSource({
        service: definition.name,
        secret: authConfig.serviceTokenSecret,
        issuer: authConfig.serviceIssuer,
        audience: authConfig.audience,
      })
    : undefined;
  const runtime: ServiceRuntime = {
    config,
    logger,
    metrics,
    database,
    redis,
    nats: undefined,
    upstream(name) {
      let upstream = upstreams.get(name);
      if (!upstream) {
        upstream = createUpstream({
          name,
          baseUrl: config.upstreams[name],
          maxMessageBytes: config.limits.maxMessageBytes,
          maxTimeoutMs: config.limits.maxDeadlineMs,
          // Mesh-internal calls act as this service (role "service").
          interceptors: serviceTokens ? [createServiceTokenInterceptor(serviceTokens)] : [],
        });
        upstreams.set(name, upstream);
      }
      return upstream;
    },
  };

  let migrated = !database || !definition.migrations;
  const checks: ReadinessCheck[] = [];
  if (database) {
    checks.push({
      name: "postgres",
      check: async () => {
        await database.ping();
        if (!migrated) throw new Error("migrations not applied yet");
      },
    });
  }
  if (redis) {
    checks.push({
      name: "redis",
      check: async () => {
        if (redis.status !== "ready") throw new Error(`redis ${redis.status}`);
        await redis.ping();
      },
    });
  }
  if (needs.nats) {
    checks.push({
      name: "nats",
      check: async () => {
        if (!runtime.nats || runtime.nats.isClosed()) throw new Error("nats not connected");
        await runtime.nats.rtt();
      },
    });
  }
  const readiness = new ReadinessMonitor(checks);
  const built = await definition.build(runtime);
  // Every service enforces the contract's access policies (defense in depth).
  const accessPolicy = createAccessPolicyInterceptor({
    verifier:
      built.tokenVerifier ??
      createMeshTokenVerifier(authConfig, () => runtime.upstream("identity")),
    logger,
  });
  const server = createRpcServer({
    name: definition.name,
    host: config.host,
    port: config.port,
    services: built.services,
    logger,
    metrics,
    readiness,
    limits: config.limits,
    interceptors: [accessPolicy, ...(built.interceptors ?? [])],
    ...built.http,
  });
  const port = await server.listen();

  const stopping = new AbortController();
  const background = built.background ?? [];
  const ready = (async () => {
    await retryUntil(stopping.signal, logger, "dependencies", async () => {
      if (redis && redis.status === "wait") await redis.connect();
      if (needs.nats && !runtime.nats) {
        runtime.nats = await connectNats({
          servers: config.natsUrl,
          name: definition.name,
          maxReconnectAttempts: -1,
          // Async stack capture costs an Error per request; our logs carry trace ids instead.
          noAsyncTraces: true,
          reconnectTimeWait: 500,
        });
      }
      if (database && definition.migrations && !migrated) {
        const folder = fileURLToPath(definition.migrations);
        // A service that declares migrations must ship them: starting without
        // its tables and reporting ready would be worse than not starting.
        if (!existsSync(folder)) throw new Error(`migrations folder ${folder} is missing`);
        await migrateDatabase({ url: config.databaseUrl, schema: config.dbSchema }, folder);
        migrated = true;
      }
    });
    for (const task of background) await task.start();
    await readiness.start();
    logger.info({ port, ready: readiness.ready }, "started");
  })();

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (reason = "shutdown") => {
    shuttingDown ??= (async () => {
      logger.info({ reason }, "shutting down");
      stopping.abort();
      await server.close();
      for (const task of [...background].reverse()) {
        try {
          await task.stop();
        } catch (error) {
          logger.error({ err: error, task: task.name }, "background task failed to stop");
        }
      }
      await runtime.nats?.drain().catch(() => {});
      if (redis) redis.disconnect();
      await database?.close();
      await tracing.shutdown().catch(() => {});
      logger.info("stopped");
    })();
    return shuttingDown;
  };

  if (options.handleSignals ?? true) {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      process.once(signal, () => {
        shutdown(signal).then(
          () => process.exit(0),
          (error) => {
            logger.error({ err: error }, "shutdown failed");
            process.exit(1);
          },
        );
      });
    }
  }
  ready.catch((error) => logger.error({ err: error }, "start-up failed"));
  return { port, runtime, readiness, ready, shutdown };
}

async function retryUntil(
  signal: AbortSignal,
  logger: Logger,
  what: string,
  fn: () => Promise<void>,
): Promise<void> {
  let delay = 250;
  for (;;) {
    try {
      await fn();
      return;
    } catch (error) {
      if (signal.aborted) throw error;
      logger.warn({ err: error, retryInMs: delay }, `${what} not available yet`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }
}
