import { createHash } from "node:crypto";
import type { TransactionSql } from "postgres";
import { FailedPreconditionError } from "../../../platform/errors/domain-errors.js";

export function requestHash(parts: unknown): string {
  return createHash("sha256")
    .update(JSON.stringify(parts, (_, v) => (typeof v === "bigint" ? v.toString() : v)))
    .digest("base64url");
}

/**
 * Claims `request_id` for `operation` inside the caller's transaction. A
 * concurrent call with the same key blocks on the primary key until the first
 * commits, then sees its result. Returns the stored response of an earlier
 * call, or undefined when this call is the first and must do the work.
 */
export async function claimRequest(
  tx: TransactionSql,
  operation: string,
  requestId: string,
  hash: string,
): Promise<Uint8Array | undefined> {
  const claimed = await tx`
    insert into idempotency_keys (operation, request_id, request_hash)
    values (${operation}, ${requestId}::uuid, ${hash})
    on conflict do nothing returning 1`;
  if (claimed.length > 0) return undefined;
  const [row] = await tx<{ request_hash: string; response: Buffer | null }[]>`
    select request_hash, response from idempotency_keys
    where operation = ${operation} and request_id = ${requestId}::uuid`;
  if (!row || row.request_hash !== hash || !row.response) {
    throw new FailedPreconditionError(
      "request_id was already used with a different request",
      "REQUEST_ID_REUSED",
      { request_id: requestId },
    );
  }
  return new Uint8Array(row.response);
}

export async function storeResponse(
  tx: TransactionSql,
  operation: string,
  requestId: string,
  response: Uint8Array,
): Promise<void> {
  await tx`
    update idempotency_keys set response = ${Buffer.from(response)}
    where operation = ${operation} and request_id = ${requestId}::uuid`;
}
