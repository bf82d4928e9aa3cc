import { IdentityService } from "../../gen/commerce/identity/v1/identity_service_pb.js";
import { registerService } from "../../platform/server/rpc-server.js";
import { runService } from "../../platform/service/run-service.js";

// Handlers arrive with the identity issue; until then every RPC answers
// UNIMPLEMENTED while health, readiness, metrics and reflection work.
await runService({
  name: "identity",
  migrations: new URL("./migrations/", import.meta.url),
  needs: { postgres: true, redis: true, nats: true },
  build: () => ({ services: [registerService(IdentityService, {})] }),
});
