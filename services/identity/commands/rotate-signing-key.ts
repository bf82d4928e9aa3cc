import { join } from "node:path";
import { DEV_SIGNING_KEYS_FILE, rotateSigningKeyFile } from "../crypto/key-material.js";
import { loadIdentityConfig } from "../identity-config.js";

/**
 * Puts a new Ed25519 key in front of the signing key file (the configured
 * IDENTITY_SIGNING_KEYS_FILE, else the development file) and keeps the two
 * previous keys so tokens they signed stay valid until they expire. Restart
 * identity replicas to sign with the new key; other services pick the new
 * kid up from the JWKS on first sight (refetch on unknown kid).
 */
const config = loadIdentityConfig();
const path = config.signingKeysFile ?? join(config.dataDir, DEV_SIGNING_KEYS_FILE);
const kids = await rotateSigningKeyFile(path);
process.stdout.write(
  `${JSON.stringify({ file: path, current: kids[0], previous: kids.slice(1) })}\n`,
);
