import type { Logger } from "pino";
import type { Sql } from "postgres";
import type { Outbox } from "../../platform/events/outbox.js";
import type { PiiCipher } from "./crypto/pii-cipher.js";
import type { SigningKeyRing } from "./crypto/signing-keys.js";
import type { PasswordHasher } from "./passwords/password-hasher.js";
import type { SignInThrottle } from "./sign-in-throttle.js";
import type { AccessTokenIssuer } from "./tokens/access-tokens.js";
import type { RefreshTokenStore } from "./tokens/refresh-tokens.js";
import type { UserStore } from "./users/user-store.js";

/** Everything the identity domain code needs, wired once in service.ts. */
export interface IdentityDeps {
  sql: Sql;
  pii: PiiCipher;
  signingKeys: SigningKeyRing;
  users: UserStore;
  refreshTokens: RefreshTokenStore;
  accessTokens: AccessTokenIssuer;
  hasher: PasswordHasher;
  /** Absent in offline commands (create-admin), which never sign in. */
  throttle: SignInThrottle | undefined;
  outbox: Outbox;
  logger: Pick<Logger, "info" | "warn" | "error" | "debug">;
}
