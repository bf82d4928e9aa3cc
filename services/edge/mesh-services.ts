import type { DescService } from "@bufbuild/protobuf";
import { CatalogService } from "../../gen/commerce/catalog/v1/catalog_service_pb.js";
import { InventoryService } from "../../gen/commerce/catalog/v1/inventory_service_pb.js";
import { IdentityService } from "../../gen/commerce/identity/v1/identity_service_pb.js";
import { OrderService } from "../../gen/commerce/orders/v1/order_service_pb.js";
import { WebhookService } from "../../gen/commerce/orders/v1/webhook_service_pb.js";
import { PaymentService } from "../../gen/commerce/payments/v1/payment_service_pb.js";
import { SERVICE_PORTS, type ServiceName } from "../../platform/config/service-config.js";

/** Every public contract the edge exposes; routes and OpenAPI come from these. */
export const MESH_SERVICES: readonly DescService[] = [
  IdentityService,
  CatalogService,
  InventoryService,
  OrderService,
  WebhookService,
  PaymentService,
];

/**
 * The mesh service that owns a contract, from its package
 * ("commerce.<owner>.v1"), so a new service needs no edge change.
 */
export function ownerOf(service: DescService): ServiceName {
  const owner = service.typeName.split(".")[1];
  if (owner === undefined || !(owner in SERVICE_PORTS) || owner === "edge") {
    throw new Error(`no mesh service owns ${service.typeName}`);
  }
  return owner as ServiceName;
}
