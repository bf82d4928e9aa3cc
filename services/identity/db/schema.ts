import { sql } from "drizzle-orm";
import {
  boolean,
  check,
  customType,
  foreignKey,
  index,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

export { inbox, outbox, outboxAggregates } from "../../../platform/events/tables.js";

const bytea = customType<{ data: Uint8Array; driverData: Buffer }>({ dataType: () => "bytea" });

/**
 * Accounts. Personal data (email, names) is stored only as AES-256-GCM
 * ciphertext under the user's data key (user_keys); `email_index` is a keyed
 * HMAC of the normalised email, unique among live rows, so lookups and the
 * uniqueness rule work without plaintext. After erasure the index and the
 * password hash are cleared and the data key is gone.
 */
export const users = pgTable(
  "users",
  {
    id: uuid("id").primaryKey(),
    emailIndex: bytea("email_index"),
    emailCiphertext: bytea("email_ciphertext").notNull(),
    firstNameCiphertext: bytea("first_name_ciphertext").notNull(),
    lastNameCiphertext: bytea("last_name_ciphertext").notNull(),
    passwordHash: text("password_hash"),
    emailVerified: boolean("email_verified").notNull().default(false),
    roles: text("roles").array().notNull(),
    status: text("status").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull(),
    updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull(),
    deletedAt: timestamp("deleted_at", { withTimezone: true, mode: "date" }),
    erasedAt: timestamp("erased_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [
    uniqueIndex("users_live_email_index_key").on(t.emailIndex).where(sql`deleted_at is null`),
    // ListUsers: newest first within a status (keyset on id).
    index("users_status_id_idx").on(t.status, t.id.desc()),
    index("users_roles_gin_idx").using("gin", t.roles),
    check("users_status_check", sql`${t.status} in ('active', 'disabled', 'deleted', 'erased')`),
    check(
      "users_deleted_consistent",
      sql`(${t.status} in ('deleted', 'erased')) = (${t.deletedAt} is not null)`,
    ),
    check(
      "users_erased_consistent",
      sql`(${t.status} = 'erased') = (${t.erasedAt} is not null)
          and (${t.status} <> 'erased' or (${t.emailIndex} is null and ${t.passwordHash} is null))`,
    ),
    check("users_live_has_credentials", sql`${t.status} = 'erased' or ${t.emailIndex} is not null`),
    check("users_roles_not_empty", sql`cardinality(${t.roles}) > 0`),
  ],
);

/**
 * One data key per user, wrapped (AES-256-GCM) by a master key named by
 * `master_key_id`, so master keys can rotate. Crypto-shredding sets
 * `wrapped_key` to null: every ciphertext of that user becomes noise.
 */
export const userKeys = pgTable(
  "user_keys",
  {
    userId: uuid("user_id").primaryKey(),
    wrappedKey: bytea("wrapped_key"),
    masterKeyId: text("master_key_id"),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull(),
    destroyedAt: timestamp("destroyed_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [
    foreignKey({ columns: [t.userId], foreignColumns: [users.id], name: "user_keys_user_fk" }),
    check(
      "user_keys_destroyed_consistent",
      sql`(${t.destroyedAt} is null) = (${t.wrappedKey} is not null and ${t.masterKeyId} is not null)`,
    ),
  ],
);

/**
 * Refresh tokens, stored only as SHA-256 of the token. A family is one
 * sign-in session: each rotation adds a row and marks its parent used.
 */
export const refreshTokens = pgTable(
  "refresh_tokens",
  {
    id: uuid("id").primaryKey(),
    tokenHash: bytea("token_hash").notNull(),
    familyId: uuid("family_id").notNull(),
    userId: uuid("user_id").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull(),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
    usedAt: timestamp("used_at", { withTimezone: true, mode: "date" }),
    revokedAt: timestamp("revoked_at", { withTimezone: true, mode: "date" }),
    revokeReason: text("revoke_reason"),
  },
  (t) => [
    uniqueIndex("refresh_tokens_token_hash_key").on(t.tokenHash),
    index("refresh_tokens_family_idx").on(t.familyId),
    index("refresh_tokens_user_live_idx").on(t.userId).where(sql`revoked_at is null`),
    index("refresh_tokens_expires_idx").on(t.expiresAt),
    foreignKey({ columns: [t.userId], foreignColumns: [users.id], name: "refresh_tokens_user_fk" }),
  ],
);

/** Admin actions that must be traceable (erasure); never holds personal data. */
export const auditLog = pgTable(
  "audit_log",
  {
    id: uuid("id").primaryKey(),
    action: text("action").notNull(),
    userId: uuid("user_id").notNull(),
    actor: text("actor").notNull(),
    reason: text("reason").notNull(),
    occurredAt: timestamp("occurred_at", { withTimezone: true, mode: "date" }).notNull(),
  },
  (t) => [index("audit_log_user_idx").on(t.userId)],
);
