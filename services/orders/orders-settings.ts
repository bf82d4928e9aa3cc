import {
  ConfigError,
  type Env,
  readBool,
  readInt,
  readOptionalString,
  readString,
} from "../../platform/config/env.js";

/** Orders-only settings (the platform reads the shared ones). */
export interface OrdersSettings {
  /** Subject prefix of order events (`<domain>.order.<kind>`); "orders" in production. */
  eventDomain: string;
  /** JetStream stream capturing `<eventDomain>.>`. */
  eventStream: string;
  /** Dead-letter stream and its subject prefix. */
  deadLetterStream: string;
  deadLetterPrefix: string;
  /** Provision the streams at start (off when ops owns them). */
  provisionStreams: boolean;
  /** Durable consumer name of the saga; also its inbox key, so stable across deploys. */
  sagaConsumer: string;
  /** Handlers running at once per consumer; each saga step holds a DB connection. */
  sagaConcurrency: number;
  /** Time a checkout may take before it is compensated and REJECTED (TIMEOUT). */
  sagaTimeoutMs: number;
  sagaSweepIntervalMs: number;
  /** Redelivery of a saga event whose handler went silent (crashed process). */
  sagaAckWaitMs: number;
  /** Retry delays of a saga step whose dependency failed; the last repeats. */
  sagaRetryBackoffMs: number[];
  /** How long a CreateOrder request_id is remembered (at least 24 h). */
  idempotencyRetentionMs: number;
  /** Polling fallback of WatchOrder when no notification arrives. */
  watchPollIntervalMs: number;
  webhooks: WebhookSettings;
}

export interface WebhookSettings {
  /** Hosts (names or IPs) allowed even though they resolve to non-public addresses. */
  allowedHosts: string[];
  requestTimeoutMs: number;
  maxResponseBytes: number;
  /** First retry delay; doubles per attempt (full jitter), capped at retryMaxDelayMs. */
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
  /** After this long since the event, a failing delivery becomes FAILED. */
  retryPeriodMs: number;
  /** Consecutive failures of one endpoint that open its circuit. */
  breakerThreshold: number;
  breakerCooldownMs: number;
  /** How long a rotated-out secret keeps signing deliveries. */
  secretGraceMs: number;
  pollIntervalMs: number;
  /** Deliveries sent at once by one process. */
  concurrency: number;
}

const HOUR = 3_600_000;

function readDelays(env: Env, name: string, fallback: number[]): number[] {
  const text = readOptionalString(env, name);
  if (text === undefined) return fallback;
  const values = text.split(",").map((part) => Number(part.trim()));
  if (values.length === 0 || values.some((v) => !Number.isInteger(v) || v < 1 || v > 600_000)) {
    throw new ConfigError(name, "must be a comma-separated list of milliseconds (1..600000)");
  }
  return values;
}

function readToken(env: Env, name: string, fallback: string): string {
  const value = readString(env, name, fallback);
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(value)) {
    throw new ConfigError(name, "must be one NATS subject token ([A-Za-z0-9_-], at most 64)");
  }
  return value;
}

export function loadOrdersSettings(env: Env = process.env): OrdersSettings {
  const eventDomain = readToken(env, "ORDERS_EVENT_DOMAIN", "orders");
  const allowed = readOptionalString(env, "WEBHOOK_ALLOWED_HOSTS");
  return {
    eventDomain,
    eventStream: readToken(env, "ORDERS_EVENT_STREAM", eventDomain.toUpperCase()),
    deadLetterStream: readToken(env, "ORDERS_DLQ_STREAM", "DLQ"),
    deadLetterPrefix: readToken(env, "ORDERS_DLQ_PREFIX", "dlq"),
    provisionStreams: readBool(env, "ORDERS_PROVISION_STREAMS", true),
    sagaConsumer: readToken(env, "ORDERS_SAGA_CONSUMER", "orders-saga"),
    sagaConcurrency: readInt(env, "ORDERS_SAGA_CONCURRENCY", 8, { min: 1, max: 256 }),
    sagaTimeoutMs: readInt(env, "ORDERS_SAGA_TIMEOUT_MS", 120_000, { min: 100, max: 24 * HOUR }),
    sagaSweepIntervalMs: readInt(env, "ORDERS_SAGA_SWEEP_INTERVAL_MS", 5_000, {
      min: 20,
      max: 600_000,
    }),
    sagaAckWaitMs: readInt(env, "ORDERS_SAGA_ACK_WAIT_MS", 30_000, { min: 500, max: 600_000 }),
    sagaRetryBackoffMs: readDelays(
      env,
      "ORDERS_SAGA_RETRY_BACKOFF_MS",
      [100, 250, 500, 1_000, 2_000, 5_000],
    ),
    idempotencyRetentionMs: readInt(env, "ORDERS_IDEMPOTENCY_RETENTION_MS", 48 * HOUR, {
      min: 24 * HOUR,
      max: 30 * 24 * HOUR,
    }),
    watchPollIntervalMs: readInt(env, "ORDERS_WATCH_POLL_INTERVAL_MS", 2_000, {
      min: 10,
      max: 60_000,
    }),
    webhooks: {
      allowedHosts: allowed
        ? allowed
            .split(",")
            .map((h) => h.trim().toLowerCase())
            .filter(Boolean)
        : [],
      requestTimeoutMs: readInt(env, "WEBHOOK_TIMEOUT_MS", 10_000, { min: 100, max: 60_000 }),
      maxResponseBytes: readInt(env, "WEBHOOK_MAX_RESPONSE_BYTES", 64 * 1024, {
        min: 0,
        max: 1024 * 1024,
      }),
      retryBaseDelayMs: readInt(env, "WEBHOOK_RETRY_BASE_MS", 5_000, { min: 1, max: HOUR }),
      retryMaxDelayMs: readInt(env, "WEBHOOK_RETRY_MAX_MS", HOUR, { min: 1, max: 24 * HOUR }),
      retryPeriodMs: readInt(env, "WEBHOOK_RETRY_PERIOD_MS", 3 * 24 * HOUR, {
        min: 1_000,
        max: 30 * 24 * HOUR,
      }),
      breakerThreshold: readInt(env, "WEBHOOK_BREAKER_THRESHOLD", 5, { min: 1, max: 1_000 }),
      breakerCooldownMs: readInt(env, "WEBHOOK_BREAKER_COOLDOWN_MS", 60_000, {
        min: 10,
        max: 24 * HOUR,
      }),
      secretGraceMs: readInt(env, "WEBHOOK_SECRET_GRACE_MS", 24 * HOUR, {
        min: 0,
        max: 30 * 24 * HOUR,
      }),
      pollIntervalMs: readInt(env, "WEBHOOK_POLL_INTERVAL_MS", 1_000, { min: 10, max: 60_000 }),
      concurrency: readInt(env, "WEBHOOK_CONCURRENCY", 8, { min: 1, max: 256 }),
    },
  };
}
