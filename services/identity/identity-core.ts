import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Sql } from "postgres";
import { createOutbox } from "../../platform/events/outbox.js";
import { loadKeyMaterial } from "./crypto/key-material.js";
import type { IdentityConfig } from "./identity-config.js";
import type { IdentityDeps } from "./identity-deps.js";
import { createPasswordHasher } from "./passwords/password-hasher.js";
import { createSignInThrottle } from "./sign-in-throttle.js";
import { createAccessTokenIssuer } from "./tokens/access-tokens.js";
import { createRefreshTokenStore } from "./tokens/refresh-tokens.js";
import { createUserStore } from "./users/user-store.js";

/** Wires keys, stores, hasher and throttle; shared by the service and its commands. */
export async function createIdentityCore(options: {
  config: IdentityConfig;
  sql: Sql;
  redis: Redis | undefined;
  logger: Pick<Logger, "info" | "warn" | "error" | "debug">;
}): Promise<IdentityDeps> {
  const { config, sql, redis, logger } = options;
  const keys = await loadKeyMaterial(config);
  for (const file of keys.generated) {
    logger.warn(
      { file },
      "generated a development key (set the IDENTITY_* key variables in production)",
    );
  }
  return {
    sql,
    pii: keys.pii,
    signingKeys: keys.signingKeys,
    users: createUserStore(keys.pii),
    refreshTokens: createRefreshTokenStore({ ttlSec: config.refreshTokenTtlSec }),
    accessTokens: createAccessTokenIssuer({
      keys: keys.signingKeys,
      issuer: config.auth.issuer,
      audience: config.auth.audience,
      ttlSec: config.accessTokenTtlSec,
    }),
    hasher: await createPasswordHasher(config.argon2),
    throttle: redis
      ? createSignInThrottle({
          redis,
          keyPrefix: config.redisKeyPrefix,
          windowMs: config.throttle.windowMs,
          maxFailuresPerAccount: config.throttle.maxFailuresPerAccount,
          maxFailuresPerAddress: config.throttle.maxFailuresPerAddress,
        })
      : undefined,
    outbox: createOutbox({ domain: config.eventsDomain }),
    logger,
  };
}
