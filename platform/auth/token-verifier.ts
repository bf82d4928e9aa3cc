import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import { UnauthenticatedError, UnavailableError } from "../errors/domain-errors.js";
import type { Caller } from "./caller.js";

/** Verifies a bearer token and says who presented it. */
export interface TokenVerifier {
  /** Throws UnauthenticatedError (bad token) or UnavailableError (keys unreachable). */
  verify(token: string): Promise<Caller>;
}

/** Returns the current JWK Set, e.g. by calling identity's GetJwks RPC. */
export type JwksProvider = () => Promise<JSONWebKeySet>;

export interface TokenVerifierOptions {
  issuer: string;
  audience: string;
  /** Exactly one key source: a URL serving a JWK Set, a provider, or a local set. */
  jwksUrl?: string;
  jwksProvider?: JwksProvider;
  /** Local public keys (identity verifies with its own keys); read on every call. */
  localJwks?: () => JSONWebKeySet;
  /** Accepted clock skew in seconds (default 30, at most 60). */
  clockToleranceSec?: number;
  /** Minimum time between two key refetches triggered by an unknown `kid` (default 30 s). */
  refetchCooldownMs?: number;
  /** Keys are refetched at least this often to pick up rotations (default 10 min). */
  cacheMaxAgeMs?: number;
  /** Enables mesh-internal service tokens (HS256); see service-tokens.ts. */
  serviceTokens?: { issuer: string; secret: Uint8Array };
  /**
   * Verified tokens remembered until they expire (default 10 000; 0 = off).
   * A client reuses one access token for many calls, and a signature check
   * costs far more than the rest of a cheap read.
   */
  cacheSize?: number;
}

/** `typ` of access tokens (RFC 9068); stops other JWTs signed by the same keys passing. */
export const ACCESS_TOKEN_TYPE = "at+jwt";
const USER_ALGORITHM = "EdDSA";
const SERVICE_ALGORITHM = "HS256";
const MAX_TOKEN_LENGTH = 8 * 1024;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const MAX_ROLES = 32;

