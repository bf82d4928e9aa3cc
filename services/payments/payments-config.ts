import {
  ConfigError,
  type Env,
  readBool,
  readInt,
  readOptionalString,
  readString,
} from "../../platform/config/env.js";

export interface PaymentsConfig {
  /** Provider adapter used for new authorizations. */
  defaultProvider: string;
  /** Standard Webhooks secret (`whsec_<base64>`) shared with the provider. */
  providerWebhookSecret: string;
  /** Accepted |now − webhook-timestamp| (the library caps it at 300 s). */
  webhookToleranceSec: number;
  provider: {
    /** One provider call; a slower answer counts as a timeout. */
    timeoutMs: number;
    /** Calls per operation, first included, all with the same provider key. */
    maxAttempts: number;
    retryInitialMs: number;
    retryMaxMs: number;
    /** Consecutive transient failures/timeouts that open a provider's breaker. */
    breakerThreshold: number;
    breakerHalfOpenMs: number;
  };
  /** How long a request waits for another one holding its key before ABORTED. */
  inFlightWaitMs: number;
  /** Idempotency keys are kept at least this long (contract: ≥ 24 h). */
  idempotencyRetentionHours: number;
  events: {
    domain: string;
    stream: string;
    /**
     * Wake the relay with pg_notify from each state-changing transaction.
     * Postgres serialises the commits of notifying transactions (a global
     * lock held through the commit flush), which caps write throughput under
     * concurrency; off, the relay polls every `pollMs` instead.
     */
    notify: boolean;
    pollMs: number;
  };
  sandbox: {
    slowMs: number;
    asyncDelayMs: number;
    transientFailures: number;
    /** Where the sandbox posts its callbacks; defaults to this service's URL. */
    webhookUrl: string | undefined;
  };
}

/** Development secret: a fixed value so a local mesh works out of the box. */
export const DEV_WEBHOOK_SECRET = `whsec_${Buffer.from("commerce-mesh-dev-sandbox-webhook-secret").toString("base64")}`;

export function loadPaymentsConfig(env: Env = process.env): PaymentsConfig {
  const secret = readString(env, "PAYMENTS_PROVIDER_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET);
  const match = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(secret);
  if (!match || Buffer.from(match[1]!, "base64").byteLength < 24) {
    throw new ConfigError(
      "PAYMENTS_PROVIDER_WEBHOOK_SECRET",
      "must be whsec_<base64> of at least 24 bytes",
    );
  }
  const domain = readString(env, "PAYMENTS_EVENTS_DOMAIN", "payments");
  if (!/^[a-z][a-z0-9_-]{0,62}$/.test(domain)) {
    throw new ConfigError("PAYMENTS_EVENTS_DOMAIN", "must be a lower-case subject token");
  }
  const stream = readString(env, "PAYMENTS_EVENTS_STREAM", domain.toUpperCase().replace(/-/g, "_"));
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(stream)) {
    throw new ConfigError("PAYMENTS_EVENTS_STREAM", "must be a JetStream stream name");
  }
  const notify = readBool(env, "PAYMENTS_OUTBOX_NOTIFY", true);
  const webhookUrl = readOptionalString(env, "PAYMENTS_SANDBOX_WEBHOOK_URL");
  if (webhookUrl !== undefined && !/^https?:\/\/[^/]+/.test(webhookUrl)) {
    throw new ConfigError("PAYMENTS_SANDBOX_WEBHOOK_URL", "must be an http(s) URL");
  }
  return {
    defaultProvider: readString(env, "PAYMENTS_DEFAULT_PROVIDER", "sandbox"),
    providerWebhookSecret: secret,
    webhookToleranceSec: readInt(env, "PAYMENTS_WEBHOOK_TOLERANCE_SEC", 300, { min: 1, max: 300 }),
    provider: {
      timeoutMs: readInt(env, "PAYMENTS_PROVIDER_TIMEOUT_MS", 3_000, { min: 10, max: 60_000 }),
      maxAttempts: readInt(env, "PAYMENTS_PROVIDER_MAX_ATTEMPTS", 3, { min: 1, max: 10 }),
      retryInitialMs: readInt(env, "PAYMENTS_PROVIDER_RETRY_INITIAL_MS", 50, {
        min: 1,
        max: 10_000,
      }),
      retryMaxMs: readInt(env, "PAYMENTS_PROVIDER_RETRY_MAX_MS", 1_000, { min: 1, max: 60_000 }),
      breakerThreshold: readInt(env, "PAYMENTS_PROVIDER_BREAKER_THRESHOLD", 5, {
        min: 1,
        max: 1000,
      }),
      breakerHalfOpenMs: readInt(env, "PAYMENTS_PROVIDER_BREAKER_HALF_OPEN_MS", 10_000, {
        min: 10,
        max: 600_000,
      }),
    },
    inFlightWaitMs: readInt(env, "PAYMENTS_IN_FLIGHT_WAIT_MS", 5_000, { min: 0, max: 60_000 }),
    idempotencyRetentionHours: readInt(env, "PAYMENTS_IDEMPOTENCY_RETENTION_HOURS", 48, {
      min: 24,
      max: 24 * 365,
    }),
    events: {
      domain,
      stream,
      notify,
      pollMs: readInt(env, "PAYMENTS_OUTBOX_POLL_MS", notify ? 1_000 : 100, {
        min: 10,
        max: 60_000,
      }),
    },
    sandbox: {
      slowMs: readInt(env, "PAYMENTS_SANDBOX_SLOW_MS", 1_500, { min: 0, max: 120_000 }),
      asyncDelayMs: readInt(env, "PAYMENTS_SANDBOX_ASYNC_DELAY_MS", 250, { min: 0, max: 600_000 }),
      transientFailures: readInt(env, "PAYMENTS_SANDBOX_TRANSIENT_FAILURES", 2, {
        min: 0,
        max: 100,
      }),
      webhookUrl,
    },
  };
}

/**
 * Longest time one operation may hold its key: every attempt timing out plus
 * the backoff between them and a margin. A request finding an older
 * in-progress key assumes its owner crashed and resumes it.
 */
export function operationLeaseMs(config: PaymentsConfig): number {
  const { timeoutMs, maxAttempts, retryMaxMs } = config.provider;
  // + one best-effort void after an ambiguous authorization.
  return (maxAttempts + 1) * (timeoutMs + retryMaxMs) + 5_000;
}
