import { v7 as uuidv7 } from "uuid";
import {
  AlreadyExistsError,
  type FieldViolation,
  InvalidArgumentError,
} from "../../../platform/errors/domain-errors.js";
import type { IdentityDeps } from "../identity-deps.js";
import { newPasswordViolations } from "../passwords/password-policy.js";
import {
  emailViolation,
  nameViolation,
  normalizeEmail,
  normalizeName,
  type Role,
} from "./user-input.js";
import { userCreated } from "./user-messages.js";
import { isLiveEmailConflict, type UserRecord } from "./user-store.js";

export interface NewAccount {
  email: string;
  password: string;
  firstName: string;
  lastName: string;
}

function emailTaken(cause?: unknown): AlreadyExistsError {
  const error = new AlreadyExistsError("an account with this email already exists", "EMAIL_TAKEN");
  if (cause) (error as { cause?: unknown }).cause = cause;
  return error;
}

/**
 * Sign-up and the admin bootstrap command: validate everything before any
 * hashing, hash, then insert the user, its data key and UserCreated in one
 * transaction. The live-email unique index is the final arbiter of races.
 */
export async function createAccount(
  deps: IdentityDeps,
  input: NewAccount,
  roles: Role[],
): Promise<UserRecord> {
  const violations: FieldViolation[] = [];
  const emailProblem = emailViolation("email", input.email);
  if (emailProblem) violations.push(emailProblem);
  violations.push(
    ...newPasswordViolations("password", input.password, { email: input.email.trim() }),
  );
  for (const [field, value] of [
    ["first_name", input.firstName],
    ["last_name", input.lastName],
  ] as const) {
    const problem = nameViolation(field, value);
    if (problem) violations.push(problem);
  }
  if (violations.length > 0) throw new InvalidArgumentError(violations);

  const email = normalizeEmail(input.email);
  const emailIndex = deps.pii.emailIndex(email);
  // Cheap early answer; saves an argon2 hash on the common duplicate case.
  if (await deps.users.findLiveByEmail(deps.sql, emailIndex)) throw emailTaken();

  const passwordHash = await deps.hasher.hash(input.password);
  const now = new Date();
  const id = uuidv7();
  try {
    const row = await deps.sql.begin(async (tx) => {
      const inserted = await deps.users.insert(tx, {
        id,
        email,
        firstName: normalizeName(input.firstName),
        lastName: normalizeName(input.lastName),
        passwordHash,
        roles,
        emailVerified: false,
        now,
      });
      await deps.outbox.append(tx, [userCreated({ id, roles, createdAt: now })]);
      return inserted;
    });
    return deps.users.decrypt(row);
  } catch (error) {
    if (isLiveEmailConflict(error)) throw emailTaken(error);
    throw error;
  }
}
