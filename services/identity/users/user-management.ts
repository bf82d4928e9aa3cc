import { v7 as uuidv7 } from "uuid";
import { type Caller, hasRole } from "../../../platform/auth/caller.js";
import { toPgTime } from "../../../platform/db/pg-time.js";
import {
  AlreadyExistsError,
  type FieldViolation,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
} from "../../../platform/errors/domain-errors.js";
import type { IdentityDeps } from "../identity-deps.js";
import {
  emailViolation,
  idViolation,
  isRole,
  isUuid,
  nameViolation,
  normalizeEmail,
  normalizeName,
  reasonViolation,
} from "./user-input.js";
import { userDeleted, userErased, userUpdated } from "./user-messages.js";
import {
  isLiveEmailConflict,
  type UserRecord,
  type UserRow,
  type UserState,
} from "./user-store.js";

/*
 * Ownership rule (identity_service.proto): a customer acts only on itself;
 * any other id answers NOT_FOUND, so ids of other users cannot be probed.
 * Admins act on everyone. Mesh services (role "service") may read users.
 */
function mayRead(caller: Caller, userId: string): boolean {
  return (
    hasRole(caller, "admin") ||
    hasRole(caller, "service") ||
    (caller.kind === "user" && caller.subject === userId)
  );
}

function mayChange(caller: Caller, userId: string): boolean {
  return hasRole(caller, "admin") || (caller.kind === "user" && caller.subject === userId);
}

function checkedId(field: string, id: string): string {
  const problem = idViolation(field, id);
  if (problem) throw new InvalidArgumentError([problem]);
  return id;
}

export async function getMe(deps: IdentityDeps, caller: Caller): Promise<UserRecord> {
  if (caller.kind !== "user" || !isUuid(caller.subject))
    throw new NotFoundError("user", caller.subject);
  const row = await deps.users.findById(deps.sql, caller.subject);
  if (!row) throw new NotFoundError("user", caller.subject);
  return deps.users.decrypt(row);
}

export async function getUser(deps: IdentityDeps, caller: Caller, id: string): Promise<UserRecord> {
  checkedId("id", id);
  if (!mayRead(caller, id)) throw new NotFoundError("user", id);
  const row = await deps.users.findById(deps.sql, id);
  if (!row) throw new NotFoundError("user", id);
  return deps.users.decrypt(row);
}

// ---------------------------------------------------------------- ListUsers

const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 200;

export interface ListUsersInput {
  pageSize: number;
  pageToken: string;
  role: string;
  /** Empty = active and disabled (the contract's UNSPECIFIED). */
  statuses: UserState[];
}

function filterKey(input: ListUsersInput): string {
  return `${input.role}|${[...input.statuses].sort().join(",")}`;
}

/** Opaque to clients; bound to the filters it was issued for. */
function encodePageToken(lastId: string, filters: string): string {
  return Buffer.from(JSON.stringify({ v: 1, after: lastId, f: filters })).toString("base64url");
}

function decodePageToken(token: string, filters: string): string {
  const invalid = () =>
    InvalidArgumentError.field(
      "page_token",
      "is not a token from a previous page with the same filters",
    );
  if (token.length > 512 || !/^[A-Za-z0-9_-]+$/.test(token)) throw invalid();
  let parsed: { v?: unknown; after?: unknown; f?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalid();
  }
  if (
    parsed.v !== 1 ||
    typeof parsed.after !== "string" ||
    !isUuid(parsed.after) ||
    parsed.f !== filters
  ) {
    throw invalid();
  }
  return parsed.after;
}

export async function listUsers(
  deps: IdentityDeps,
  input: ListUsersInput,
): Promise<{ users: UserRecord[]; nextPageToken: string }> {
  const violations: FieldViolation[] = [];
  if (input.pageSize < 0)
    violations.push({ field: "page_size", description: "must not be negative" });
  if (input.role !== "" && !isRole(input.role)) {
    violations.push({ field: "role", description: "must be one of customer, admin, service" });
  }
  if (violations.length > 0) throw new InvalidArgumentError(violations);
  const statuses: UserState[] = input.statuses.length > 0 ? input.statuses : ["active", "disabled"];
  const filters = filterKey({ ...input, statuses });
  const after = input.pageToken === "" ? null : decodePageToken(input.pageToken, filters);
  const limit = Math.min(input.pageSize === 0 ? DEFAULT_PAGE_SIZE : input.pageSize, MAX_PAGE_SIZE);
  const sql = deps.sql;
  // Keyset pagination on the time-ordered id (UUIDv7): newest first, stable
  // under inserts, index-only seek on (status, id desc).
  const rows = await sql<UserRow[]>`
    select u.*, k.wrapped_key, k.master_key_id
    from users u left join user_keys k on k.user_id = u.id
    where u.status in ${sql(statuses)}
      ${input.role === "" ? sql`` : sql`and u.roles @> array[${input.role}]::text[]`}
      ${after === null ? sql`` : sql`and u.id < ${after}`}
    order by u.id desc
    limit ${limit + 1}`;
  const page = rows.slice(0, limit);
  return {
    users: page.map((row) => deps.users.decrypt(row)),
    nextPageToken: rows.length > limit ? encodePageToken(page[page.length - 1]!.id, filters) : "",
  };
}

