import { ProbeService } from "../../gen/platform/testing/v1/probe_pb.js";
import { registerService } from "../server/rpc-server.js";
import { runService } from "../service/run-service.js";
import { createProbeService } from "./probe-service.js";

// A real service process hosting only the probe service: lets tests exercise
// start-up, configuration errors and signal handling end to end.
await runService({
  name: "probe",
  needs: { postgres: process.env.PROBE_NEEDS_POSTGRES === "1" },
  build: () => ({ services: [registerService(ProbeService, createProbeService())] }),
});
