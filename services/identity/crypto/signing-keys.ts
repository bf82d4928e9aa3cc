import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
} from "node:crypto";
import { calculateJwkThumbprint, type JSONWebKeySet, type JWK } from "jose";

export class SigningKeyError extends Error {
  override name = "SigningKeyError";
}

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  /** Public JWK with kid, alg, use — what the JWKS serves. */
  publicJwk: Required<Pick<JWK, "kty" | "crv" | "x" | "kid" | "alg" | "use">>;
}

/**
 * The first key signs; the others are previous keys kept only so tokens they
 * signed verify until they expire. Retire a previous key once the access
 * token lifetime has passed since it stopped signing.
 */
export interface SigningKeyRing {
  readonly current: SigningKey;
  readonly keys: readonly SigningKey[];
  jwks(): JSONWebKeySet;
}

export function generateSigningJwk(): JsonWebKey {
  const { privateKey } = generateKeyPairSync("ed25519");
  return privateKey.export({ format: "jwk" });
}

async function toSigningKey(jwk: unknown): Promise<SigningKey> {
  const candidate = jwk as Record<string, unknown>;
  if (
    typeof candidate !== "object" ||
    candidate === null ||
    candidate.kty !== "OKP" ||
    candidate.crv !== "Ed25519" ||
    typeof candidate.d !== "string" ||
    typeof candidate.x !== "string"
  ) {
    throw new SigningKeyError(
      "a signing key must be a private Ed25519 JWK (kty OKP, crv Ed25519, d, x)",
    );
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: candidate as JsonWebKey, format: "jwk" });
  } catch (cause) {
    throw new SigningKeyError("signing key is not a valid Ed25519 private key", { cause });
  }
  const pub = createPublicKey(privateKey).export({ format: "jwk" }) as { x: string };
  if (pub.x !== candidate.x) throw new SigningKeyError("signing key: x does not match d");
  const kid =
    typeof candidate.kid === "string" && candidate.kid !== ""
      ? candidate.kid
      : await calculateJwkThumbprint({ kty: "OKP", crv: "Ed25519", x: pub.x });
  return {
    kid,
    privateKey,
    publicJwk: { kty: "OKP", crv: "Ed25519", x: pub.x, kid, alg: "EdDSA", use: "sig" },
  };
}

/** Accepts one private JWK or a JWK Set `{ keys: [current, ...previous] }`. */
export async function parseSigningKeys(json: string): Promise<SigningKeyRing> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (cause) {
    throw new SigningKeyError("signing keys are not valid JSON", { cause });
  }
  const list =
    parsed && typeof parsed === "object" && Array.isArray((parsed as { keys?: unknown }).keys)
      ? (parsed as { keys: unknown[] }).keys
      : [parsed];
  if (list.length === 0) throw new SigningKeyError("no signing key given");
  const keys = await Promise.all(list.map(toSigningKey));
  if (new Set(keys.map((k) => k.kid)).size !== keys.length) {
    throw new SigningKeyError("signing keys have duplicate kids");
  }
  const jwks: JSONWebKeySet = { keys: keys.map((k) => ({ ...k.publicJwk })) };
  return { current: keys[0]!, keys, jwks: () => jwks };
}