/**
 * RFC 8725 rules: the algorithm is pinned per key source (EdDSA for identity's
 * keys, HS256 only for service tokens and only with the service secret, so an
 * HS256 token "signed" with a public key can never pass), `alg: none` is never
 * accepted, and exp/nbf/iss/aud/typ are checked with bounded clock skew.
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const sources = [options.jwksUrl, options.jwksProvider, options.localJwks].filter(
    (s) => s !== undefined,
  );
  if (sources.length !== 1) {
    throw new Error("createTokenVerifier needs exactly one of jwksUrl, jwksProvider, localJwks");
  }
  const clockTolerance = Math.min(Math.max(options.clockToleranceSec ?? 30, 0), 60);
  const cooldownMs = options.refetchCooldownMs ?? 30_000;
  const cacheMaxAgeMs = options.cacheMaxAgeMs ?? 10 * 60_000;
  const getKey: JWTVerifyGetKey = options.jwksUrl
    ? createRemoteJWKSet(new URL(options.jwksUrl), {
        cooldownDuration: cooldownMs,
        cacheMaxAge: cacheMaxAgeMs,
        timeoutDuration: 5_000,
      })
    : options.jwksProvider
      ? createCachedJwks(options.jwksProvider, { cooldownMs, cacheMaxAgeMs })
      : localKeys(options.localJwks!);
  const userOptions = {
    algorithms: [USER_ALGORITHM],
    issuer: options.issuer,
    audience: options.audience,
    clockTolerance,
    typ: ACCESS_TOKEN_TYPE,
    requiredClaims: ["exp", "iat", "sub"],
  };
  const service = options.serviceTokens;
  const serviceOptions = service && {
    algorithms: [SERVICE_ALGORITHM],
    issuer: service.issuer,
    audience: options.audience,
    clockTolerance,
    typ: ACCESS_TOKEN_TYPE,
    requiredClaims: ["exp", "iat", "sub"],
  };

  const cacheSize = options.cacheSize ?? 10_000;
  const verified = new Map<string, Caller>();
  const remember = (token: string, caller: Caller): Caller => {
    if (cacheSize <= 0) return caller;
    // Insertion order is age order: drop the oldest entry when full.
    if (verified.size >= cacheSize) verified.delete(verified.keys().next().value!);
    verified.set(token, caller);
    return caller;
  };

  return {
    async verify(token) {
      const known = verified.get(token);
      if (known) {
        // Same bytes, same verdict; only the clock can change it.
        if (known.expiresAt + clockTolerance > Date.now() / 1000) return known;
        verified.delete(token);
      }
      if (token.length > MAX_TOKEN_LENGTH || !JWT_SHAPE.test(token)) {
        throw invalid("malformed token");
      }
      let alg: string | undefined;
      try {
        alg = decodeProtectedHeader(token).alg;
      } catch (cause) {
        throw invalid("undecodable header", cause);
      }
      try {
        if (alg === USER_ALGORITHM) {
          const { payload } = await jwtVerify(token, getKey, userOptions);
          return remember(token, toCaller(payload, "user"));
        }
        if (alg === SERVICE_ALGORITHM && service && serviceOptions) {
          const { payload } = await jwtVerify(token, service.secret, serviceOptions);
          return remember(token, toCaller(payload, "service"));
        }
      } catch (error) {
        throw mapError(error);
      }
      throw invalid(`algorithm ${String(alg)} not accepted`);
    },
  };
}

function toCaller(payload: JWTPayload, kind: Caller["kind"]): Caller {
  const subject = payload.sub;
  if (typeof subject !== "string" || subject === "" || subject.length > 256) {
    throw invalid("bad sub claim");
  }
  if (kind === "service") {
    if (!/^service:[a-z][a-z0-9-]{0,62}$/.test(subject)) throw invalid("bad service subject");
    // The shared secret proves "a mesh service", nothing more: whatever the
    // token claims, its only role is "service".
    return Object.freeze({
      kind,
      subject,
      roles: Object.freeze(["service"]),
      tokenId: payload.jti,
      expiresAt: payload.exp!,
    });
  }
  const roles = payload.roles ?? [];
  if (
    !Array.isArray(roles) ||
    roles.length > MAX_ROLES ||
    !roles.every((r) => typeof r === "string" && r.length > 0 && r.length <= 64)
  ) {
    throw invalid("bad roles claim");
  }
  // Frozen: cached callers are shared between calls.
  return Object.freeze({
    kind,
    subject,
    roles: Object.freeze([...(roles as string[])]),
    tokenId: payload.jti,
    expiresAt: payload.exp!,
  });
}

function invalid(detail: string, cause?: unknown): UnauthenticatedError {
  return new UnauthenticatedError(
    "invalid access token",
    "TOKEN_INVALID",
    cause ?? new Error(detail),
  );
}

function mapError(error: unknown): Error {
  if (error instanceof UnauthenticatedError || error instanceof UnavailableError) return error;
  if (error instanceof errors.JWTExpired) {
    return new UnauthenticatedError("access token expired", "TOKEN_EXPIRED", error);
  }
  if (error instanceof errors.JWKSTimeout || error instanceof JwksUnavailableError) {
    return new UnavailableError("token verification keys unavailable", "JWKS_UNAVAILABLE", error);
  }
  if (error instanceof errors.JOSEError) return invalid(error.code, error);
  // Anything else (e.g. a fetch failure inside jose) is the key source, not the token.
  if (error instanceof TypeError) {
    return new UnavailableError("token verification keys unavailable", "JWKS_UNAVAILABLE", error);
  }
  return invalid("verification failed", error);
}

class JwksUnavailableError extends Error {
  override name = "JwksUnavailableError";
}

function localKeys(read: () => JSONWebKeySet): JWTVerifyGetKey {
  let current: JSONWebKeySet | undefined;
  let resolver: ReturnType<typeof createLocalJWKSet> | undefined;
  return (header, token) => {
    const jwks = read();
    if (jwks !== current || !resolver) {
      current = jwks;
      resolver = createLocalJWKSet(jwks);
    }
    return resolver(header, token);
  };
}

/**
 * A JWK Set from any provider (an RPC, a file), cached, refreshed when older
 * than `cacheMaxAgeMs` and on an unknown `kid` — but never more often than
 * `cooldownMs`, so a flood of tokens with made-up kids cannot hammer identity.
 * A failed refresh keeps serving the last good set.
 */
export function createCachedJwks(
  provider: JwksProvider,
  options: { cooldownMs: number; cacheMaxAgeMs: number },
): JWTVerifyGetKey & { refresh(): Promise<void> } {
  let resolver: ReturnType<typeof createLocalJWKSet> | undefined;
  let fetchedAt = 0;
  let attemptedAt = Number.NEGATIVE_INFINITY;
  let inflight: Promise<void> | undefined;

  const refresh = (): Promise<void> => {
    inflight ??= (async () => {
      attemptedAt = Date.now();
      try {
        const jwks = await provider();
        if (!jwks || !Array.isArray(jwks.keys)) throw new Error("provider returned no key set");
        resolver = createLocalJWKSet(jwks);
        fetchedAt = Date.now();
      } catch (cause) {
        throw new JwksUnavailableError("cannot load the JWK Set", { cause });
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  };

  const getKey = (async (header, token) => {
    const now = Date.now();
    if (!resolver) {
      if (now - attemptedAt < options.cooldownMs && !inflight) {
        throw new JwksUnavailableError("JWK Set not loaded (cooling down after a failure)");
      }
      await refresh();
    } else if (now - fetchedAt > options.cacheMaxAgeMs && now - attemptedAt >= options.cooldownMs) {
      await refresh().catch(() => {});
    }
    try {
      return await resolver!(header, token);
    } catch (error) {
      if (
        error instanceof errors.JWKSNoMatchingKey &&
        Date.now() - attemptedAt >= options.cooldownMs
      ) {
        await refresh();
        return resolver!(header, token);
      }
      throw error;
    }
  }) as JWTVerifyGetKey & { refresh(): Promise<void> };
  getKey.refresh = refresh;
  return getKey;
}
