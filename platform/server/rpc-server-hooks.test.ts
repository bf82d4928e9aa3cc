import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProbeService } from "../../gen/platform/testing/v1/probe_pb.js";
import { ReadinessMonitor } from "../health/readiness.js";
import { createLogger } from "../log/logger.js";
import { createMetrics } from "../telemetry/metrics.js";
import { createProbeService } from "../testing/probe-service.js";
import { createRpcServer, type RpcServer, registerService } from "./rpc-server.js";

// The front-door hooks the edge plugs into: httpHandler (HTTP/1.1 and
// HTTP/2 requests), streamHandler (raw HTTP/2 streams) and upgradeHandler.
describe("rpc server front-door hooks", () => {
  let server: RpcServer;
  let port: number;
  const seenHeaders: http.IncomingHttpHeaders[] = [];

  beforeAll(async () => {
    const readiness = new ReadinessMonitor([]);
    server = createRpcServer({
      name: "hooks",
      host: "127.0.0.1",
      port: 0,
      services: [registerService(ProbeService, createProbeService())],
      logger: createLogger({ service: "hooks", level: "silent" }),
      metrics: createMetrics("hooks", { defaults: false }),
      readiness,
      httpHandler(req, res) {
        if (!req.url?.startsWith("/hook")) return false;
        seenHeaders.push(req.headers);
        (res as http.ServerResponse).writeHead(200, { "content-type": "text/plain" });
        res.end(`hooked ${req.method} ${req.url} http/${req.httpVersion}`);
        return true;
      },
      streamHandler(stream, headers) {
        if (headers[":path"] !== "/stream-hook") return false;
        stream.respond({ ":status": 202 });
        stream.end("raw stream");
        return true;
      },
      upgradeHandler(_req, socket) {
        socket.end("HTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      },
    });
    port = await server.listen();
    await readiness.start();
  });

  afterAll(() => server.close());

  const get = (path: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port, path, headers, agent: false }, (res) => {
          let body = "";
          res.on("data", (c) => {
            body += c;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on("error", reject);
    });

  it("gives HTTP/1.1 requests to httpHandler after the platform's own routes", async () => {
    expect(await get("/hook/a")).toEqual({ status: 200, body: "hooked GET /hook/a http/1.1" });
    expect((await get("/healthz")).status).toBe(200);
  });

  it("gives HTTP/2 requests the stream handler declines to httpHandler", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const read = (path: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = session.request({ ":path": path });
          let status = 0;
          let body = "";
          req.on("response", (h) => {
            status = Number(h[":status"]);
          });
          req.on("data", (c) => {
            body += c;
          });
          req.on("end", () => resolve({ status, body }));
          req.on("error", reject);
          req.end();
        });
      expect(await read("/stream-hook")).toEqual({ status: 202, body: "raw stream" });
      expect(await read("/hook/b")).toEqual({ status: 200, body: "hooked GET /hook/b http/2.0" });
    } finally {
      session.close();
    }
  });

  it("still routes Connect and gRPC calls the hooks decline", async () => {
    const connect = createClient(
      ProbeService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }),
    );
    expect((await connect.echo({ text: "c" })).text).toBe("c");
    const grpc = createClient(
      ProbeService,
      createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }),
    );
    expect((await grpc.echo({ text: "g" })).text).toBe("g");
  });

  it("hands Upgrade requests to upgradeHandler", async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.write(
          "GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        );
      });
      let text = "";
      socket.on("data", (c) => {
        text += c;
      });
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    expect(reply).toMatch(/^HTTP\/1.1 418/);
  });
});
