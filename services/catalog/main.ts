import { CatalogService } from "../../gen/commerce/catalog/v1/catalog_service_pb.js";
import { InventoryService } from "../../gen/commerce/catalog/v1/inventory_service_pb.js";
import { registerService } from "../../platform/server/rpc-server.js";
import { runService } from "../../platform/service/run-service.js";

// Handlers arrive with the catalog issue; until then every RPC answers
// UNIMPLEMENTED while health, readiness, metrics and reflection work.
await runService({
  name: "catalog",
  migrations: new URL("./migrations/", import.meta.url),
  needs: { postgres: true, redis: true, nats: true },
  build: () => ({
    services: [registerService(CatalogService, {}), registerService(InventoryService, {})],
  }),
});
