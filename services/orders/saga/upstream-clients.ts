import type { Client } from "@connectrpc/connect";
import { CatalogService } from "../../../gen/commerce/catalog/v1/catalog_service_pb.js";
import { InventoryService } from "../../../gen/commerce/catalog/v1/inventory_service_pb.js";
import { PaymentService } from "../../../gen/commerce/payments/v1/payment_service_pb.js";
import { createServiceClient, type Upstream } from "../../../platform/clients/service-client.js";

/**
 * The other services the checkout calls. Saga steps run outside any incoming
 * call and catalog/payments accept their internal RPCs only from role
 * "service": the platform's upstreams carry this service's mesh token.
 */
export interface UpstreamClients {
  catalog: Client<typeof CatalogService>;
  inventory: Client<typeof InventoryService>;
  payments: Client<typeof PaymentService>;
}

export function createUpstreamClients(
  upstream: (name: "catalog" | "payments") => Upstream,
): UpstreamClients {
  return {
    catalog: createServiceClient(CatalogService, upstream("catalog")),
    inventory: createServiceClient(InventoryService, upstream("catalog")),
    payments: createServiceClient(PaymentService, upstream("payments")),
  };
}
