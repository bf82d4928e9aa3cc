import { SignJWT } from "jose";
import { v7 as uuidv7 } from "uuid";
import { ACCESS_TOKEN_TYPE } from "../../../platform/auth/token-verifier.js";
import type { SigningKeyRing } from "../crypto/signing-keys.js";

export interface AccessTokenIssuer {
  issue(userId: string, roles: readonly string[]): Promise<{ token: string; expiresAt: Date }>;
}

/** EdDSA (Ed25519) access tokens per RFC 9068: kid, iss, aud, sub, roles, exp, iat, jti. */
export function createAccessTokenIssuer(options: {
  keys: SigningKeyRing;
  issuer: string;
  audience: string;
  ttlSec: number;
}): AccessTokenIssuer {
  return {
    async issue(userId, roles) {
      const key = options.keys.current;
      const iat = Math.floor(Date.now() / 1000);
      const exp = iat + options.ttlSec;
      const token = await new SignJWT({ roles: [...roles] })
        .setProtectedHeader({ alg: "EdDSA", kid: key.kid, typ: ACCESS_TOKEN_TYPE })
        .setIssuer(options.issuer)
        .setAudience(options.audience)
        .setSubject(userId)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .setJti(uuidv7())
        .sign(key.privateKey);
      return { token, expiresAt: new Date(exp * 1000) };
    },
  };
}
