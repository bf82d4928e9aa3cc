import { OrderService } from "../../gen/commerce/orders/v1/order_service_pb.js";
import { WebhookService } from "../../gen/commerce/orders/v1/webhook_service_pb.js";
import { registerService } from "../../platform/server/rpc-server.js";
import { runService } from "../../platform/service/run-service.js";

// Handlers arrive with the orders issue; until then every RPC answers
// UNIMPLEMENTED while health, readiness, metrics and reflection work.
await runService({
  name: "orders",
  migrations: new URL("./migrations/", import.meta.url),
  needs: { postgres: true, redis: true, nats: true },
  build: () => ({
    services: [registerService(OrderService, {}), registerService(WebhookService, {})],
  }),
});
