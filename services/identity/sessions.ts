import {
  type FieldViolation,
  InvalidArgumentError,
  UnauthenticatedError,
} from "../../platform/errors/domain-errors.js";
import type { IdentityDeps } from "./identity-deps.js";
import { passwordLengthViolation } from "./passwords/password-policy.js";
import { isRefreshTokenShape } from "./tokens/refresh-tokens.js";
import { EMAIL_MAX_CHARS, normalizeEmail } from "./users/user-input.js";

export interface TokenPairResult {
  userId: string;
  accessToken: string;
  accessTokenExpiresAt: Date;
  refreshToken: string;
  refreshTokenExpiresAt: Date;
}

/** One message for unknown email, wrong password, disabled account: nothing to enumerate. */
function invalidCredentials(): UnauthenticatedError {
  return new UnauthenticatedError("invalid email or password", "INVALID_CREDENTIALS");
}

function invalidRefreshToken(reason = "REFRESH_TOKEN_INVALID"): UnauthenticatedError {
  return new UnauthenticatedError("invalid refresh token", reason);
}

export async function signIn(
  deps: IdentityDeps,
  input: { email: string; password: string; clientAddress: string },
): Promise<TokenPairResult> {
  // Shape checks only (no format rules that could differ per account), and
  // all before argon2: a 10 KB password never reaches the hasher.
  const violations: FieldViolation[] = [];
  const email = normalizeEmail(input.email.slice(0, EMAIL_MAX_CHARS * 4));
  if (email === "") violations.push({ field: "email", description: "is required" });
  else if (email.length > EMAIL_MAX_CHARS) {
    violations.push({
      field: "email",
      description: `must be at most ${EMAIL_MAX_CHARS} characters`,
    });
  }
  const passwordProblem = passwordLengthViolation("password", input.password);
  if (passwordProblem) violations.push(passwordProblem);
  if (violations.length > 0) throw new InvalidArgumentError(violations);

  const emailIndex = deps.pii.emailIndex(email);
  const accountKey = emailIndex.toString("base64url");
  const throttle = deps.throttle;
  if (!throttle) throw new Error("sign-in needs the throttle");
  await throttle.check(accountKey, input.clientAddress);

  const row = await deps.users.findLiveByEmail(deps.sql, emailIndex);
  let ok = false;
  if (row?.password_hash) {
    // A disabled account is verified too (same time) but never signs in.
    ok = (await deps.hasher.verify(row.password_hash, input.password)) && row.status === "active";
  } else {
    await deps.hasher.verifyDummy(input.password);
  }
  if (!ok || !row) {
    await throttle.recordFailure(accountKey, input.clientAddress);
    throw invalidCredentials();
  }
  await throttle.recordSuccess(accountKey);

  if (deps.hasher.needsRehash(row.password_hash!)) {
    // Parameters were raised since this hash was made: upgrade it now that
    // the plaintext is at hand. Best effort; sign-in does not depend on it.
    deps.hasher
      .hash(input.password)
      .then((hash) => deps.users.setPasswordHash(deps.sql, row.id, hash))
      .catch((error: unknown) => deps.logger.warn({ err: error }, "password rehash failed"));
  }
  const refresh = await deps.refreshTokens.issue(deps.sql, row.id);
  const access = await deps.accessTokens.issue(row.id, row.roles);
  return {
    userId: row.id,
    accessToken: access.token,
    accessTokenExpiresAt: access.expiresAt,
    refreshToken: refresh.token,
    refreshTokenExpiresAt: refresh.expiresAt,
  };
}

type RotateOutcome =
  | { kind: "rotated"; userId: string; roles: string[]; token: string; expiresAt: Date }
  | { kind: "refused"; reason: string };

/**
 * Rotation with reuse detection (OAuth 2.0 Security BCP §4.14): the
 * presented token is locked, marked used and replaced in one transaction. A
 * token that was already used means two parties hold the family — the whole
 * family is revoked, and that revocation commits even though the call fails.
 */
export async function refresh(deps: IdentityDeps, refreshToken: string): Promise<TokenPairResult> {
  if (refreshToken === "") {
    throw InvalidArgumentError.field("refresh_token", "is required");
  }
  if (!isRefreshTokenShape(refreshToken)) throw invalidRefreshToken();
  const outcome = await deps.sql.begin(async (tx): Promise<RotateOutcome> => {
    const presented = await deps.refreshTokens.lock(tx, refreshToken);
    if (!presented || presented.revoked_at)
      return { kind: "refused", reason: "REFRESH_TOKEN_INVALID" };
    if (presented.used_at) {
      const revoked = await deps.refreshTokens.revokeFamily(
        tx,
        presented.family_id,
        "reuse_detected",
      );
      deps.logger.warn(
        { userId: presented.user_id, familyId: presented.family_id, revoked },
        "refresh token reuse detected; token family revoked",
      );
      return { kind: "refused", reason: "REFRESH_TOKEN_REUSED" };
    }
    if (presented.expires_at.getTime() <= Date.now()) {
      return { kind: "refused", reason: "REFRESH_TOKEN_EXPIRED" };
    }
    const user = await deps.users.findById(tx, presented.user_id);
    if (user?.status !== "active") {
      await deps.refreshTokens.revokeFamily(tx, presented.family_id, "user_inactive");
      return { kind: "refused", reason: "REFRESH_TOKEN_INVALID" };
    }
    await deps.refreshTokens.markUsed(tx, presented.id);
    const next = await deps.refreshTokens.issue(tx, user.id, presented.family_id);
    return {
      kind: "rotated",
      userId: user.id,
      roles: user.roles,
      token: next.token,
      expiresAt: next.expiresAt,
    };
  });
  if (outcome.kind === "refused") throw invalidRefreshToken(outcome.reason);
  const access = await deps.accessTokens.issue(outcome.userId, outcome.roles);
  return {
    userId: outcome.userId,
    accessToken: access.token,
    accessTokenExpiresAt: access.expiresAt,
    refreshToken: outcome.token,
    refreshTokenExpiresAt: outcome.expiresAt,
  };
}

/** Idempotent: unknown, used or revoked tokens succeed without effect. */
export async function signOut(
  deps: IdentityDeps,
  input: { refreshToken: string; allSessions: boolean },
): Promise<void> {
  if (input.refreshToken === "") throw InvalidArgumentError.field("refresh_token", "is required");
  if (!isRefreshTokenShape(input.refreshToken)) return;
  await deps.sql.begin(async (tx) => {
    const presented = await deps.refreshTokens.lock(tx, input.refreshToken);
    if (!presented) return;
    // Ending every session needs a token that is still good: an old, revoked
    // token must not let its holder sign the user out everywhere.
    const stillValid = !presented.revoked_at && presented.expires_at.getTime() > Date.now();
    if (input.allSessions && stillValid)
      await deps.refreshTokens.revokeAllOfUser(tx, presented.user_id, "sign_out");
    else await deps.refreshTokens.revokeFamily(tx, presented.family_id, "sign_out");
  });
}
