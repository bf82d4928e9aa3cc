import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../../../platform/config/env.js";
import type { IdentityConfig } from "../identity-config.js";
import { createPiiCipher, type MasterKey, type PiiCipher, parseMasterKey } from "./pii-cipher.js";
import { generateSigningJwk, parseSigningKeys, type SigningKeyRing } from "./signing-keys.js";

export interface KeyMaterial {
  signingKeys: SigningKeyRing;
  pii: PiiCipher;
  /** Files generated for local development in this start (for a log line). */
  generated: string[];
}

export const DEV_SIGNING_KEYS_FILE = "signing-keys.json";
export const DEV_PII_KEYS_FILE = "pii-keys.json";

/**
 * Keys come from configuration. Only when a key is absent and generated keys
 * are allowed (never with NODE_ENV=production) is one generated and kept
 * under the data directory with mode 0600, so restarts keep tokens and
 * ciphertext valid.
 */
export async function loadKeyMaterial(config: IdentityConfig): Promise<KeyMaterial> {
  const generated: string[] = [];
  const devFile = async (name: string, variable: string, create: () => string): Promise<string> => {
    if (!config.allowGeneratedKeys) {
      throw new ConfigError(variable, "is required (generated development keys are disabled)");
    }
    const { text, created } = await readOrCreateSecretFile(join(config.dataDir, name), create);
    if (created) generated.push(join(config.dataDir, name));
    return text;
  };

  let signingJson: string;
  if (config.signingKeysFile) {
    signingJson = await readFile(config.signingKeysFile, "utf8").catch((cause: unknown) => {
      throw new ConfigError("IDENTITY_SIGNING_KEYS_FILE", `cannot be read (${String(cause)})`);
    });
  } else if (config.signingKeyJson) {
    signingJson = config.signingKeyJson;
  } else {
    signingJson = await devFile(DEV_SIGNING_KEYS_FILE, "IDENTITY_SIGNING_KEY", () =>
      JSON.stringify({ keys: [generateSigningJwk()] }, null, 2),
    );
  }
  const signingKeys = await parseSigningKeys(signingJson).catch((cause: unknown) => {
    throw new ConfigError("IDENTITY_SIGNING_KEY", `is invalid: ${(cause as Error).message}`);
  });

  let masterText = config.masterKey;
  let blindText = config.blindIndexKey;
  if (masterText === undefined || blindText === undefined) {
    const dev = JSON.parse(
      await devFile(DEV_PII_KEYS_FILE, "IDENTITY_MASTER_KEY / IDENTITY_BLIND_INDEX_KEY", () =>
        JSON.stringify({
          masterKey: randomBytes(32).toString("base64"),
          blindIndexKey: randomBytes(32).toString("base64"),
        }),
      ),
    ) as { masterKey: string; blindIndexKey: string };
    masterText ??= dev.masterKey;
    blindText ??= dev.blindIndexKey;
  }
  let current: MasterKey;
  let previous: MasterKey[];
  try {
    current = parseMasterKey(masterText);
  } catch (cause) {
    throw new ConfigError("IDENTITY_MASTER_KEY", (cause as Error).message);
  }
  try {
    previous = (config.previousMasterKeys ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "")
      .map(parseMasterKey);
  } catch (cause) {
    throw new ConfigError("IDENTITY_PREVIOUS_MASTER_KEYS", (cause as Error).message);
  }
  const blindIndexKey = Buffer.from(blindText, "base64");
  if (blindIndexKey.length !== 32) {
    throw new ConfigError("IDENTITY_BLIND_INDEX_KEY", "must be 32 bytes, base64-encoded");
  }
  return { signingKeys, pii: createPiiCipher({ current, previous, blindIndexKey }), generated };
}

/** Exclusive create (two processes starting at once agree on one key). */
async function readOrCreateSecretFile(
  path: string,
  create: () => string,
): Promise<{ text: string; created: boolean }> {
  try {
    return { text: await readFile(path, "utf8"), created: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  await mkdir(join(path, ".."), { recursive: true, mode: 0o700 });
  const text = create();
  try {
    await writeFile(path, text, { mode: 0o600, flag: "wx" });
    return { text, created: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    return { text: await readFile(path, "utf8"), created: false };
  }
}

/**
 * Prepends a new signing key to a JWK Set file, keeping at most `keepPrevious`
 * older keys (they keep verifying tokens until those expire). Atomic rename.
 */
export async function rotateSigningKeyFile(path: string, keepPrevious = 2): Promise<string[]> {
  const existing = JSON.parse(await readFile(path, "utf8")) as
    | { keys?: unknown[] }
    | Record<string, unknown>;
  const old = Array.isArray((existing as { keys?: unknown[] }).keys)
    ? (existing as { keys: unknown[] }).keys
    : [existing];
  const next = { keys: [generateSigningJwk(), ...old.slice(0, keepPrevious)] };
  const ring = await parseSigningKeys(JSON.stringify(next));
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(next, null, 2), { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
  return ring.keys.map((k) => k.kid);
}
