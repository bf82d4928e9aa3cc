import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadIdentityConfig } from "../identity-config.js";
import {
  DEV_PII_KEYS_FILE,
  DEV_SIGNING_KEYS_FILE,
  loadKeyMaterial,
  rotateSigningKeyFile,
} from "./key-material.js";
import { createPiiCipher, parseMasterKey } from "./pii-cipher.js";
import { generateSigningJwk } from "./signing-keys.js";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "identity-keys-"));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("identity key material", () => {
  it("generates development keys once, with mode 0600, and reuses them", async () => {
    const dataDir = join(tempDir(), "nested", "identity");
    const config = loadIdentityConfig({ IDENTITY_DATA_DIR: dataDir });
    const first = await loadKeyMaterial(config);
    expect(first.generated.sort()).toEqual(
      [join(dataDir, DEV_PII_KEYS_FILE), join(dataDir, DEV_SIGNING_KEYS_FILE)].sort(),
    );
    for (const file of first.generated) expect(statSync(file).mode & 0o777).toBe(0o600);
    const second = await loadKeyMaterial(config);
    expect(second.generated).toEqual([]);
    expect(second.signingKeys.current.kid).toBe(first.signingKeys.current.kid);
    expect(second.pii.emailIndex("a@example.com")).toEqual(first.pii.emailIndex("a@example.com"));
    expect(readFileSync(join(dataDir, DEV_SIGNING_KEYS_FILE), "utf8")).toContain('"d"');
  });

  it("refuses to generate keys in production and rejects malformed keys, naming the variable", async () => {
    const dataDir = tempDir();
    await expect(
      loadKeyMaterial(loadIdentityConfig({ NODE_ENV: "production", IDENTITY_DATA_DIR: dataDir })),
    ).rejects.toThrow(/IDENTITY_SIGNING_KEY/);
    const signing = JSON.stringify(generateSigningJwk());
    await expect(
      loadKeyMaterial(
        loadIdentityConfig({
          NODE_ENV: "production",
          IDENTITY_SIGNING_KEY: signing,
          IDENTITY_DATA_DIR: dataDir,
        }),
      ),
    ).rejects.toThrow(/IDENTITY_MASTER_KEY/);
    const complete = {
      NODE_ENV: "production",
      IDENTITY_SIGNING_KEY: signing,
      IDENTITY_MASTER_KEY: randomBytes(32).toString("base64"),
      IDENTITY_BLIND_INDEX_KEY: randomBytes(32).toString("base64"),
      IDENTITY_DATA_DIR: dataDir,
    };
    const loaded = await loadKeyMaterial(loadIdentityConfig(complete));
    expect(loaded.generated).toEqual([]);
    const publicOnly = JSON.parse(signing) as Record<string, string>;
    delete publicOnly.d;
    for (const [name, value] of [
      ["IDENTITY_SIGNING_KEY", JSON.stringify(publicOnly)],
      ["IDENTITY_SIGNING_KEY", "{not json"],
      ["IDENTITY_MASTER_KEY", randomBytes(16).toString("base64")],
      ["IDENTITY_BLIND_INDEX_KEY", "short"],
    ] as const) {
      await expect(
        loadKeyMaterial(loadIdentityConfig({ ...complete, [name]: value })),
      ).rejects.toThrow(name);
    }
  });

  it("rotates the signing key file keeping previous keys for verification", async () => {
    const dir = tempDir();
    const config = loadIdentityConfig({ IDENTITY_DATA_DIR: dir });
    const before = await loadKeyMaterial(config);
    const kids = await rotateSigningKeyFile(join(dir, DEV_SIGNING_KEYS_FILE));
    expect(kids[1]).toBe(before.signingKeys.current.kid);
    const after = await loadKeyMaterial(config);
    expect(after.signingKeys.current.kid).toBe(kids[0]);
    expect(after.signingKeys.jwks().keys.map((k) => k.kid)).toEqual(kids);
    expect(statSync(join(dir, DEV_SIGNING_KEYS_FILE)).mode & 0o777).toBe(0o600);
  });

  it("opens data keys wrapped by a previous master key after rotation", () => {
    const old = parseMasterKey(`k1:${randomBytes(32).toString("base64")}`);
    const next = parseMasterKey(randomBytes(32).toString("base64"));
    expect(next.id).toMatch(/^mk-[0-9a-f]{16}$/);
    const blindIndexKey = randomBytes(32);
    const before = createPiiCipher({ current: old, blindIndexKey });
    const { dataKey, wrappedKey, masterKeyId } = before.newDataKey("u1");
    const sealed = before.encrypt(dataKey, "u1", "first_name", "Zoë");
    const after = createPiiCipher({ current: next, previous: [old], blindIndexKey });
    const unwrapped = after.unwrapDataKey("u1", wrappedKey, masterKeyId);
    expect(after.decrypt(unwrapped, "u1", "first_name", sealed)).toBe("Zoë");
    const rewrapped = after.wrapDataKey("u1", unwrapped);
    expect(rewrapped.masterKeyId).toBe(next.id);
    // Once the old key is dropped, only re-wrapped keys open.
    const dropped = createPiiCipher({ current: next, blindIndexKey });
    expect(() => dropped.unwrapDataKey("u1", wrappedKey, masterKeyId)).toThrow(/not configured/);
    expect(dropped.unwrapDataKey("u1", rewrapped.wrappedKey, rewrapped.masterKeyId)).toEqual(
      dataKey,
    );
    // A wrapped key is bound to its user.
    expect(() => after.unwrapDataKey("u2", wrappedKey, masterKeyId)).toThrow();
  });
});
