import type { Interceptor } from "@connectrpc/connect";
import { SignJWT } from "jose";
import { v7 as uuidv7 } from "uuid";
import { ACCESS_TOKEN_TYPE } from "./token-verifier.js";

/**
 * Mesh-internal calls (a saga step in orders calling catalog, say) carry a
 * service token: a short-lived HS256 JWT that each service signs itself with
 * the shared SERVICE_TOKEN_SECRET. Verifiers accept it only with that secret
 * and only with role "service" (whatever it claims), so the secret lets a
 * workload prove "I am inside the mesh" and nothing more. No call to identity
 * is needed, which keeps identity off the critical path of every saga.
 * Trade-off: any holder of the secret can mint service tokens — it is a mesh
 * credential, distributed like a database password, and rotated by rolling a
 * new value out to all services.
 */
export interface ServiceTokenSource {
  token(): Promise<string>;
}

export interface ServiceTokenOptions {
  /** This service's name; the token's `sub` is "service:<name>". */
  service: string;
  secret: Uint8Array;
  issuer: string;
  audience: string;
  /** Token lifetime (default 5 min). */
  ttlSec?: number;
}

export function createServiceTokenSource(options: ServiceTokenOptions): ServiceTokenSource {
  const ttlSec = options.ttlSec ?? 300;
  let cached: { token: string; renewAt: number } | undefined;
  return {
    async token() {
      const now = Date.now();
      if (cached && now < cached.renewAt) return cached.token;
      const iat = Math.floor(now / 1000);
      const token = await new SignJWT({ roles: ["service"] })
        .setProtectedHeader({ alg: "HS256", typ: ACCESS_TOKEN_TYPE })
        .setIssuer(options.issuer)
        .setAudience(options.audience)
        .setSubject(`service:${options.service}`)
        .setIssuedAt(iat)
        .setExpirationTime(iat + ttlSec)
        .setJti(uuidv7())
        .sign(options.secret);
      // Renew at two thirds of the lifetime so a token never expires in flight.
      cached = { token, renewAt: now + (ttlSec * 1000 * 2) / 3 };
      return token;
    },
  };
}

/** Client interceptor: adds the service token unless the call already has credentials. */
export function createServiceTokenInterceptor(source: ServiceTokenSource): Interceptor {
  return (next) => async (req) => {
    if (!req.header.has("authorization")) {
      req.header.set("authorization", `Bearer ${await source.token()}`);
    }
    return next(req);
  };
}
