import type { Sql, TransactionSql } from "postgres";

/** The pool or a transaction: store functions run in either. */
export type Db = Sql | TransactionSql;

import { fromPgTime, fromPgTimeOrNull, toPgTime } from "../../../platform/db/pg-time.js";
import type { PiiCipher } from "../crypto/pii-cipher.js";

export type UserState = "active" | "disabled" | "deleted" | "erased";

/** A row of `users` joined with its wrapped data key. */
export interface UserRow {
  id: string;
  email_index: Buffer | null;
  email_ciphertext: Buffer;
  first_name_ciphertext: Buffer;
  last_name_ciphertext: Buffer;
  password_hash: string | null;
  email_verified: boolean;
  roles: string[];
  status: UserState;
  created_at: Date;
  updated_at: Date;
  deleted_at: Date | null;
  erased_at: Date | null;
  wrapped_key: Buffer | null;
  master_key_id: string | null;
}

/** A user with its personal data decrypted (empty strings once erased). */
export interface UserRecord {
  id: string;
  email: string;
  firstName: string;
  lastName: string;
  emailVerified: boolean;
  roles: string[];
  status: UserState;
  createdAt: Date;
  updatedAt: Date;
  deletedAt: Date | null;
  erasedAt: Date | null;
}

export interface NewUser {
  id: string;
  email: string;
  firstName: string;
  lastName: string;
  passwordHash: string;
  roles: string[];
  emailVerified: boolean;
  now: Date;
}

/** Timestamps arrive as text (see db/pg-time.ts). */
export function normalizeRow(row: UserRow): UserRow {
  return {
    ...row,
    created_at: fromPgTime(row.created_at),
    updated_at: fromPgTime(row.updated_at),
    deleted_at: fromPgTimeOrNull(row.deleted_at),
    erased_at: fromPgTimeOrNull(row.erased_at),
  };
}

export const LIVE_EMAIL_CONSTRAINT = "users_live_email_index_key";

export function isLiveEmailConflict(error: unknown): boolean {
  const e = error as { code?: string; constraint_name?: string };
  return e?.code === "23505" && e.constraint_name === LIVE_EMAIL_CONSTRAINT;
}

/**
 * SQL for users and their data keys (postgres.js; its statements are
 * prepared and cached per connection, which matters on GetMe).
 */
export function createUserStore(pii: PiiCipher) {
  function dataKeyOf(
    row: Pick<UserRow, "id" | "wrapped_key" | "master_key_id">,
  ): Buffer | undefined {
    if (row.wrapped_key === null || row.master_key_id === null) return undefined;
    return pii.unwrapDataKey(row.id, row.wrapped_key, row.master_key_id);
  }

  function decrypt(row: UserRow): UserRecord {
    row = normalizeRow(row);
    const key = dataKeyOf(row);
    const open = (field: string, ciphertext: Buffer) =>
      key ? pii.decrypt(key, row.id, field, ciphertext) : "";
    return {
      id: row.id,
      email: open("email", row.email_ciphertext),
      firstName: open("first_name", row.first_name_ciphertext),
      lastName: open("last_name", row.last_name_ciphertext),
      emailVerified: row.email_verified,
      roles: row.roles,
      status: row.status,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      deletedAt: row.deleted_at,
      erasedAt: row.erased_at,
    };
  }

  return {
    decrypt,
    dataKeyOf,

    async findById(db: Db, id: string, forUpdate = false): Promise<UserRow | undefined> {
      const rows = forUpdate
        ? await db<UserRow[]>`
            select u.*, k.wrapped_key, k.master_key_id
            from users u left join user_keys k on k.user_id = u.id
            where u.id = ${id}
            for update of u`
        : await db<UserRow[]>`
            select u.*, k.wrapped_key, k.master_key_id
            from users u left join user_keys k on k.user_id = u.id
            where u.id = ${id}`;
      return rows[0] && normalizeRow(rows[0]);
    },

    async findLiveByEmail(db: Db, emailIndex: Buffer): Promise<UserRow | undefined> {
      const rows = await db<UserRow[]>`
        select u.*, k.wrapped_key, k.master_key_id
        from users u left join user_keys k on k.user_id = u.id
        where u.email_index = ${emailIndex} and u.deleted_at is null`;
      return rows[0] && normalizeRow(rows[0]);
    },

    async insert(db: Db, user: NewUser): Promise<UserRow> {
      const { dataKey, wrappedKey, masterKeyId } = pii.newDataKey(user.id);
      const seal = (field: string, value: string) => pii.encrypt(dataKey, user.id, field, value);
      const [row] = await db<UserRow[]>`
        insert into users (id, email_index, email_ciphertext, first_name_ciphertext,
                           last_name_ciphertext, password_hash, email_verified, roles, status,
                           created_at, updated_at)
        values (${user.id}, ${pii.emailIndex(user.email)}, ${seal("email", user.email)},
                ${seal("first_name", user.firstName)}, ${seal("last_name", user.lastName)},
                ${user.passwordHash}, ${user.emailVerified}, ${db.array(user.roles)}, 'active',
                ${toPgTime(user.now)}, ${toPgTime(user.now)})
        returning *`;
      await db`
        insert into user_keys (user_id, wrapped_key, master_key_id, created_at)
        values (${user.id}, ${wrappedKey}, ${masterKeyId}, ${toPgTime(user.now)})`;
      return normalizeRow({ ...row!, wrapped_key: wrappedKey, master_key_id: masterKeyId });
    },

    async setPasswordHash(db: Db, id: string, passwordHash: string): Promise<void> {
      await db`update users set password_hash = ${passwordHash} where id = ${id} and status = 'active'`;
    },
  };
}

export type UserStore = ReturnType<typeof createUserStore>;
