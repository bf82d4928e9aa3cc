import { type AuthConfig, loadAuthConfig } from "../../platform/auth/auth-config.js";
import {
  ConfigError,
  type Env,
  readBool,
  readInt,
  readOptionalString,
  readString,
} from "../../platform/config/env.js";

/** OWASP minimum for argon2id: m = 19 MiB, t = 2, p = 1. */
export const ARGON2_MIN = { memoryKiB: 19_456, timeCost: 2 } as const;

export interface IdentityConfig {
  auth: AuthConfig;
  /** Where development keys are generated and kept (mode 0600). */
  dataDir: string;
  /** Development keys may be generated; false in production (NODE_ENV=production). */
  allowGeneratedKeys: boolean;
  signingKeysFile: string | undefined;
  signingKeyJson: string | undefined;
  /** "[id:]base64" — 32 bytes. */
  masterKey: string | undefined;
  /** Comma-separated "id:base64" keys that only decrypt (rotation). */
  previousMasterKeys: string | undefined;
  /** base64, 32 bytes; keyed HMAC for the email blind index. Never rotates in place. */
  blindIndexKey: string | undefined;
  accessTokenTtlSec: number;
  refreshTokenTtlSec: number;
  argon2: { memoryKiB: number; timeCost: number; parallelism: 1; maxPending: number };
  throttle: { windowMs: number; maxFailuresPerAccount: number; maxFailuresPerAddress: number };
  /** Prefix of every Redis key this service writes (tests isolate with it). */
  redisKeyPrefix: string;
  /** Run the outbox relay in this process (default true). */
  outboxRelay: boolean;
  /** First token of event subjects and the stream they go to. */
  eventsDomain: string;
}

export function loadIdentityConfig(env: Env = process.env): IdentityConfig {
  const production = env.NODE_ENV === "production";
  const memoryKiB = readInt(env, "IDENTITY_ARGON2_MEMORY_KIB", ARGON2_MIN.memoryKiB, {
    min: ARGON2_MIN.memoryKiB,
    max: 1_048_576,
  });
  const timeCost = readInt(env, "IDENTITY_ARGON2_TIME_COST", ARGON2_MIN.timeCost, {
    min: ARGON2_MIN.timeCost,
    max: 20,
  });
  const eventsDomain = readString(env, "IDENTITY_EVENTS_DOMAIN", "identity");
  if (!/^[a-z][a-z0-9_-]{0,62}$/.test(eventsDomain)) {
    throw new ConfigError("IDENTITY_EVENTS_DOMAIN", "must be a lower-case subject token");
  }
  return {
    auth: loadAuthConfig(env),
    dataDir: readString(env, "IDENTITY_DATA_DIR", ".data/identity"),
    allowGeneratedKeys: readBool(env, "IDENTITY_ALLOW_GENERATED_KEYS", !production),
    signingKeysFile: readOptionalString(env, "IDENTITY_SIGNING_KEYS_FILE"),
    signingKeyJson: readOptionalString(env, "IDENTITY_SIGNING_KEY"),
    masterKey: readOptionalString(env, "IDENTITY_MASTER_KEY"),
    previousMasterKeys: readOptionalString(env, "IDENTITY_PREVIOUS_MASTER_KEYS"),
    blindIndexKey: readOptionalString(env, "IDENTITY_BLIND_INDEX_KEY"),
    accessTokenTtlSec: readInt(env, "IDENTITY_ACCESS_TOKEN_TTL_SEC", 900, { min: 1, max: 3600 }),
    refreshTokenTtlSec: readInt(env, "IDENTITY_REFRESH_TOKEN_TTL_SEC", 30 * 86_400, {
      min: 60,
      max: 90 * 86_400,
    }),
    argon2: {
      memoryKiB,
      timeCost,
      parallelism: 1,
      maxPending: readInt(env, "IDENTITY_ARGON2_MAX_PENDING", 64, { min: 1, max: 10_000 }),
    },
    throttle: {
      windowMs: readInt(env, "IDENTITY_SIGNIN_THROTTLE_WINDOW_MS", 15 * 60_000, {
        min: 100,
        max: 24 * 3_600_000,
      }),
      maxFailuresPerAccount: readInt(env, "IDENTITY_SIGNIN_MAX_FAILURES_PER_ACCOUNT", 5, {
        min: 1,
        max: 1000,
      }),
      maxFailuresPerAddress: readInt(env, "IDENTITY_SIGNIN_MAX_FAILURES_PER_ADDRESS", 50, {
        min: 1,
        max: 100_000,
      }),
    },
    redisKeyPrefix: readString(env, "REDIS_KEY_PREFIX", ""),
    outboxRelay: readBool(env, "IDENTITY_OUTBOX_RELAY", true),
    eventsDomain,
  };
}
