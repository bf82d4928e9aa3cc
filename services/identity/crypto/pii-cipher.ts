import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from "node:crypto";

/**
 * Envelope encryption for personal data. Every user has its own random
 * 256-bit data key; fields are AES-256-GCM under it, bound to (user, field)
 * by the associated data so ciphertexts cannot be swapped between rows or
 * columns. The data key is stored wrapped (AES-256-GCM) by a master key whose
 * id is stored beside it: a new master key can be introduced while old
 * wrapped keys still open with the previous ones. Destroying the wrapped data
 * key (crypto-shredding) makes every copy of the user's ciphertext useless.
 */
export interface MasterKey {
  id: string;
  key: Buffer;
}

export class PiiKeyError extends Error {
  override name = "PiiKeyError";
}

const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export interface PiiCipher {
  readonly currentMasterKeyId: string;
  /** A fresh data key and its wrapped form under the current master key. */
  newDataKey(userId: string): { dataKey: Buffer; wrappedKey: Buffer; masterKeyId: string };
  unwrapDataKey(userId: string, wrappedKey: Uint8Array, masterKeyId: string): Buffer;
  /** Wraps an existing data key under the current master key (rotation). */
  wrapDataKey(userId: string, dataKey: Buffer): { wrappedKey: Buffer; masterKeyId: string };
  encrypt(dataKey: Buffer, userId: string, field: string, plaintext: string): Buffer;
  decrypt(dataKey: Buffer, userId: string, field: string, ciphertext: Uint8Array): string;
  /** Keyed HMAC-SHA256 of the normalised email: lookups without plaintext. */
  emailIndex(normalizedEmail: string): Buffer;
}

export function masterKeyId(key: Buffer): string {
  return `mk-${createHash("sha256").update(key).digest("hex").slice(0, 16)}`;
}

/** "base64" or "id:base64" → a 32-byte master key. */
export function parseMasterKey(text: string): MasterKey {
  const colon = text.indexOf(":");
  const id = colon > 0 ? text.slice(0, colon) : undefined;
  const key = Buffer.from(colon > 0 ? text.slice(colon + 1) : text, "base64");
  if (key.length !== 32) throw new PiiKeyError("a master key must be 32 bytes, base64-encoded");
  if (id !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(id)) {
    throw new PiiKeyError("a master key id must be 1-64 characters of [A-Za-z0-9._-]");
  }
  return { id: id ?? masterKeyId(key), key };
}

function seal(key: Buffer, aad: string, plaintext: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(Buffer.from(aad, "utf8"));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.of(VERSION), nonce, body, cipher.getAuthTag()]);
}

function open(key: Buffer, aad: string, sealed: Uint8Array): Buffer {
  const data = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (data.length < 1 + NONCE_BYTES + TAG_BYTES || data[0] !== VERSION) {
    throw new PiiKeyError("unknown ciphertext format");
  }
  const nonce = data.subarray(1, 1 + NONCE_BYTES);
  const tag = data.subarray(data.length - TAG_BYTES);
  const decipher = createDecipheriv("aes-256-gcm", key, nonce);
  decipher.setAAD(Buffer.from(aad, "utf8"));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([
      decipher.update(data.subarray(1 + NONCE_BYTES, data.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch (cause) {
    throw new PiiKeyError("ciphertext does not authenticate", { cause });
  }
}

export function createPiiCipher(options: {
  current: MasterKey;
  previous?: readonly MasterKey[];
  blindIndexKey: Buffer;
}): PiiCipher {
  if (options.blindIndexKey.length < 32) throw new PiiKeyError("blind index key must be 32 bytes");
  const masters = new Map<string, Buffer>();
  for (const k of [options.current, ...(options.previous ?? [])]) masters.set(k.id, k.key);
  const wrapDataKey = (userId: string, dataKey: Buffer) => ({
    wrappedKey: seal(options.current.key, `user-key:${userId}`, dataKey),
    masterKeyId: options.current.id,
  });
  return {
    currentMasterKeyId: options.current.id,
    newDataKey(userId) {
      const dataKey = randomBytes(32);
      return { dataKey, ...wrapDataKey(userId, dataKey) };
    },
    wrapDataKey,
    unwrapDataKey(userId, wrappedKey, id) {
      const master = masters.get(id);
      if (!master) throw new PiiKeyError(`master key ${id} is not configured`);
      return open(master, `user-key:${userId}`, wrappedKey);
    },
    encrypt: (dataKey, userId, field, plaintext) =>
      seal(dataKey, `${userId}:${field}`, Buffer.from(plaintext, "utf8")),
    decrypt: (dataKey, userId, field, ciphertext) =>
      open(dataKey, `${userId}:${field}`, ciphertext).toString("utf8"),
    emailIndex: (email) =>
      createHmac("sha256", options.blindIndexKey).update(email, "utf8").digest(),
  };
}
