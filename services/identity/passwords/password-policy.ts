import type { FieldViolation } from "../../../platform/errors/domain-errors.js";
import { COMMON_PASSWORDS } from "./common-passwords.js";

/** ASVS L1 (2.1.1, 2.1.2): 12 to 128 characters; no composition rules. */
export const PASSWORD_MIN_CHARS = 12;
export const PASSWORD_MAX_CHARS = 128;
/** Code points are counted, but raw input is cut off far earlier (4 bytes each at most). */
const PASSWORD_MAX_UTF16 = PASSWORD_MAX_CHARS * 2;

function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * Length bounds only: what sign-in applies before it lets a password near
 * argon2 (so a 10 KB input is refused without hashing).
 */
export function passwordLengthViolation(
  field: string,
  password: string,
): FieldViolation | undefined {
  if (password.length === 0) return { field, description: "is required" };
  if (password.length > PASSWORD_MAX_UTF16 || codePoints(password) > PASSWORD_MAX_CHARS) {
    return { field, description: `must be at most ${PASSWORD_MAX_CHARS} characters` };
  }
  return undefined;
}

/** The full policy for new passwords (sign-up, admin bootstrap). */
export function newPasswordViolations(
  field: string,
  password: string,
  context: { email?: string } = {},
): FieldViolation[] {
  const length = passwordLengthViolation(field, password);
  if (length) return [length];
  if (codePoints(password) < PASSWORD_MIN_CHARS) {
    return [{ field, description: `must be at least ${PASSWORD_MIN_CHARS} characters` }];
  }
  const lowered = password.toLowerCase();
  if (COMMON_PASSWORDS.has(lowered)) {
    return [{ field, description: "is too common; choose another password" }];
  }
  if (context.email && lowered === context.email.toLowerCase()) {
    return [{ field, description: "must not be the email address" }];
  }
  if (/^(.)\1+$/u.test(password)) {
    return [{ field, description: "must not be a single repeated character" }];
  }
  return [];
}