// ---------------------------------------------------------------- UpdateUser

const MUTABLE_FIELDS = new Set([
  "email",
  "first_name",
  "last_name",
  "email_verified",
  "roles",
  "status",
]);
/** Only admins may name these in a mask (mass-assignment guard). */
const ADMIN_FIELDS = new Set(["email_verified", "roles", "status"]);
const OUTPUT_ONLY_FIELDS = new Set([
  "id",
  "create_time",
  "update_time",
  "delete_time",
  "erase_time",
]);

export interface UserPatch {
  id: string;
  email: string;
  emailVerified: boolean;
  firstName: string;
  lastName: string;
  roles: string[];
  /** Requested status as a state name, or undefined when not ACTIVE/DISABLED. */
  status: UserState | undefined;
}

export async function updateUser(
  deps: IdentityDeps,
  caller: Caller,
  patch: UserPatch,
  maskPaths: string[],
): Promise<UserRecord> {
  const idProblem = idViolation("user.id", patch.id);
  if (idProblem) throw new InvalidArgumentError([idProblem]);
  if (maskPaths.length === 0) {
    throw InvalidArgumentError.field("update_mask", "must name at least one field");
  }
  const paths = new Set(maskPaths);
  const violations: FieldViolation[] = [];
  for (const path of paths) {
    if (OUTPUT_ONLY_FIELDS.has(path)) {
      violations.push({ field: "update_mask", description: `${path} is output only` });
    } else if (!MUTABLE_FIELDS.has(path)) {
      violations.push({
        field: "update_mask",
        description: `${path.slice(0, 64)} is not a field of User`,
      });
    }
  }
  if (violations.length > 0) throw new InvalidArgumentError(violations);
  const admin = hasRole(caller, "admin");
  if (!admin && [...paths].some((p) => ADMIN_FIELDS.has(p))) {
    throw new PermissionDeniedError(
      "only admins may change roles, status or email_verified",
      "FIELD_REQUIRES_ADMIN",
    );
  }
  if (!mayChange(caller, patch.id)) throw new NotFoundError("user", patch.id);

  if (paths.has("email")) {
    const problem = emailViolation("user.email", patch.email);
    if (problem) violations.push(problem);
  }
  for (const [path, field, value] of [
    ["first_name", "user.first_name", patch.firstName],
    ["last_name", "user.last_name", patch.lastName],
  ] as const) {
    if (!paths.has(path)) continue;
    const problem = nameViolation(field, value);
    if (problem) violations.push(problem);
  }
  let roles: string[] = [];
  if (paths.has("roles")) {
    roles = [...new Set(patch.roles)];
    if (roles.length === 0)
      violations.push({ field: "user.roles", description: "must not be empty" });
    for (const role of roles) {
      if (!isRole(role)) {
        violations.push({
          field: "user.roles",
          description: `${role.slice(0, 64)} is not a known role`,
        });
      }
    }
  }
  if (paths.has("status") && patch.status !== "active" && patch.status !== "disabled") {
    violations.push({
      field: "user.status",
      description: "may be set to ACTIVE or DISABLED only (use DeleteUser or EraseUser)",
    });
  }
  if (violations.length > 0) throw new InvalidArgumentError(violations);

  try {
    return await deps.sql.begin(async (tx) => {
      const row = await deps.users.findById(tx, patch.id, true);
      if (!row || row.deleted_at) throw new NotFoundError("user", patch.id);
      const current = deps.users.decrypt(row);
      const dataKey = deps.users.dataKeyOf(row)!;
      const seal = (field: string, value: string) =>
        deps.pii.encrypt(dataKey, row.id, field, value);
      const changed: string[] = [];
      const next = { ...current };
      const set: Record<string, unknown> = {};

      if (paths.has("email")) {
        const email = normalizeEmail(patch.email);
        if (email !== current.email) {
          next.email = email;
          set.email_index = deps.pii.emailIndex(email);
          set.email_ciphertext = seal("email", email);
          changed.push("email");
          // A new address is unverified until proven otherwise.
          if (current.emailVerified && !paths.has("email_verified")) {
            next.emailVerified = false;
            set.email_verified = false;
            changed.push("email_verified");
          }
        }
      }
      for (const [path, key, column, value] of [
        ["first_name", "firstName", "first_name_ciphertext", patch.firstName],
        ["last_name", "lastName", "last_name_ciphertext", patch.lastName],
      ] as const) {
        if (!paths.has(path)) continue;
        const name = normalizeName(value);
        if (name === current[key]) continue;
        next[key] = name;
        set[column] = seal(path, name);
        changed.push(path);
      }
      if (paths.has("email_verified") && patch.emailVerified !== current.emailVerified) {
        next.emailVerified = patch.emailVerified;
        set.email_verified = patch.emailVerified;
        changed.push("email_verified");
      }
      if (paths.has("roles")) {
        const same =
          roles.length === current.roles.length && roles.every((r) => current.roles.includes(r));
        if (!same) {
          next.roles = roles;
          set.roles = tx.array(roles);
          changed.push("roles");
        }
      }
      if (paths.has("status") && patch.status !== current.status) {
        next.status = patch.status!;
        set.status = patch.status;
        changed.push("status");
      }
      if (changed.length === 0) return current;

      const now = new Date();
      next.updatedAt = now;
      set.updated_at = toPgTime(now);
      await tx`update users set ${tx(set)} where id = ${row.id}`;
      if (next.status === "disabled" && current.status !== "disabled") {
        await deps.refreshTokens.revokeAllOfUser(tx, row.id, "user_disabled");
      }
      await deps.outbox.append(tx, [userUpdated(next, changed, now)]);
      return next;
    });
  } catch (error) {
    if (isLiveEmailConflict(error)) {
      throw new AlreadyExistsError("an account with this email already exists", "EMAIL_TAKEN");
    }
    throw error;
  }
}

