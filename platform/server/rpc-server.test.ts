import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "../../gen/health/v1/health_pb.js";
import { ProbeService } from "../../gen/platform/testing/v1/probe_pb.js";
import { createServiceClient, createUpstream } from "../clients/service-client.js";
import {
  createGrpcJsClient,
  grpcBidi,
  grpcServerStream,
  grpcUnary,
} from "../testing/grpc-js-client.js";
import { startProbeServer } from "../testing/probe-server.js";

const run = promisify(execFile);

/** Resolves with the ConnectError a call must fail with. */
function failure(call: Promise<unknown>): Promise<ConnectError> {
  return call.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (error) => ConnectError.from(error),
  );
}

describe("platform RPC server (one port: HTTP/1.1 + h2c)", () => {
  let probe: Awaited<ReturnType<typeof startProbeServer>>;
  let grpcJs: grpc.Client;

  beforeAll(async () => {
    probe = await startProbeServer({ limits: { maxMessageBytes: 64 * 1024, maxDeadlineMs: 2000 } });
    grpcJs = createGrpcJsClient(`127.0.0.1:${probe.port}`);
  });
  afterAll(async () => {
    grpcJs.close();
    await probe.server.close();
  });

  it("answers grpc.health.v1.Health/Check SERVING to a stock grpc-js client", async () => {
    const { response } = await grpcUnary(grpcJs, Health.method.check, { service: "" });
    expect(response.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const named = await grpcUnary(grpcJs, Health.method.check, { service: ProbeService.typeName });
    expect(named.response.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    await expect(
      grpcUnary(grpcJs, Health.method.check, { service: "no.such.Service" }),
    ).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
  });

  it("answers Health/Check over Connect on HTTP/1.1 and HTTP/2, and over gRPC-Web", async () => {
    for (const transport of [
      createConnectTransport({ baseUrl: probe.url, httpVersion: "1.1" }),
      createConnectTransport({ baseUrl: probe.url, httpVersion: "2" }),
      createGrpcWebTransport({ baseUrl: probe.url, httpVersion: "1.1" }),
      createGrpcTransport({ baseUrl: probe.url }),
    ]) {
      const res = await createClient(Health, transport).check({});
      expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
  });

  it("answers buf curl using the built image as schema", async () => {
    const dir = mkdtempSync(join(tmpdir(), "buf-image-"));
    const image = join(dir, "image.binpb");
    await run("npx", ["buf", "build", "-o", image]);
    const { stdout } = await run("npx", [
      "buf",
      "curl",
      "--schema",
      image,
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      `${probe.url}/grpc.health.v1.Health/Check`,
    ]);
    expect(JSON.parse(stdout)).toEqual({ status: "SERVING" });
  });

  it("lists services through gRPC server reflection", async () => {
    const [answer] = await grpcBidi(grpcJs, ServerReflection.method.serverReflectionInfo, [
      { messageRequest: { case: "listServices", value: "" } },
    ]);
    expect(answer?.messageResponse.case).toBe("listServicesResponse");
    const names =
      answer?.messageResponse.case === "listServicesResponse"
        ? answer.messageResponse.value.service.map((s) => s.name)
        : [];
    expect(names).toEqual(
      expect.arrayContaining([
        "platform.testing.v1.ProbeService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
      ]),
    );
    const [file] = await grpcBidi(grpcJs, ServerReflection.method.serverReflectionInfo, [
      {
        messageRequest: { case: "fileContainingSymbol", value: "platform.testing.v1.ProbeService" },
      },
    ]);
    expect(file?.messageResponse.case).toBe("fileDescriptorResponse");
  });

  it("serves /healthz, /readyz and /metrics over HTTP/1.1", async () => {
    expect((await fetch(`${probe.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${probe.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true });
    await createClient(
      ProbeService,
      createConnectTransport({ baseUrl: probe.url, httpVersion: "1.1" }),
    ).echo({
      text: "count me",
    });
    const metrics = await (await fetch(`${probe.url}/metrics`)).text();
    expect(metrics).toMatch(/rpc_server_requests_total\{[^}]*rpc_method="Echo"[^}]*\} \d+/);
  });

  it("maps domain errors to codes with google.rpc details, on gRPC and Connect", async () => {
    const connect = createClient(
      ProbeService,
      createConnectTransport({ baseUrl: probe.url, httpVersion: "1.1" }),
    );
    const invalid = await failure(connect.fail({ kind: "invalid_argument" }));
    expect(invalid.code).toBe(Code.InvalidArgument);
    expect(invalid.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe(
      "items[0].quantity",
    );
    expect(invalid.findDetails(ErrorInfoSchema)[0]?.reason).toBe("INVALID_ARGUMENT");

    const cases: [string, grpc.status][] = [
      ["not_found", grpc.status.NOT_FOUND],
      ["conflict", grpc.status.ABORTED],
      ["exhausted", grpc.status.RESOURCE_EXHAUSTED],
      ["invalid_argument", grpc.status.INVALID_ARGUMENT],
    ];
    for (const [kind, code] of cases) {
      const error = await grpcUnary(grpcJs, ProbeService.method.fail, { kind }).catch((e) => e);
      expect(error.code).toBe(code);
      const details = error.metadata.get("grpc-status-details-bin")[0] as Buffer;
      const status = fromBinary(StatusSchema, details);
      expect(status.code).toBe(code);
      expect(status.details.length).toBeGreaterThan(0);
      if (kind === "exhausted") {
        const retry = status.details.find((d) => d.typeUrl.endsWith(RetryInfoSchema.typeName));
        expect(retry).toBeDefined();
        expect(fromBinary(RetryInfoSchema, retry!.value).retryDelay?.seconds).toBe(1n);
      }
    }
  });

  it("turns an unexpected throw into INTERNAL without leaking its message or stack", async () => {
    const error = await grpcUnary(grpcJs, ProbeService.method.fail, { kind: "boom" }).catch(
      (e) => e,
    );
    expect(error.code).toBe(grpc.status.INTERNAL);
    expect(error.details).not.toMatch(/hunter2|app\.ts|at /);
    const connect = createClient(
      ProbeService,
      createConnectTransport({ baseUrl: probe.url, httpVersion: "1.1" }),
    );
    const viaConnect = await failure(connect.fail({ kind: "boom" }));
    expect(viaConnect.code).toBe(Code.Internal);
    expect(viaConnect.rawMessage).toBe("internal error");
  });

  it("refuses oversized messages with RESOURCE_EXHAUSTED and keeps serving", async () => {
    const big = new Uint8Array(70 * 1024);
    const error = await grpcUnary(grpcJs, ProbeService.method.echo, { payload: big }).catch(
      (e) => e,
    );
    expect(error.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const connect = createClient(
      ProbeService,
      createConnectTransport({ baseUrl: probe.url, httpVersion: "1.1" }),
    );
    const viaConnect = await failure(connect.echo({ payload: big }));
    expect(viaConnect.code).toBe(Code.ResourceExhausted);
    const ok = await grpcUnary(grpcJs, ProbeService.method.echo, { text: "still alive" });
    expect(ok.response.text).toBe("still alive");
  });

  it("caps an over-long requested deadline and gives deadline-less calls the default", async () => {
    const { response } = await grpcUnary(
      grpcJs,
      ProbeService.method.echo,
      { text: "x" },
      { deadlineMs: 3_600_000 },
    );
    expect(Number(response.deadlineRemainingMs)).toBeGreaterThan(0);
    expect(Number(response.deadlineRemainingMs)).toBeLessThanOrEqual(2000);
    const connect = createClient(
      ProbeService,
      createConnectTransport({ baseUrl: probe.url, httpVersion: "1.1" }),
    );
    const capped = await connect.echo({ text: "y" }, { timeoutMs: 3_600_000 });
    expect(Number(capped.deadlineRemainingMs)).toBeLessThanOrEqual(2000);
    const none = await grpcUnary(grpcJs, ProbeService.method.echo, { text: "z" });
    expect(Number(none.response.deadlineRemainingMs)).toBeGreaterThan(0);
  });

  it("answers unknown methods with UNIMPLEMENTED", async () => {
    const error = await new Promise<grpc.ServiceError>((resolve) => {
      grpcJs.makeUnaryRequest(
        "/platform.testing.v1.ProbeService/NoSuchMethod",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        (e) => resolve(e!),
      );
    });
    expect(error.code).toBe(grpc.status.UNIMPLEMENTED);
  });

  it("answers malformed gRPC frames with an error status and keeps serving", async () => {
    const session = http2.connect(probe.url);
    const send = (body: Buffer) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const req = session.request({
          ":method": "POST",
          ":path": "/platform.testing.v1.ProbeService/Echo",
          "content-type": "application/grpc",
          te: "trailers",
        });
        let headers: Record<string, unknown> = {};
        req.on("response", (h) => {
          headers = { ...h };
        });
        req.on("trailers", (t) => {
          headers = { ...headers, ...t };
        });
        req.on("data", () => {});
        req.on("end", () => resolve(headers));
        req.on("error", reject);
        req.end(body);
      });
    const truncated = await send(Buffer.from([0, 0, 0, 0, 50, 1, 2]));
    expect(truncated["grpc-status"]).toBe(String(grpc.status.INVALID_ARGUMENT));
    const garbage = await send(Buffer.from([0, 0, 0, 0, 3, 0xff, 0xff, 0xff]));
    expect(garbage["grpc-status"]).toBe(String(grpc.status.INVALID_ARGUMENT));
    const compressedWithoutEncoding = await send(Buffer.from([1, 0, 0, 0, 1, 0]));
    expect(compressedWithoutEncoding["grpc-status"]).toBe(String(grpc.status.INTERNAL));
    session.close();
    const ok = await grpcUnary(grpcJs, ProbeService.method.echo, { text: "alive" });
    expect(ok.response.text).toBe("alive");
  });

  it("answers malformed Connect requests with a clear error and keeps serving", async () => {
    const url = `${probe.url}/platform.testing.v1.ProbeService/Echo`;
    const badJson = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"text": ',
    });
    expect(badJson.status).toBe(400);
    expect(((await badJson.json()) as { code: string }).code).toBe("invalid_argument");
    const wrongType = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"delayMs": "soon"}',
    });
    expect(wrongType.status).toBe(400);
    // connect-node reports undecodable binary bodies as INTERNAL (its choice,
    // unlike connect-go's INVALID_ARGUMENT); the answer is still a clean
    // Connect error without internals, and the server keeps serving.
    const badProto = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: new Uint8Array([0xff, 0xff, 0xff]),
    });
    const badProtoBody = (await badProto.json()) as { message: string };
    expect([400, 500]).toContain(badProto.status);
    expect(badProtoBody.message).toMatch(/^parse binary/);
    expect(JSON.stringify(badProtoBody)).not.toMatch(/ at |\.ts:/);
    const unknown = await fetch(`${probe.url}/platform.testing.v1.ProbeService/Nope`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(unknown.status).toBe(404);
    const ok = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"text": "fine"}',
    });
    expect(await ok.json()).toMatchObject({ text: "fine" });
  });

  it("streams server-streaming responses to grpc-js and Connect clients", async () => {
    const viaGrpc = await grpcServerStream(grpcJs, ProbeService.method.count, { count: 5 });
    expect(viaGrpc.map((m) => m.n)).toEqual([1, 2, 3, 4, 5]);
    const connect = createClient(
      ProbeService,
      createConnectTransport({ baseUrl: probe.url, httpVersion: "1.1" }),
    );
    const seen: number[] = [];
    for await (const m of connect.count({ count: 3 })) seen.push(m.n);
    expect(seen).toEqual([1, 2, 3]);
  });
});

describe("unary Connect JSON (Connect-Web) on the fast path", () => {
  it("answers exactly as connect-node does: results, content types and errors", async () => {
    const fast = await startProbeServer();
    const generic = await startProbeServer({ connectFastPath: false });
    const cases: { name: string; contentType: string; body: string; path?: string }[] = [
      { name: "valid", contentType: "application/json", body: '{"text":"hi","delayMs":1}' },
      {
        name: "charset",
        contentType: "application/json; charset=utf-8",
        body: '{"text":"héllo","payload":"AAEC"}',
      },
      { name: "empty object", contentType: "application/json", body: "{}" },
      { name: "malformed", contentType: "application/json", body: '{"text":' },
      { name: "empty body", contentType: "application/json", body: "" },
      { name: "unknown field", contentType: "application/json", body: '{"nope":1}' },
      { name: "wrong type", contentType: "application/json", body: '{"delayMs":"soon"}' },
      {
        name: "domain error",
        contentType: "application/json",
        body: '{"kind":"invalid_argument"}',
        path: "/platform.testing.v1.ProbeService/Fail",
      },
    ];
    try {
      for (const c of cases) {
        const answers = await Promise.all(
          [fast, generic].map(async (server) => {
            const res = await fetch(
              `${server.url}${c.path ?? "/platform.testing.v1.ProbeService/Echo"}`,
              {
                method: "POST",
                headers: { "content-type": c.contentType, "connect-protocol-version": "1" },
                body: c.body,
              },
            );
            const text = await res.text();
            const body = JSON.parse(text) as Record<string, unknown>;
            // The remaining deadline differs between two calls by nature.
            delete body.deadlineRemainingMs;
            return { status: res.status, type: res.headers.get("content-type"), body };
          }),
        );
        expect(answers[0], c.name).toEqual(answers[1]);
      }
    } finally {
      await fast.server.close();
      await generic.server.close();
    }
  });
});

describe("deadline propagation", () => {
  it("gives DEADLINE_EXCEEDED at 50 ms and passes the reduced deadline downstream", async () => {
    const downstream = await startProbeServer();
    const upstream = createUpstream({
      name: "probe",
      baseUrl: downstream.url,
      defaultTimeoutMs: 10_000,
    });
    const client = createServiceClient(ProbeService, upstream);
    const front = await startProbeServer({ downstream: () => client });
    const grpcJs = createGrpcJsClient(`127.0.0.1:${front.port}`);
    try {
      const slow = await grpcUnary(
        grpcJs,
        ProbeService.method.relay,
        { echo: { text: "slow", delayMs: 500 } },
        { deadlineMs: 50 },
      ).catch((e) => e);
      expect(slow.code).toBe(grpc.status.DEADLINE_EXCEEDED);

      const { response } = await grpcUnary(
        grpcJs,
        ProbeService.method.relay,
        { echo: { text: "fast" } },
        { deadlineMs: 800 },
      );
      const seenDownstream = Number(response.echo?.deadlineRemainingMs);
      expect(seenDownstream).toBeGreaterThan(0);
      expect(seenDownstream).toBeLessThanOrEqual(800);
    } finally {
      grpcJs.close();
      await front.server.close();
      await downstream.server.close();
    }
  });
});

describe("graceful close", () => {
  it("lets an in-flight call finish while refusing readiness", async () => {
    const probe = await startProbeServer();
    const grpcJs = createGrpcJsClient(`127.0.0.1:${probe.port}`);
    const inFlight = grpcUnary(grpcJs, ProbeService.method.echo, { text: "slow", delayMs: 300 });
    await new Promise((r) => setTimeout(r, 100));
    const closing = probe.server.close();
    expect(probe.readiness.ready).toBe(false);
    const { response } = await inFlight;
    expect(response.text).toBe("slow");
    await closing;
    grpcJs.close();
  });

  it("cancels the calls still running when the grace period ends, on every path", async () => {
    const probe = await startProbeServer({ limits: { shutdownGraceMs: 150 } });
    const grpcJs = createGrpcJsClient(`127.0.0.1:${probe.port}`);
    const connect = createClient(
      ProbeService,
      createConnectTransport({ baseUrl: probe.url, httpVersion: "1.1", useBinaryFormat: true }),
    );
    const viaGrpc = grpcUnary(grpcJs, ProbeService.method.echo, { text: "a", delayMs: 5_000 });
    const viaConnect = failure(connect.echo({ text: "b", delayMs: 5_000 }));
    await new Promise((r) => setTimeout(r, 100));
    expect(probe.server.inFlight).toBe(2);
    const started = Date.now();
    await probe.server.close();
    expect(Date.now() - started).toBeLessThan(2_000);
    await expect(viaGrpc).rejects.toThrow();
    const error = await viaConnect;
    expect(error.code).not.toBe(Code.DeadlineExceeded);
    expect(probe.server.inFlight).toBe(0);
    // The handlers themselves were stopped (UNAVAILABLE), not left running.
    const unavailable = async () => {
      const text = await probe.metrics.registry.getSingleMetricAsString(
        "rpc_server_requests_total",
      );
      const line = text
        .split("\n")
        .find((l) => l.includes('rpc_method="Echo"') && l.includes('rpc_grpc_status_code="14"'));
      return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
    };
    const deadline = Date.now() + 1_000;
    while ((await unavailable()) < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await unavailable()).toBe(2);
    grpcJs.close();
  });
});

describe("grpc.health.v1.Health/Watch", () => {
  it("streams SERVING, then NOT_SERVING when the server starts draining", async () => {
    const probe = await startProbeServer();
    const grpcJs = createGrpcJsClient(`127.0.0.1:${probe.port}`);
    const statuses: HealthCheckResponse_ServingStatus[] = [];
    const call = grpcJs.makeServerStreamRequest(
      "/grpc.health.v1.Health/Watch",
      (m: { service: string }) =>
        Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, m))),
      (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
      { service: "" },
    );
    const both = new Promise<void>((resolve, reject) => {
      call.on("data", (m: { status: HealthCheckResponse_ServingStatus }) => {
        statuses.push(m.status);
        if (statuses.length === 1) probe.readiness.drain();
        if (statuses.length === 2) resolve();
      });
      call.on("error", reject);
    });
    await both;
    expect(statuses).toEqual([
      HealthCheckResponse_ServingStatus.SERVING,
      HealthCheckResponse_ServingStatus.NOT_SERVING,
    ]);
    call.cancel();
    grpcJs.close();
    await probe.server.close();
  });
});

describe("errors from streaming handlers", () => {
  it("map domain errors thrown before and during a stream, on Connect and gRPC", async () => {
    const probe = await startProbeServer();
    const grpcJs = createGrpcJsClient(`127.0.0.1:${probe.port}`);
    try {
      const connect = createClient(
        ProbeService,
        createConnectTransport({ baseUrl: probe.url, httpVersion: "1.1" }),
      );
      const drain = async (count: number, failAt = 0) => {
        const seen: number[] = [];
        try {
          for await (const m of connect.count({ count, failAt })) seen.push(m.n);
        } catch (error) {
          return { seen, error: ConnectError.from(error) };
        }
        return { seen, error: undefined };
      };
      const before = await drain(-1);
      expect(before.error?.code).toBe(Code.InvalidArgument);
      expect(before.error?.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe(
        "count",
      );
      const during = await drain(5, 3);
      expect(during.seen).toEqual([1, 2]);
      expect(during.error?.code).toBe(Code.Aborted);
      expect(during.error?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("STREAM_INTERRUPTED");
      const viaGrpc = await grpcServerStream(grpcJs, ProbeService.method.count, {
        count: 5,
        failAt: 2,
      }).catch((e) => e);
      expect(viaGrpc.code).toBe(grpc.status.ABORTED);
    } finally {
      grpcJs.close();
      await probe.server.close();
    }
  });
});
