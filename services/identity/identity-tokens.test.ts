import { createPrivateKey, type JsonWebKey } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { base64url, decodeProtectedHeader, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DEFAULT_AUDIENCE,
  DEFAULT_ISSUER,
  DEFAULT_SERVICE_ISSUER,
} from "../../platform/auth/auth-config.js";
import { createServiceTokenSource } from "../../platform/auth/service-tokens.js";
import { createTokenVerifier } from "../../platform/auth/token-verifier.js";
import { generateSigningJwk } from "./crypto/signing-keys.js";
import {
  bearer,
  createAdmin,
  createCustomer,
  errorReason,
  rpcError,
  startIdentity,
  type TestIdentity,
} from "./testing/identity-harness.js";

const SERVICE_SECRET = "a-test-only-service-token-secret-of-enough-length";
const current = { ...generateSigningJwk(), kid: "key-2" } as JsonWebKey & { kid: string };
const previous = { ...generateSigningJwk(), kid: "key-1" } as JsonWebKey & { kid: string };
const stranger = { ...generateSigningJwk(), kid: "key-x" } as JsonWebKey & { kid: string };
let t: TestIdentity;

beforeAll(async () => {
  const { mkdtempSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "identity-keys-"));
  const file = join(dir, "signing-keys.json");
  writeFileSync(file, JSON.stringify({ keys: [current, previous] }), { mode: 0o600 });
  t = await startIdentity({
    IDENTITY_SIGNING_KEYS_FILE: file,
    SERVICE_TOKEN_SECRET: SERVICE_SECRET,
  });
});
afterAll(async () => {
  await t?.stop();
});

interface Claims {
  sub: string;
  roles?: unknown;
  iss?: string;
  aud?: string;
  expInSec?: number;
  typ?: string;
}

function mint(jwk: JsonWebKey & { kid: string }, claims: Claims, kid = jwk.kid): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ roles: claims.roles ?? ["customer"] })
    .setProtectedHeader({ alg: "EdDSA", kid, typ: claims.typ ?? "at+jwt" })
    .setIssuer(claims.iss ?? DEFAULT_ISSUER)
    .setAudience(claims.aud ?? DEFAULT_AUDIENCE)
    .setSubject(claims.sub)
    .setIssuedAt(now - 5)
    .setExpirationTime(now + (claims.expInSec ?? 600))
    .sign(createPrivateKey({ key: jwk, format: "jwk" }));
}

function encodeJson(value: object): string {
  return base64url.encode(JSON.stringify(value));
}