// ---------------------------------------------------------------- DeleteUser

export async function deleteUser(
  deps: IdentityDeps,
  caller: Caller,
  id: string,
): Promise<UserRecord> {
  checkedId("id", id);
  if (!mayChange(caller, id)) throw new NotFoundError("user", id);
  return deps.sql.begin(async (tx) => {
    const row = await deps.users.findById(tx, id, true);
    if (!row || row.deleted_at) throw new NotFoundError("user", id);
    const now = new Date();
    await tx`
      update users set status = 'deleted', deleted_at = ${toPgTime(now)}, updated_at = ${toPgTime(now)}
      where id = ${id}`;
    await deps.refreshTokens.revokeAllOfUser(tx, id, "user_deleted");
    await deps.outbox.append(tx, [userDeleted(id, now)]);
    return {
      ...deps.users.decrypt(row),
      status: "deleted" as const,
      deletedAt: now,
      updatedAt: now,
    };
  });
}

// ---------------------------------------------------------------- EraseUser

/**
 * Crypto-shredding: the wrapped data key is destroyed, so the user's
 * ciphertext — in this row, in backups, in any copy — can no longer be
 * opened. The blind index and password hash go too (the index would still
 * let someone holding the HMAC key confirm a guessed address).
 */
export async function eraseUser(
  deps: IdentityDeps,
  caller: Caller,
  input: { id: string; reason: string },
): Promise<{ userId: string; erasedAt: Date }> {
  checkedId("id", input.id);
  const reasonProblem = reasonViolation("reason", input.reason);
  if (reasonProblem) throw new InvalidArgumentError([reasonProblem]);
  return deps.sql.begin(async (tx) => {
    const row = await deps.users.findById(tx, input.id, true);
    if (!row) throw new NotFoundError("user", input.id);
    if (row.erased_at) return { userId: row.id, erasedAt: row.erased_at };
    const now = new Date();
    await tx`
      update user_keys set wrapped_key = null, master_key_id = null, destroyed_at = ${toPgTime(now)}
      where user_id = ${row.id}`;
    await tx`
      update users set status = 'erased', erased_at = ${toPgTime(now)},
                       deleted_at = coalesce(deleted_at, ${toPgTime(now)}), updated_at = ${toPgTime(now)},
                       email_index = null, password_hash = null
      where id = ${row.id}`;
    await deps.refreshTokens.revokeAllOfUser(tx, row.id, "user_erased");
    await tx`
      insert into audit_log (id, action, user_id, actor, reason, occurred_at)
      values (${uuidv7()}, 'user.erased', ${row.id}, ${caller.subject}, ${input.reason},
              ${toPgTime(now)})`;
    const events = row.deleted_at ? [] : [userDeleted(row.id, now)];
    events.push(userErased(row.id, now));
    await deps.outbox.append(tx, events);
    deps.logger.info({ userId: row.id, actor: caller.subject }, "user erased (data key destroyed)");
    return { userId: row.id, erasedAt: now };
  });
}
