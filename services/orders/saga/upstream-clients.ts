import type { DescService } from "@bufbuild/protobuf";
import type { CallOptions, Client } from "@connectrpc/connect";
import { CatalogService } from "../../../gen/commerce/catalog/v1/catalog_service_pb.js";
import { InventoryService } from "../../../gen/commerce/catalog/v1/inventory_service_pb.js";
import { PaymentService } from "../../../gen/commerce/payments/v1/payment_service_pb.js";
import { loadAuthConfig } from "../../../platform/auth/auth-config.js";
import {
  createServiceTokenSource,
  type ServiceTokenSource,
} from "../../../platform/auth/service-tokens.js";
import { createServiceClient, type Upstream } from "../../../platform/clients/service-client.js";
import type { Env } from "../../../platform/config/env.js";

/** The other services the checkout calls, each call carrying this service's mesh token. */
export interface UpstreamClients {
  catalog: Client<typeof CatalogService>;
  inventory: Client<typeof InventoryService>;
  payments: Client<typeof PaymentService>;
}

/**
 * Adds `authorization: Bearer <service token>` to every unary call. Saga
 * steps run outside any incoming call, and catalog/payments only accept
 * their internal RPCs from role "service".
 */
export function withServiceToken<S extends DescService>(
  client: Client<S>,
  tokens: ServiceTokenSource | undefined,
): Client<S> {
  if (!tokens) return client;
  const wrapped: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(client as Record<string, unknown>)) {
    if (typeof method !== "function") continue;
    wrapped[name] = async (request: unknown, options: CallOptions = {}) => {
      const headers = new Headers(options.headers);
      if (!headers.has("authorization"))
        headers.set("authorization", `Bearer ${await tokens.token()}`);
      return (method as (r: unknown, o: CallOptions) => unknown)(request, { ...options, headers });
    };
  }
  return wrapped as Client<S>;
}

export function createUpstreamClients(
  upstream: (name: "catalog" | "payments") => Upstream,
  env: Env,
  serviceTokenSecret: string | undefined,
): UpstreamClients {
  const auth = loadAuthConfig({ ...env, SERVICE_TOKEN_SECRET: serviceTokenSecret });
  const tokens = auth.serviceTokenSecret
    ? createServiceTokenSource({
        service: "orders",
        secret: auth.serviceTokenSecret,
        issuer: auth.serviceIssuer,
        audience: auth.audience,
      })
    : undefined;
  return {
    catalog: withServiceToken(createServiceClient(CatalogService, upstream("catalog")), tokens),
    inventory: withServiceToken(createServiceClient(InventoryService, upstream("catalog")), tokens),
    payments: withServiceToken(createServiceClient(PaymentService, upstream("payments")), tokens),
  };
}
