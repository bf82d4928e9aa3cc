import { ConfigError, type Env, readInt, readOptionalString, readString } from "../config/env.js";

export interface AuthConfig {
  /** `iss` of access tokens issued by identity. */
  issuer: string;
  /** `aud` every access token must carry. */
  audience: string;
  /** `iss` of mesh-internal service tokens (HS256, see service-tokens.ts). */
  serviceIssuer: string;
  /** Shared secret for service tokens; service tokens are refused when unset. */
  serviceTokenSecret: Uint8Array | undefined;
  /** Accepted clock skew in seconds for exp/nbf/iat (bounded to 0..60). */
  clockToleranceSec: number;
  /** Explicit JWKS URL; when unset, services ask identity's GetJwks RPC. */
  jwksUrl: string | undefined;
}

export const DEFAULT_ISSUER = "commerce-mesh/identity";
export const DEFAULT_AUDIENCE = "commerce-mesh";
export const DEFAULT_SERVICE_ISSUER = "commerce-mesh/services";

export function loadAuthConfig(env: Env = process.env): AuthConfig {
  const secretText = readOptionalString(env, "SERVICE_TOKEN_SECRET");
  let serviceTokenSecret: Uint8Array | undefined;
  if (secretText !== undefined) {
    serviceTokenSecret = new TextEncoder().encode(secretText);
    // HS256 needs a key at least as long as the hash output (RFC 7518 §3.2).
    if (serviceTokenSecret.byteLength < 32) {
      throw new ConfigError("SERVICE_TOKEN_SECRET", "must be at least 32 bytes long");
    }
  }
  const jwksUrl = readOptionalString(env, "AUTH_JWKS_URL");
  if (jwksUrl !== undefined && !/^https?:\/\//.test(jwksUrl)) {
    throw new ConfigError("AUTH_JWKS_URL", "must be an http(s) URL");
  }
  return {
    issuer: readString(env, "AUTH_ISSUER", DEFAULT_ISSUER),
    audience: readString(env, "AUTH_AUDIENCE", DEFAULT_AUDIENCE),
    serviceIssuer: readString(env, "AUTH_SERVICE_ISSUER", DEFAULT_SERVICE_ISSUER),
    serviceTokenSecret,
    clockToleranceSec: readInt(env, "AUTH_CLOCK_TOLERANCE_SEC", 30, { min: 0, max: 60 }),
    jwksUrl,
  };
}
