import type { Client } from "@connectrpc/connect";
import { ProbeService } from "../../gen/platform/testing/v1/probe_pb.js";
import { ReadinessMonitor } from "../health/readiness.js";
import { createLogger } from "../log/logger.js";
import { createRpcServer, registerService, type ServerLimits } from "../server/rpc-server.js";
import { createMetrics } from "../telemetry/metrics.js";
import { createProbeService } from "./probe-service.js";

/** An in-process platform server hosting the probe service, on a free port. */
export async function startProbeServer(
  options: {
    limits?: Partial<ServerLimits>;
    downstream?: () => Client<typeof ProbeService>;
    grpcFastPath?: boolean;
    connectFastPath?: boolean;
    logLevel?: string;
    logDestination?: NodeJS.WritableStream;
  } = {},
) {
  const logger = createLogger({
    service: "probe",
    level: options.logLevel ?? "silent",
    ...(options.logDestination ? { destination: options.logDestination } : {}),
  });
  const metrics = createMetrics("probe", { defaults: false });
  const readiness = new ReadinessMonitor([]);
  const server = createRpcServer({
    name: "probe",
    host: "127.0.0.1",
    port: 0,
    services: [registerService(ProbeService, createProbeService(options.downstream))],
    logger,
    metrics,
    readiness,
    ...(options.limits ? { limits: options.limits } : {}),
    ...(options.grpcFastPath === undefined ? {} : { grpcFastPath: options.grpcFastPath }),
    ...(options.connectFastPath === undefined ? {} : { connectFastPath: options.connectFastPath }),
  });
  const port = await server.listen();
  await readiness.start();
  return { server, port, url: `http://127.0.0.1:${port}`, readiness, metrics };
}
