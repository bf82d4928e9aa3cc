import type { FieldViolation } from "../../../platform/errors/domain-errors.js";

export const EMAIL_MAX_CHARS = 254;
export const NAME_MAX_CHARS = 100;
export const KNOWN_ROLES = ["customer", "admin", "service"] as const;
export type Role = (typeof KNOWN_ROLES)[number];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// ASCII addresses only (no quoted local parts, no SMTPUTF8): what every mail
// system delivers to. Domain labels as in RFC 1035, punycode allowed.
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const DOMAIN = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])$/;
// Control, format (except ZWNJ/ZWJ, which some scripts need), surrogate,
// private-use and unassigned code points, and line/paragraph separators.
const FORBIDDEN_IN_NAMES = /[\p{Cc}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]|(?![\u200C\u200D])\p{Cf}/u;

function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** Trim, NFC, lower-case: the one form used for storage, lookup and the blind index. */
export function normalizeEmail(raw: string): string {
  return raw.trim().normalize("NFC").toLowerCase();
}

export function emailViolation(field: string, raw: string): FieldViolation | undefined {
  // Bound the work before normalising attacker-sized input.
  if (raw.length > EMAIL_MAX_CHARS * 4) {
    return { field, description: `must be at most ${EMAIL_MAX_CHARS} characters` };
  }
  const email = normalizeEmail(raw);
  if (email === "") return { field, description: "is required" };
  if (email.length > EMAIL_MAX_CHARS) {
    return { field, description: `must be at most ${EMAIL_MAX_CHARS} characters` };
  }
  const at = email.lastIndexOf("@");
  const local = email.slice(0, at);
  const domain = email.slice(at + 1);
  if (at <= 0 || local.length > 64 || !LOCAL_PART.test(local) || !DOMAIN.test(domain)) {
    return { field, description: "must be a valid email address" };
  }
  return undefined;
}

/** Trim + NFC. */
export function normalizeName(raw: string): string {
  return raw.trim().normalize("NFC");
}

export function nameViolation(field: string, raw: string): FieldViolation | undefined {
  if (raw.length > NAME_MAX_CHARS * 4) {
    return { field, description: `must be at most ${NAME_MAX_CHARS} characters` };
  }
  const name = normalizeName(raw);
  if (name === "") return { field, description: "is required" };
  if (codePoints(name) > NAME_MAX_CHARS) {
    return { field, description: `must be at most ${NAME_MAX_CHARS} characters` };
  }
  if (FORBIDDEN_IN_NAMES.test(name)) {
    return { field, description: "must not contain control or invisible formatting characters" };
  }
  return undefined;
}

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

export function idViolation(field: string, value: string): FieldViolation | undefined {
  if (value === "") return { field, description: "is required" };
  if (!isUuid(value)) return { field, description: "must be a UUID in canonical lower-case form" };
  return undefined;
}

export function isRole(value: string): value is Role {
  return (KNOWN_ROLES as readonly string[]).includes(value);
}

/** Free text kept in the audit log: bounded, no control characters. */
export function reasonViolation(field: string, value: string): FieldViolation | undefined {
  if (codePoints(value) > 500) return { field, description: "must be at most 500 characters" };
  if (/[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]/u.test(value.replace(/[\n\t]/g, " "))) {
    return { field, description: "must not contain control characters" };
  }
  return undefined;
}
