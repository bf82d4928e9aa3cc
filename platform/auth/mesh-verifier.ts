import type { JSONWebKeySet } from "jose";
import { IdentityService } from "../../gen/commerce/identity/v1/identity_service_pb.js";
import { createServiceClient, type Upstream } from "../clients/service-client.js";
import type { AuthConfig } from "./auth-config.js";
import { createTokenVerifier, type JwksProvider, type TokenVerifier } from "./token-verifier.js";

/** Loads identity's public keys through its GetJwks RPC (deadline, retries, breaker). */
export function createIdentityJwksProvider(identity: Upstream): JwksProvider {
  const client = createServiceClient(IdentityService, identity);
  return async () => {
    const response = await client.getJwks({});
    return {
      keys: response.keys.map((k) => ({
        kty: k.kty,
        crv: k.crv,
        x: k.x,
        kid: k.kid,
        alg: k.alg,
        use: k.use,
      })),
    } satisfies JSONWebKeySet;
  };
}

/**
 * The verifier every service except identity uses: identity's keys fetched
 * lazily (the first token triggers the first fetch, so a service starts
 * without identity), plus service tokens when SERVICE_TOKEN_SECRET is set.
 */
export function createMeshTokenVerifier(
  config: AuthConfig,
  identity: () => Upstream,
): TokenVerifier {
  let provider: JwksProvider | undefined;
  const jwksProvider: JwksProvider = () => {
    provider ??= createIdentityJwksProvider(identity());
    return provider();
  };
  return createTokenVerifier({
    issuer: config.issuer,
    audience: config.audience,
    clockToleranceSec: config.clockToleranceSec,
    ...(config.jwksUrl ? { jwksUrl: config.jwksUrl } : { jwksProvider }),
    ...(config.serviceTokenSecret
      ? { serviceTokens: { issuer: config.serviceIssuer, secret: config.serviceTokenSecret } }
      : {}),
  });
}
