import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { InvalidArgumentError } from "../../../platform/errors/domain-errors.js";

/**
 * Keyset page tokens: the last row's sort keys, bound to the query they came
 * from (filter, order, search text) and signed with HMAC-SHA256. Opaque to
 * clients; a changed byte, a token from another filter or another secret
 * gives INVALID_ARGUMENT on `page_token`.
 */
export type CursorKeys = (string | number)[];

export interface PageTokens {
  encode(scope: string, keys: CursorKeys): string;
  /** undefined for an empty token (first page). */
  decode(scope: string, token: string, field?: string): CursorKeys | undefined;
}

const MAX_TOKEN_LENGTH = 2048;
const MAC_BYTES = 16;

function scopeDigest(scope: string): string {
  return createHash("sha256").update(scope).digest("base64url").slice(0, 16);
}

export function createPageTokens(secret: string): PageTokens {
  const mac = (payload: string) =>
    createHmac("sha256", secret).update(payload).digest().subarray(0, MAC_BYTES);
  const invalid = (field: string, why: string) =>
    InvalidArgumentError.field(field, `page token is invalid: ${why}`);
  return {
    encode(scope, keys) {
      const payload = Buffer.from(
        JSON.stringify({ v: 1, s: scopeDigest(scope), k: keys }),
      ).toString("base64url");
      return `${payload}.${mac(payload).toString("base64url")}`;
    },
    decode(scope, token, field = "page_token") {
      if (token === "") return undefined;
      if (token.length > MAX_TOKEN_LENGTH) throw invalid(field, "too long");
      const [payload, signature, extra] = token.split(".");
      if (!payload || !signature || extra !== undefined) throw invalid(field, "malformed");
      const given = Buffer.from(signature, "base64url");
      const expected = mac(payload);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw invalid(field, "signature mismatch (tampered or issued elsewhere)");
      }
      let body: { v?: unknown; s?: unknown; k?: unknown };
      try {
        body = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
      } catch {
        throw invalid(field, "malformed");
      }
      if (body.v !== 1 || !Array.isArray(body.k)) throw invalid(field, "malformed");
      if (body.s !== scopeDigest(scope)) {
        throw invalid(field, "it belongs to a different filter, order or query");
      }
      const keys = body.k as unknown[];
      if (!keys.every((k) => typeof k === "string" || typeof k === "number")) {
        throw invalid(field, "malformed");
      }
      return keys as CursorKeys;
    },
  };
}
