import { PaymentService } from "../../gen/commerce/payments/v1/payment_service_pb.js";
import { ConfigError, type Env } from "../../platform/config/env.js";
import { createOutbox } from "../../platform/events/index.js";
import { registerService } from "../../platform/server/rpc-server.js";
import type {
  BackgroundTask,
  ServiceDefinition,
  ServiceRuntime,
} from "../../platform/service/run-service.js";
import { createEventRelayTask } from "./background/event-relay-task.js";
import { createRetentionTask } from "./background/retention-task.js";
import { InFlight, type OperationsDeps } from "./operations/operations-context.js";
import { loadPaymentsConfig, operationLeaseMs, type PaymentsConfig } from "./payments-config.js";
import type { PaymentProvider } from "./providers/provider.js";
import { createProviderExecutor } from "./providers/provider-executor.js";
import { createProviderRegistry } from "./providers/provider-registry.js";
import { createSandboxProvider } from "./providers/sandbox-provider.js";
import { createPaymentHandlers } from "./rpc/payment-handlers.js";

export interface PaymentsOptions {
  /** Where PAYMENTS_* settings are read (default process.env). */
  env?: Env;
  /** Provider adapters; default: the sandbox configured from the environment. */
  providers?: (config: PaymentsConfig, runtime: ServiceRuntime) => PaymentProvider[];
  /** Called once built (tests reach the dependencies through it). */
  onBuilt?: (deps: OperationsDeps) => void;
}

export function defaultProviders(
  config: PaymentsConfig,
  runtime: ServiceRuntime,
): PaymentProvider[] {
  return [
    createSandboxProvider({
      webhookSecret: config.providerWebhookSecret,
      webhookUrl: () => config.sandbox.webhookUrl ?? selfUrl(runtime),
      slowMs: config.sandbox.slowMs,
      asyncDelayMs: config.sandbox.asyncDelayMs,
      transientFailures: config.sandbox.transientFailures,
    }),
  ];
}

/**
 * Where the sandbox reaches this service: its own listening address when the
 * port is fixed (local mesh, child processes in tests), else PAYMENTS_URL.
 */
function selfUrl(runtime: ServiceRuntime): string {
  const { host, port } = runtime.config;
  if (port === 0) return runtime.config.upstreams.payments;
  const reachable = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  return `http://${reachable.includes(":") ? `[${reachable}]` : reachable}:${port}`;
}

/** The payments service: what main.ts runs and what tests start in-process. */
export function createPaymentsDefinition(options: PaymentsOptions = {}): ServiceDefinition {
  return {
    name: "payments",
    migrations: new URL("./migrations/", import.meta.url),
    needs: { postgres: true, nats: true },
    build: (runtime) => assemble(runtime, loadPaymentsConfig(options.env ?? process.env), options),
  };
}

function assemble(runtime: ServiceRuntime, config: PaymentsConfig, options: PaymentsOptions) {
  const database = runtime.database;
  if (!database) throw new Error("payments needs Postgres");
  const providers = createProviderRegistry(
    (options.providers ?? defaultProviders)(config, runtime),
  );
  if (!providers.get(config.defaultProvider)) {
    throw new ConfigError(
      "PAYMENTS_DEFAULT_PROVIDER",
      `names no registered provider (have: ${providers.names().join(", ")})`,
    );
  }
  const deps: OperationsDeps = {
    sql: database.sql,
    providers,
    executor: createProviderExecutor(config.provider, runtime.metrics.registry),
    outbox: createOutbox({ domain: config.events.domain, notify: config.events.notify }),
    config,
    logger: runtime.logger,
    leaseMs: operationLeaseMs(config),
    inFlight: new InFlight(),
  };
  options.onBuilt?.(deps);
  const background: BackgroundTask[] = [
    createEventRelayTask(runtime, config.events),
    createRetentionTask({
      sql: () => database.sql,
      logger: runtime.logger,
      retentionHours: config.idempotencyRetentionHours,
    }),
    // Stops sandbox callbacks before the connections they use go away.
    { name: "payment-providers", start() {}, stop: () => providers.close() },
  ];
  return {
    services: [registerService(PaymentService, createPaymentHandlers(deps))],
    background,
  };
}

export const definition = createPaymentsDefinition();
