import { randomBytes, randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, type JSONWebKeySet, SignJWT } from "jose";
import { DEFAULT_AUDIENCE, DEFAULT_ISSUER } from "../../../platform/auth/auth-config.js";
import { ACCESS_TOKEN_TYPE } from "../../../platform/auth/token-verifier.js";

/**
 * Stands in for identity in tests: an EdDSA key whose JWK Set is served over
 * HTTP (every service verifies through AUTH_JWKS_URL exactly as in a
 * deployment without identity's RPC) and a shared service-token secret.
 */
export interface TestAuth {
  jwksUrl: string;
  serviceTokenSecret: string;
  /** Environment every service of the test mesh needs to verify tokens. */
  env: Record<string, string>;
  userToken(userId?: string, roles?: string[]): Promise<string>;
  adminToken(): Promise<string>;
  close(): Promise<void>;
}

export async function startTestAuth(): Promise<TestAuth> {
  const { publicKey, privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const kid = randomBytes(6).toString("hex");
  const jwks: JSONWebKeySet = {
    keys: [{ ...(await exportJWK(publicKey)), kid, alg: "EdDSA", use: "sig" }],
  };
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(jwks));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const jwksUrl = `http://127.0.0.1:${port}/jwks`;
  const serviceTokenSecret = randomBytes(32).toString("hex");
  const adminId = randomUUID();
  const cache = new Map<string, string>();
  const sign = async (userId: string, roles: string[]) => {
    const key = `${userId}|${roles.join(",")}`;
    let token = cache.get(key);
    if (!token) {
      token = await new SignJWT({ roles })
        .setProtectedHeader({ alg: "EdDSA", typ: ACCESS_TOKEN_TYPE, kid })
        .setIssuer(DEFAULT_ISSUER)
        .setAudience(DEFAULT_AUDIENCE)
        .setSubject(userId)
        .setIssuedAt()
        .setExpirationTime("2h")
        .setJti(randomUUID())
        .sign(privateKey);
      cache.set(key, token);
    }
    return token;
  };
  return {
    jwksUrl,
    serviceTokenSecret,
    env: { AUTH_JWKS_URL: jwksUrl, SERVICE_TOKEN_SECRET: serviceTokenSecret },
    userToken: (userId = randomUUID(), roles = ["customer"]) => sign(userId, roles),
    adminToken: () => sign(adminId, ["admin"]),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