describe("identity access tokens", () => {
  it("refuses tampered, unsigned, expired, foreign and malformed tokens with UNAUTHENTICATED", async () => {
    const customer = await createCustomer(t);
    const [header, payload, signature] = customer.accessToken.split(".") as [
      string,
      string,
      string,
    ];
    const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload)));
    const now = Math.floor(Date.now() / 1000);

    const attacks: Record<string, string> = {
      "tampered roles": `${header}.${encodeJson({ ...claims, roles: ["admin"] })}.${signature}`,
      "tampered signature": `${header}.${payload}.${signature.slice(0, -4)}AAAA`,
      "alg none": `${encodeJson({ alg: "none", typ: "at+jwt" })}.${payload}.`,
      "alg none with junk signature": `${encodeJson({ alg: "none", typ: "at+jwt" })}.${payload}.x`,
      expired: await mint(current, { sub: customer.id, expInSec: -120 }),
      "wrong audience": await mint(current, { sub: customer.id, aud: "another-system" }),
      "wrong issuer": await mint(current, { sub: customer.id, iss: "https://evil.example" }),
      "wrong type": await mint(current, { sub: customer.id, typ: "JWT" }),
      "unknown kid": await mint(stranger, { sub: customer.id }),
      "known kid, foreign key": await mint(stranger, { sub: customer.id }, current.kid),
      // Algorithm confusion: HS256 "signed" with the public key as HMAC secret.
      "HS256 with the public key": await new SignJWT({ roles: ["admin"] })
        .setProtectedHeader({ alg: "HS256", kid: current.kid, typ: "at+jwt" })
        .setIssuer(DEFAULT_ISSUER)
        .setAudience(DEFAULT_AUDIENCE)
        .setSubject(customer.id)
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(base64url.decode(current.x!)),
      "service token with a wrong secret": await new SignJWT({ roles: ["service"] })
        .setProtectedHeader({ alg: "HS256", typ: "at+jwt" })
        .setIssuer(DEFAULT_SERVICE_ISSUER)
        .setAudience(DEFAULT_AUDIENCE)
        .setSubject("service:orders")
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(new TextEncoder().encode("x".repeat(48))),
      garbage: "not-a-token",
      "two segments": `${header}.${payload}`,
      oversized: `${header}.${"A".repeat(9000)}.${signature}`,
    };
    for (const [name, token] of Object.entries(attacks)) {
      const error = await rpcError(t.client.getMe({}, bearer(token)));
      expect(error.code, name).toBe(Code.Unauthenticated);
    }
    const expired = await rpcError(t.client.getMe({}, bearer(attacks.expired!)));
    expect(errorReason(expired)).toBe("TOKEN_EXPIRED");

    for (const header of [
      "Basic dXNlcjpwYXNz",
      "Bearer",
      "Bearer  ",
      "bearer a b",
      customer.accessToken,
    ]) {
      const error = await rpcError(t.client.getMe({}, { headers: { authorization: header } }));
      expect(error.code, header).toBe(Code.Unauthenticated);
    }
    expect((await rpcError(t.client.getMe({}))).code).toBe(Code.Unauthenticated);
    // Lower-case scheme is fine (RFC 7235: case-insensitive).
    const me = await t.client.getMe(
      {},
      { headers: { authorization: `bearer ${customer.accessToken}` } },
    );
    expect(me.user!.id).toBe(customer.id);
  });

  it("enforces role policies from the contract", async () => {
    const customer = await createCustomer(t);
    expect((await rpcError(t.client.listUsers({}))).code).toBe(Code.Unauthenticated);
    const denied = await rpcError(t.client.listUsers({}, bearer(customer.accessToken)));
    expect(denied.code).toBe(Code.PermissionDenied);
    const erase = await rpcError(
      t.client.eraseUser({ id: customer.id }, bearer(customer.accessToken)),
    );
    expect(erase.code).toBe(Code.PermissionDenied);
    // A token whose roles claim says admin but that identity did not sign is refused above;
    // one that identity signed for a customer carries only "customer".
    const admin = await createAdmin(t);
    const page = await t.client.listUsers({ pageSize: 1 }, bearer(admin.accessToken));
    expect(page.users).toHaveLength(1);
  });

  it("serves current and previous keys, signs with the current one, and accepts unexpired tokens of the previous one", async () => {
    const jwks = await t.client.getJwks({});
    expect(jwks.keys.map((k) => k.kid)).toEqual([current.kid, previous.kid]);
    for (const key of jwks.keys) {
      expect(key).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" });
      expect(key).not.toHaveProperty("d");
    }
    const customer = await createCustomer(t);
    expect(decodeProtectedHeader(customer.accessToken)).toMatchObject({
      alg: "EdDSA",
      kid: current.kid,
      typ: "at+jwt",
    });
    const oldKeyToken = await mint(previous, { sub: customer.id });
    expect((await t.client.getMe({}, bearer(oldKeyToken))).user!.id).toBe(customer.id);
  });

  it("lets other services verify tokens from the JWKS the service publishes over plain HTTP", async () => {
    const url = `${t.url}/commerce.identity.v1.IdentityService/GetJwks?connect=v1&encoding=json&message=%7B%7D`;
    const response = await fetch(url);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { keys: { kid: string }[] };
    expect(body.keys.map((k) => k.kid)).toEqual([current.kid, previous.kid]);

    const verifier = createTokenVerifier({
      jwksUrl: url,
      issuer: DEFAULT_ISSUER,
      audience: DEFAULT_AUDIENCE,
    });
    const customer = await createCustomer(t);
    const caller = await verifier.verify(customer.accessToken);
    expect(caller).toMatchObject({ kind: "user", subject: customer.id, roles: ["customer"] });
    await expect(verifier.verify(await mint(stranger, { sub: customer.id }))).rejects.toMatchObject(
      {
        name: "UnauthenticatedError",
      },
    );
  });

  it("accepts mesh service tokens with role service only", async () => {
    const customer = await createCustomer(t);
    const source = createServiceTokenSource({
      service: "orders",
      secret: new TextEncoder().encode(SERVICE_SECRET),
      issuer: DEFAULT_SERVICE_ISSUER,
      audience: DEFAULT_AUDIENCE,
    });
    const token = await source.token();
    const user = await t.client.getUser({ id: customer.id }, bearer(token));
    expect(user.user!.id).toBe(customer.id);
    expect((await rpcError(t.client.listUsers({}, bearer(token)))).code).toBe(
      Code.PermissionDenied,
    );
    expect((await rpcError(t.client.getMe({}, bearer(token)))).code).toBe(Code.NotFound);
    expect((await rpcError(t.client.deleteUser({ id: customer.id }, bearer(token)))).code).toBe(
      Code.NotFound,
    );
  });
});
