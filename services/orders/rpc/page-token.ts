import { createHash } from "node:crypto";
import { InvalidArgumentError } from "../../../platform/errors/domain-errors.js";
import { isUuid } from "../domain/create-order-input.js";

/**
 * Keyset page tokens: the last id of the page (ids are UUIDv7, newest first)
 * plus a fingerprint of the filters, so a token is refused with other filters.
 * Opaque to clients; not secret (it only moves within the caller's own scope).
 */
export function filterFingerprint(parts: readonly unknown[]): string {
  return createHash("sha256").update(JSON.stringify(parts)).digest("base64url").slice(0, 16);
}

export function encodePageToken(afterId: string, fingerprint: string): string {
  return Buffer.from(JSON.stringify({ a: afterId, f: fingerprint })).toString("base64url");
}

export function decodePageToken(token: string, fingerprint: string): string | undefined {
  if (token === "") return undefined;
  let parsed: unknown;
  try {
    if (token.length > 512 || !/^[A-Za-z0-9_-]+$/.test(token)) throw new Error("shape");
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw InvalidArgumentError.field("page_token", "is not a valid page token");
  }
  const { a, f } = (parsed ?? {}) as { a?: unknown; f?: unknown };
  if (typeof a !== "string" || !isUuid(a) || typeof f !== "string") {
    throw InvalidArgumentError.field("page_token", "is not a valid page token");
  }
  if (f !== fingerprint) {
    throw InvalidArgumentError.field("page_token", "was issued for different filters");
  }
  return a;
}

/** page_size: 0 → default, above max → max, negative → error. */
export function pageSize(value: number, fallback: number, max: number): number {
  if (value < 0) throw InvalidArgumentError.field("page_size", "must not be negative");
  if (value === 0) return fallback;
  return Math.min(value, max);
}
