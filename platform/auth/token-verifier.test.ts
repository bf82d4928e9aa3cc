import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { exportJWK, type JSONWebKeySet, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { createServiceTokenInterceptor, createServiceTokenSource } from "./service-tokens.js";
import { createTokenVerifier } from "./token-verifier.js";

const ISSUER = "test-issuer";
const AUDIENCE = "test-audience";

async function keyPair(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    kid,
    privateKey,
    jwk: { ...(await exportJWK(publicKey)), kid, alg: "EdDSA", use: "sig" },
  };
}

function sign(
  key: { kid: string; privateKey: KeyObject },
  claims: { sub?: string; roles?: unknown; expOffsetSec?: number; nbfOffsetSec?: number } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ roles: claims.roles ?? ["customer"] })
    .setProtectedHeader({ alg: "EdDSA", kid: key.kid, typ: "at+jwt" })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject(claims.sub ?? "0190f0f0-0000-7000-8000-000000000001")
    .setIssuedAt(now - 120)
    .setExpirationTime(now + (claims.expOffsetSec ?? 300));
  if (claims.nbfOffsetSec !== undefined) jwt.setNotBefore(now + claims.nbfOffsetSec);
  return jwt.sign(key.privateKey);
}

describe("token verifier", () => {
  it("verifies EdDSA tokens with bounded clock skew and a well-formed roles claim", async () => {
    const key = await keyPair("a");
    const verifier = createTokenVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      localJwks: () => ({ keys: [key.jwk] }),
    });
    expect(await verifier.verify(await sign(key, { roles: ["admin"] }))).toMatchObject({
      kind: "user",
      roles: ["admin"],
    });
    // 10 s past exp is within the 30 s tolerance; 40 s is not.
    await verifier.verify(await sign(key, { expOffsetSec: -10 }));
    await expect(verifier.verify(await sign(key, { expOffsetSec: -40 }))).rejects.toMatchObject({
      reason: "TOKEN_EXPIRED",
    });
    await expect(verifier.verify(await sign(key, { nbfOffsetSec: 60 }))).rejects.toMatchObject({
      name: "UnauthenticatedError",
    });
    for (const roles of ["admin", [1], ["x".repeat(65)], Array.from({ length: 40 }, () => "r")]) {
      await expect(verifier.verify(await sign(key, { roles }))).rejects.toMatchObject({
        name: "UnauthenticatedError",
      });
    }
    // Clock tolerance is capped at 60 s whatever is configured.
    const lax = createTokenVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      clockToleranceSec: 3600,
      localJwks: () => ({ keys: [key.jwk] }),
    });
    await expect(lax.verify(await sign(key, { expOffsetSec: -90 }))).rejects.toMatchObject({
      reason: "TOKEN_EXPIRED",
    });
  });

  it("remembers verified tokens only until they expire", async () => {
    const key = await keyPair("c");
    let reads = 0;
    const verifier = createTokenVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      clockToleranceSec: 0,
      localJwks: () => {
        reads++;
        return { keys: [key.jwk] };
      },
    });
    const token = await sign(key, { expOffsetSec: 2 });
    const first = await verifier.verify(token);
    expect(await verifier.verify(token)).toBe(first);
    expect(reads).toBe(1);
    expect(Object.isFrozen(first) && Object.isFrozen(first.roles)).toBe(true);
    await new Promise((r) => setTimeout(r, (first.expiresAt + 0.2) * 1000 - Date.now()));
    await expect(verifier.verify(token)).rejects.toMatchObject({ reason: "TOKEN_EXPIRED" });
  });

  it("refetches the key set on an unknown kid, at most once per cooldown", async () => {
    const first = await keyPair("first");
    const second = await keyPair("second");
    let published: JSONWebKeySet = { keys: [first.jwk] };
    let fetches = 0;
    const verifier = createTokenVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      jwksProvider: async () => {
        fetches++;
        return published;
      },
      refetchCooldownMs: 60_000,
    });
    await verifier.verify(await sign(first));
    await verifier.verify(await sign(first));
    expect(fetches).toBe(1);
    // Unknown kid right after the first fetch: inside the cooldown, no refetch.
    await expect(verifier.verify(await sign(second))).rejects.toMatchObject({
      name: "UnauthenticatedError",
    });
    expect(fetches).toBe(1);

    const eager = createTokenVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      jwksProvider: async () => {
        fetches++;
        return published;
      },
      refetchCooldownMs: 0,
    });
    fetches = 0;
    await eager.verify(await sign(first));
    published = { keys: [second.jwk, first.jwk] };
    // Rotation: the new kid triggers one refetch and then verifies.
    expect(await eager.verify(await sign(second))).toMatchObject({ kind: "user" });
    expect(fetches).toBe(2);
    await eager.verify(await sign(first));
    expect(fetches).toBe(2);
  });

  it("reports unreachable keys as UNAVAILABLE, not as a bad token", async () => {
    const key = await keyPair("k");
    const verifier = createTokenVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      jwksProvider: async () => {
        throw new Error("identity down");
      },
    });
    await expect(verifier.verify(await sign(key))).rejects.toMatchObject({
      name: "UnavailableError",
    });
  });

  it("accepts service tokens only with the shared secret, and only as role service", async () => {
    const secret = new TextEncoder().encode("s".repeat(40));
    const key = await keyPair("k");
    const withServices = createTokenVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      localJwks: () => ({ keys: [key.jwk] }),
      serviceTokens: { issuer: "svc", secret },
    });
    const source = createServiceTokenSource({
      service: "orders",
      secret,
      issuer: "svc",
      audience: AUDIENCE,
    });
    const token = await source.token();
    expect(await source.token()).toBe(token);
    expect(await withServices.verify(token)).toMatchObject({
      kind: "service",
      subject: "service:orders",
      roles: ["service"],
    });
    const now = Math.floor(Date.now() / 1000);
    const greedy = await new SignJWT({ roles: ["admin"] })
      .setProtectedHeader({ alg: "HS256", typ: "at+jwt" })
      .setIssuer("svc")
      .setAudience(AUDIENCE)
      .setSubject("service:orders")
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .sign(secret);
    expect((await withServices.verify(greedy)).roles).toEqual(["service"]);

    const withoutServices = createTokenVerifier({
      issuer: ISSUER,
      audience: AUDIENCE,
      localJwks: () => ({ keys: [key.jwk] }),
    });
    await expect(withoutServices.verify(token)).rejects.toMatchObject({
      name: "UnauthenticatedError",
    });

    // The client interceptor adds the token unless credentials are present.
    const interceptor = createServiceTokenInterceptor(source);
    const headers: (string | null)[] = [];
    const next = async (req: { header: Headers }) => {
      headers.push(req.header.get("authorization"));
      return {} as never;
    };
    await interceptor(next as never)({ header: new Headers() } as never);
    await interceptor(next as never)({
      header: new Headers({ authorization: "Bearer user" }),
    } as never);
    expect(headers).toEqual([`Bearer ${token}`, "Bearer user"]);
  });
});
