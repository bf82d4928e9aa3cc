import { runService } from "../../platform/service/run-service.js";

// The public door. REST transcoding, Connect/gRPC pass-through, auth and rate
// limits arrive with the edge issue; today it serves health, readiness,
// metrics and reflection on port 8080 so the mesh can be started and probed.
await runService({
  name: "edge",
  needs: { redis: true },
  build: () => ({ services: [] }),
});
