import { createHash, randomBytes } from "node:crypto";
import { v7 as uuidv7 } from "uuid";
import { fromPgTime, fromPgTimeOrNull, toPgTime } from "../../../platform/db/pg-time.js";
import type { Db } from "../users/user-store.js";

/** 256 random bits, base64url without padding: always 43 characters. */
const REFRESH_TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

export function hashRefreshToken(token: string): Buffer {
  return createHash("sha256").update(token, "ascii").digest();
}

export function isRefreshTokenShape(token: string): boolean {
  return REFRESH_TOKEN_SHAPE.test(token);
}

export interface IssuedRefreshToken {
  token: string;
  id: string;
  familyId: string;
  expiresAt: Date;
}

export interface PresentedToken {
  id: string;
  family_id: string;
  user_id: string;
  expires_at: Date;
  used_at: Date | null;
  revoked_at: Date | null;
}

export type RevokeReason =
  | "sign_out"
  | "reuse_detected"
  | "user_deleted"
  | "user_disabled"
  | "user_erased"
  | "user_inactive";

/**
 * Refresh tokens are stored only as SHA-256 hashes (the token has 256 bits
 * of entropy, so a fast hash is enough: there is nothing to brute-force).
 */
export function createRefreshTokenStore(options: { ttlSec: number }) {
  return {
    async issue(db: Db, userId: string, familyId = uuidv7()): Promise<IssuedRefreshToken> {
      const token = randomBytes(32).toString("base64url");
      const id = uuidv7();
      const now = new Date();
      const expiresAt = new Date(now.getTime() + options.ttlSec * 1000);
      await db`
        insert into refresh_tokens (id, token_hash, family_id, user_id, created_at, expires_at)
        values (${id}, ${hashRefreshToken(token)}, ${familyId}, ${userId}, ${toPgTime(now)},
                ${toPgTime(expiresAt)})`;
      return { token, id, familyId, expiresAt };
    },

    /** Locks the presented token's row for the rest of the transaction. */
    async lock(db: Db, token: string): Promise<PresentedToken | undefined> {
      const rows = await db<PresentedToken[]>`
        select id, family_id, user_id, expires_at, used_at, revoked_at
        from refresh_tokens where token_hash = ${hashRefreshToken(token)}
        for update`;
      const row = rows[0];
      return (
        row && {
          ...row,
          expires_at: fromPgTime(row.expires_at),
          used_at: fromPgTimeOrNull(row.used_at),
          revoked_at: fromPgTimeOrNull(row.revoked_at),
        }
      );
    },

    async markUsed(db: Db, id: string): Promise<void> {
      await db`update refresh_tokens set used_at = now() where id = ${id}`;
    },

    async revokeFamily(db: Db, familyId: string, reason: RevokeReason): Promise<number> {
      const rows = await db`
        update refresh_tokens set revoked_at = now(), revoke_reason = ${reason}
        where family_id = ${familyId} and revoked_at is null
        returning id`;
      return rows.length;
    },

    async revokeAllOfUser(db: Db, userId: string, reason: RevokeReason): Promise<number> {
      const rows = await db`
        update refresh_tokens set revoked_at = now(), revoke_reason = ${reason}
        where user_id = ${userId} and revoked_at is null
        returning id`;
      return rows.length;
    },
  };
}

export type RefreshTokenStore = ReturnType<typeof createRefreshTokenStore>;
