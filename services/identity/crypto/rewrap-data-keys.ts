import type { Sql } from "postgres";
import type { PiiCipher } from "./pii-cipher.js";

/**
 * Master-key rotation, step 2: after a new IDENTITY_MASTER_KEY is deployed
 * with the old one in IDENTITY_PREVIOUS_MASTER_KEYS, re-wrap every data key
 * still under an old master key. Only the 32-byte data keys change; field
 * ciphertext stays as it is. Batched, each batch in its own transaction with
 * row locks, so it can run beside the service and be resumed. When it reports
 * zero remaining, the old master key can be removed from configuration.
 */
export async function rewrapDataKeys(
  sql: Sql,
  pii: PiiCipher,
  batchSize = 500,
): Promise<{ rewrapped: number; remaining: number }> {
  let rewrapped = 0;
  for (;;) {
    const done = await sql.begin(async (tx) => {
      const rows = await tx<{ user_id: string; wrapped_key: Buffer; master_key_id: string }[]>`
        select user_id, wrapped_key, master_key_id from user_keys
        where wrapped_key is not null and master_key_id <> ${pii.currentMasterKeyId}
        limit ${batchSize}
        for update skip locked`;
      for (const row of rows) {
        const dataKey = pii.unwrapDataKey(row.user_id, row.wrapped_key, row.master_key_id);
        const { wrappedKey, masterKeyId } = pii.wrapDataKey(row.user_id, dataKey);
        await tx`
          update user_keys set wrapped_key = ${wrappedKey}, master_key_id = ${masterKeyId}
          where user_id = ${row.user_id} and wrapped_key is not null`;
      }
      return rows.length;
    });
    rewrapped += done;
    if (done < batchSize) break;
  }
  const [left] = await sql<{ n: number }[]>`
    select count(*)::int as n from user_keys
    where wrapped_key is not null and master_key_id <> ${pii.currentMasterKeyId}`;
  return { rewrapped, remaining: left!.n };
}
