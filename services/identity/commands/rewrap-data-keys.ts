import { loadServiceConfig } from "../../../platform/config/service-config.js";
import { createDatabase } from "../../../platform/db/postgres.js";
import { loadKeyMaterial } from "../crypto/key-material.js";
import { rewrapDataKeys } from "../crypto/rewrap-data-keys.js";
import { loadIdentityConfig } from "../identity-config.js";

/**
 * Re-wraps users' data keys under the current master key after a master-key
 * rotation (see crypto/rewrap-data-keys.ts):
 *
 *   IDENTITY_MASTER_KEY=new IDENTITY_PREVIOUS_MASTER_KEYS=old npm run identity:rewrap-data-keys
 */
const service = loadServiceConfig("identity");
const keys = await loadKeyMaterial(loadIdentityConfig());
const database = createDatabase({
  url: service.databaseUrl,
  schema: service.dbSchema,
  maxConnections: 2,
});
try {
  const result = await rewrapDataKeys(database.sql, keys.pii);
  process.stdout.write(
    `${JSON.stringify({ masterKeyId: keys.pii.currentMasterKeyId, ...result })}\n`,
  );
} finally {
  await database.close();
}
