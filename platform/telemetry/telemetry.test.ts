import { PassThrough } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProbeService } from "../../gen/platform/testing/v1/probe_pb.js";
import { createServiceClient, createUpstream } from "../clients/service-client.js";
import { createGrpcJsClient, grpcUnary } from "../testing/grpc-js-client.js";
import { startProbeServer } from "../testing/probe-server.js";
import { setupTracing, type Tracing } from "./tracing.js";

describe("telemetry across a hop", () => {
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;
  beforeAll(() => {
    tracing = setupTracing({ service: "telemetry-test", exporter });
  });
  afterAll(async () => {
    await tracing.shutdown();
  });

  it("continues one trace from the caller through the server to the next hop, and logs it", async () => {
    const lines: string[] = [];
    const logs = new PassThrough();
    logs.on("data", (chunk) => lines.push(...String(chunk).trim().split("\n")));
    const downstream = await startProbeServer({ logLevel: "info", logDestination: logs });
    const client = createServiceClient(
      ProbeService,
      createUpstream({ name: "probe", baseUrl: downstream.url }),
    );
    const front = await startProbeServer({
      downstream: () => client,
      logLevel: "info",
      logDestination: logs,
    });
    const grpcJs = createGrpcJsClient(`127.0.0.1:${front.port}`);
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const metadata = new grpc.Metadata();
    metadata.set("traceparent", `00-${traceId}-00f067aa0ba902b7-01`);
    metadata.set("x-request-id", "req-123");
    try {
      await grpcUnary(
        grpcJs,
        ProbeService.method.relay,
        { echo: { text: "trace me" } },
        { metadata },
      );
      await new Promise((r) => setTimeout(r, 50));
      await tracing.flush();
      const spans = exporter.getFinishedSpans();
      const relay = spans.find((s) => s.name === "platform.testing.v1.ProbeService/Relay");
      const echo = spans.find((s) => s.name === "platform.testing.v1.ProbeService/Echo");
      expect(relay?.spanContext().traceId).toBe(traceId);
      expect(echo?.spanContext().traceId).toBe(traceId);
      expect(echo?.parentSpanContext?.spanId).toBe(relay?.spanContext().spanId);
      expect(relay?.attributes["rpc.system"]).toBe("grpc");

      const rpcLines = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === "rpc");
      const relayLine = rpcLines.find((l) => l.rpc === "/platform.testing.v1.ProbeService/Relay");
      const echoLine = rpcLines.find((l) => l.rpc === "/platform.testing.v1.ProbeService/Echo");
      expect(relayLine).toMatchObject({ code: "OK", traceId, requestId: "req-123" });
      expect(typeof relayLine.durationMs).toBe("number");
      // The request id travels with the call to the next hop.
      expect(echoLine).toMatchObject({ traceId, requestId: "req-123" });
    } finally {
      grpcJs.close();
      await front.server.close();
      await downstream.server.close();
    }
  });
});
