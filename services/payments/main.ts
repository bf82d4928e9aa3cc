import { PaymentService } from "../../gen/commerce/payments/v1/payment_service_pb.js";
import { registerService } from "../../platform/server/rpc-server.js";
import { runService } from "../../platform/service/run-service.js";

// Handlers arrive with the payments issue; until then every RPC answers
// UNIMPLEMENTED while health, readiness, metrics and reflection work.
await runService({
  name: "payments",
  migrations: new URL("./migrations/", import.meta.url),
  needs: { postgres: true, nats: true },
  build: () => ({ services: [registerService(PaymentService, {})] }),
});
