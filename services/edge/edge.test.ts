// biome-ignore-all lint/suspicious/noExplicitAny: tests probe JSON bodies structurally
import http2 from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { TranscodeFixtureService } from "../../gen/platform/testing/v1/transcode_fixture_pb.js";
import {
  createGrpcJsClient,
  grpcServerStream,
  grpcUnary,
} from "../../platform/testing/grpc-js-client.js";
import { parseSse, rawRequest } from "../../platform/transcoder/testing/raw-http.js";
import { MESH_SERVICES } from "./mesh-services.js";
import { createTestAuth, startEdge, startUpstream } from "./testing/edge-harness.js";

const FIXTURE = TranscodeFixtureService.typeName;
const GENEROUS = JSON.stringify({
  read: {
    anonymous: { ratePerSecond: 100000, burst: 100000 },
    user: { ratePerSecond: 100000, burst: 100000 },
  },
  write: {
    anonymous: { ratePerSecond: 100000, burst: 100000 },
    user: { ratePerSecond: 2, burst: 3 },
  },
  auth: { anonymous: { ratePerSecond: 100000, burst: 100000 } },
});

let upstream: Awaited<ReturnType<typeof startUpstream>>;
let edge: Awaited<ReturnType<typeof startEdge>>;
let auth: Awaited<ReturnType<typeof createTestAuth>>;
let port: number;

beforeAll(async () => {
  auth = await createTestAuth();
  upstream = await startUpstream(MESH_SERVICES);
  const upstreams: Record<string, string> = { [FIXTURE]: upstream.url };
  for (const s of MESH_SERVICES) upstreams[s.typeName] = upstream.url;
  edge = await startEdge({
    services: [...MESH_SERVICES, TranscodeFixtureService],
    upstreams,
    verifier: auth.verifier,
    env: { EDGE_RATE_LIMITS: GENEROUS, EDGE_CORS_ORIGINS: "https://shop.example" },
  });
  port = edge.port;
});

afterAll(async () => {
  await edge?.stop();
  await upstream?.close();
});

const fixtureClient = (transport: Parameters<typeof createClient>[1]) =>
  createClient(TranscodeFixtureService, transport);

describe("REST through the edge", () => {
  it("reaches the upstream and adds security headers, request id and rate-limit headers", async () => {
    const r = await rawRequest(port, { path: "/v1/items/e1" });
    expect(r.status).toBe(200);
    expect(r.json.echo).toEqual({ id: "e1" });
    expect(r.headers["x-content-type-options"]).toBe("nosniff");
    expect(r.headers["referrer-policy"]).toBe("no-referrer");
    expect(r.headers["content-security-policy"]).toMatch(/default-src 'none'/);
    expect(r.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.headers["ratelimit-limit"]).toBe("100000");
    expect(Number(r.headers["ratelimit-remaining"])).toBeGreaterThan(0);
    // Sent with its length, not chunked.
    expect(r.headers["content-length"]).toBe(String(Buffer.byteLength(r.text)));
    expect(r.headers["transfer-encoding"]).toBeUndefined();
    const withId = await rawRequest(port, {
      path: "/v1/items/e1",
      headers: { "x-request-id": "abc-123" },
    });
    expect(withId.headers["x-request-id"]).toBe("abc-123");
    // Each REST request is timed once it is answered (2xx and 4xx alike).
    const counted = async () => {
      const text = (await rawRequest(port, { path: "/metrics" })).text;
      const count = (status: string) =>
        Number(
          new RegExp(
            `edge_http_request_duration_seconds_count\\{[^}]*kind="rest"[^}]*status_class="${status}"[^}]*\\} (\\d+)`,
          ).exec(text)?.[1] ?? 0,
        );
      return { ok: count("2xx"), bad: count("4xx") };
    };
    const before = await counted();
    await rawRequest(port, { path: "/v1/items/e1" });
    const refused = await rawRequest(port, { path: "/v1/items/e1?unknown=1" });
    expect(refused.status).toBe(400);
    expect(refused.headers["content-length"]).toBe(String(Buffer.byteLength(refused.text)));
    expect(await counted()).toEqual({ ok: before.ok + 1, bad: before.bad + 1 });
  });

  it("propagates the request id and the caller's token upstream", async () => {
    const token = await auth.token("user-42");
    const r = await rawRequest(port, {
      path: "/v1/whoami",
      headers: { authorization: `Bearer ${token}`, "x-request-id": "rid-7" },
    });
    expect(r.status).toBe(200);
    expect(r.json.caller).toMatchObject({
      authorization: `Bearer ${token}`,
      "x-request-id": "rid-7",
    });
  });

  it("answers 401 with a Status body for a missing or invalid token, 403 for a missing role", async () => {
    const missing = await rawRequest(port, { path: "/v1/whoami" });
    expect(missing.status).toBe(401);
    expect(missing.headers["www-authenticate"]).toMatch(/^Bearer/);
    expect(missing.json).toMatchObject({
      code: Code.Unauthenticated,
      message: "authentication required",
    });
    const invalid = await rawRequest(port, {
      path: "/v1/whoami",
      headers: { authorization: "Bearer a.b.c" },
    });
    expect(invalid.status).toBe(401);
    expect(invalid.json.code).toBe(Code.Unauthenticated);
    const customer = await auth.token("user-43", ["customer"]);
    const denied = await rawRequest(port, {
      method: "POST",
      path: "/v1/admin:ping",
      body: "{}",
      headers: { authorization: `Bearer ${customer}` },
    });
    expect(denied.status).toBe(403);
    expect(denied.json.code).toBe(Code.PermissionDenied);
    const admin = await auth.token("admin-1", ["admin"]);
    const allowed = await rawRequest(port, {
      method: "POST",
      path: "/v1/admin:ping",
      body: "{}",
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(allowed.status).toBe(200);
    expect(allowed.json).toEqual({ reply: "pong" });
  });

  it("maps upstream errors (gRPC trailers with details) to HTTP status and a Status body", async () => {
    const r = await rawRequest(port, { path: "/v1/fail/6" });
    expect(r.status).toBe(409);
    expect(r.json.code).toBe(Code.AlreadyExists);
    expect(r.json.message).toBe("fixture failure");
    expect(r.json.details.map((d: any) => d["@type"])).toEqual([
      "type.googleapis.com/google.rpc.BadRequest",
      "type.googleapis.com/google.rpc.ErrorInfo",
    ]);
    const internal = await rawRequest(port, { path: "/v1/fail/13" });
    expect(internal.status).toBe(500);
    expect(internal.json.message).toBe("internal error");
  });

  it("answers 503 with a Status body when the upstream is down", async () => {
    const down = await startEdge({
      services: [TranscodeFixtureService],
      upstreams: { [FIXTURE]: "http://127.0.0.1:1" },
      verifier: auth.verifier,
      env: { EDGE_RATE_LIMITS: GENEROUS },
    });
    try {
      const r = await rawRequest(down.port, { path: "/v1/items/x" });
      expect(r.status).toBe(503);
      expect(r.json).toMatchObject({ code: Code.Unavailable, message: "service unavailable" });
      const connect = await rawRequest(down.port, {
        method: "POST",
        path: `/${FIXTURE}/GetItem`,
        body: "{}",
        headers: { "connect-protocol-version": "1" },
      });
      expect(connect.status).toBe(503);
      expect(connect.json.code).toBe("unavailable");
    } finally {
      await down.stop();
    }
  });

  it("streams Server-Sent Events from the upstream through the edge", async () => {
    const r = await rawRequest(port, {
      path: "/v1/items/s1:watch?count=2",
      headers: { "last-event-id": "4" },
    });
    expect(r.status).toBe(200);
    const events = parseSse(r.text);
    expect(events.map((e) => [e.event, e.id])).toEqual([
      ["message", "5"],
      ["message", "6"],
      ["end", undefined],
    ]);
  });

  it("serves REST over h2c and WebSocket upgrades on the same port", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const { status, body } = await new Promise<{ status: number; body: string }>(
        (resolve, reject) => {
          const req = session.request({ ":path": "/v1/items/h2c" });
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
        },
      );
      expect(status).toBe(200);
      expect(JSON.parse(body).echo).toEqual({ id: "h2c" });
    } finally {
      session.close();
    }
    const frames: any[] = [];
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/items/ws1:watch?count=2`);
    const code = await new Promise<number>((resolve, reject) => {
      ws.on("message", (data) => frames.push(JSON.parse(String(data))));
      ws.on("close", (c) => resolve(c));
      ws.on("error", reject);
    });
    expect(code).toBe(1000);
    expect(frames.map((f) => f.result.event.sequence)).toEqual(["1", "2"]);
    const foreign = new WebSocket(`ws://127.0.0.1:${port}/v1/items/ws1:watch`, {
      origin: "https://evil.example",
    });
    const refused = await new Promise<number>((resolve) => {
      foreign.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      foreign.on("error", () => resolve(-1));
    });
    expect(refused).toBe(403);
  });

  it("takes a browser's WebSocket bearer token from the subprotocol list and forwards it", async () => {
    const token = await auth.token("user-ws");
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/items/ws2:watch?count=1`, [
      "commerce-mesh.v1",
      `bearer.${token}`,
    ]);
    const frames: any[] = [];
    const code = await new Promise<number>((resolve, reject) => {
      ws.on("message", (data) => frames.push(JSON.parse(String(data))));
      ws.on("close", (c) => resolve(c));
      ws.on("error", reject);
    });
    expect(code).toBe(1000);
    // The handshake selected the plain subprotocol; the token was never echoed.
    expect(ws.protocol).toBe("commerce-mesh.v1");
    expect(frames[0].result.callerAuthorization).toBe(`Bearer ${token}`);
    // An explicit Authorization header wins over the subprotocol entry.
    const other = await auth.token("user-ws-header");
    const both = new WebSocket(
      `ws://127.0.0.1:${port}/v1/items/ws3:watch?count=1`,
      ["commerce-mesh.v1", `bearer.${token}`],
      { headers: { authorization: `Bearer ${other}` } },
    );
    const seen = await new Promise<string>((resolve, reject) => {
      both.on("message", (data) => resolve(JSON.parse(String(data)).result.callerAuthorization));
      both.on("error", reject);
    });
    both.close();
    expect(seen).toBe(`Bearer ${other}`);
  });

  it("answers CORS preflights for allowed origins only and exposes the RPC headers", async () => {
    const ok = await rawRequest(port, {
      method: "OPTIONS",
      path: `/${FIXTURE}/GetItem`,
      headers: {
        origin: "https://shop.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,connect-protocol-version",
      },
    });
    expect(ok.status).toBe(204);
    expect(ok.headers["access-control-allow-origin"]).toBe("https://shop.example");
    expect(ok.headers["access-control-allow-headers"]).toMatch(/connect-protocol-version/);
    const bad = await rawRequest(port, {
      method: "OPTIONS",
      path: `/${FIXTURE}/GetItem`,
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    expect(bad.status).toBe(403);
    expect(bad.headers["access-control-allow-origin"]).toBeUndefined();
    const actual = await rawRequest(port, {
      path: "/v1/items/c1",
      headers: { origin: "https://shop.example" },
    });
    expect(actual.headers["access-control-allow-origin"]).toBe("https://shop.example");
    expect(actual.headers["access-control-expose-headers"]).toMatch(/grpc-status/);
  });

  it("refuses an overlong URL with 414 and a Status body", async () => {
    const r = await rawRequest(port, { path: `/v1/items/${"x".repeat(9000)}` });
    expect(r.status).toBe(414);
    expect(r.json.code).toBe(Code.InvalidArgument);
  });

  it("serves a valid OpenAPI 3.1 document listing every annotated RPC", async () => {
    const r = await rawRequest(port, { path: "/openapi.json" });
    expect(r.status).toBe(200);
    const validator = new Validator();
    const result = await validator.validate(r.json);
    expect(result.errors ?? []).toEqual([]);
    const ids = new Set<string>();
    for (const item of Object.values(r.json.paths) as any[]) {
      for (const [k, op] of Object.entries(item)) {
        if (k === "x-custom-methods")
          for (const c of Object.values(op as object)) ids.add((c as any).operationId);
        else ids.add((op as any).operationId);
      }
    }
    expect(ids.has("CatalogService_GetProduct")).toBe(true);
    expect(ids.has("OrderService_WatchOrder")).toBe(true);
    expect(ids.has("IdentityService_GetJwks_1")).toBe(true);
    expect(r.json.paths["/v1/products/{id}"].get.description).toMatch(/\w/);
  });
});

describe("RPC pass-through", () => {
  it("forwards Connect JSON over HTTP/1.1 (Connect-Web style), unary and streaming", async () => {
    const client = fixtureClient(
      createConnectTransport({
        baseUrl: `http://127.0.0.1:${port}`,
        httpVersion: "1.1",
        useBinaryFormat: false,
      }),
    );
    const response = await client.getItem({ id: "cw1" });
    expect(response.echo?.id).toBe("cw1");
    const events: bigint[] = [];
    for await (const m of client.watchItem({ id: "cw1", count: 3 })) events.push(m.event!.sequence);
    expect(events).toEqual([1n, 2n, 3n]);
  });

  it("forwards a raw Connect JSON POST and answers CORS headers on it", async () => {
    const r = await rawRequest(port, {
      method: "POST",
      path: `/${FIXTURE}/GetItem`,
      body: JSON.stringify({ id: "raw" }),
      headers: { "connect-protocol-version": "1", origin: "https://shop.example" },
    });
    expect(r.status).toBe(200);
    expect(r.json.echo).toEqual({ id: "raw" });
    expect(r.headers["access-control-allow-origin"]).toBe("https://shop.example");
    expect(r.headers["x-request-id"]).toBeDefined();
  });

  it("forwards gRPC-Web over HTTP/1.1", async () => {
    const client = fixtureClient(
      createGrpcWebTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }),
    );
    expect((await client.getItem({ id: "gw1" })).echo?.id).toBe("gw1");
    await expect(client.failWith({ code: Code.NotFound })).rejects.toMatchObject({
      code: Code.NotFound,
    });
  });

  it("forwards gRPC over HTTP/2, unary, errors with details, and server streaming", async () => {
    const client = fixtureClient(createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    expect((await client.getItem({ id: "g1" })).echo?.id).toBe("g1");
    const error = await client.failWith({ code: Code.AlreadyExists }).then(
      () => new ConnectError("unexpected success"),
      (e: unknown) => ConnectError.from(e),
    );
    expect(error.code).toBe(Code.AlreadyExists);
    expect(error.details.length).toBe(2);
    const seqs: bigint[] = [];
    for await (const m of client.watchItem({ id: "g1", count: 2, afterSequence: 10n }))
      seqs.push(m.event!.sequence);
    expect(seqs).toEqual([11n, 12n]);
  });

  it("serves a stock @grpc/grpc-js client", async () => {
    const client = createGrpcJsClient(`127.0.0.1:${port}`);
    try {
      const method = TranscodeFixtureService.method.getItem;
      const { response } = await grpcUnary(client, method, { id: "js1" });
      expect(response.echo?.id).toBe("js1");
      const stream = await grpcServerStream(client, TranscodeFixtureService.method.watchItem, {
        id: "js1",
        count: 2,
      });
      expect(stream.map((m) => m.event?.sequence)).toEqual([1n, 2n]);
      const failed = await grpcUnary(client, TranscodeFixtureService.method.failWith, {
        code: Code.NotFound,
      }).catch((e: grpc.ServiceError) => e);
      expect((failed as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
    } finally {
      client.close();
    }
  });

  it("applies the access policy to pass-through calls", async () => {
    const transport = createConnectTransport({
      baseUrl: `http://127.0.0.1:${port}`,
      httpVersion: "1.1",
    });
    await expect(fixtureClient(transport).whoAmI({})).rejects.toMatchObject({
      code: Code.Unauthenticated,
    });
    const token = await auth.token("user-77");
    const response = await fixtureClient(transport).whoAmI(
      {},
      { headers: { authorization: `Bearer ${token}` } },
    );
    expect(response.caller.authorization).toBe(`Bearer ${token}`);
    const grpcClient = fixtureClient(createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
    await expect(
      grpcClient.adminPing({}, { headers: { authorization: `Bearer ${token}` } }),
    ).rejects.toMatchObject({
      code: Code.PermissionDenied,
    });
  });

  it("answers Unimplemented for an unknown method of a routed service", async () => {
    const r = await rawRequest(port, {
      method: "POST",
      path: `/${FIXTURE}/NoSuchMethod`,
      body: "{}",
      headers: { "connect-protocol-version": "1" },
    });
    expect(r.status).toBe(501);
    expect(r.json.code).toBe("unimplemented");
  });

  it("keeps the edge's own gRPC health service", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = session.request({
          ":method": "POST",
          ":path": "/grpc.health.v1.Health/Check",
          "content-type": "application/grpc",
          te: "trailers",
        });
        req.end(Buffer.from([0, 0, 0, 0, 0]));
        req.on("trailers", (t) => resolve(Number(t["grpc-status"])));
        req.on("response", (h) => {
          if (h["grpc-status"] !== undefined) resolve(Number(h["grpc-status"]));
        });
        req.on("error", reject);
        req.resume();
      });
      expect(status).toBe(0);
    } finally {
      session.close();
    }
  });
});

describe("rate limits", () => {
  it("refuses the call after the bucket is spent: 429 with RateLimit headers, RESOURCE_EXHAUSTED for Connect", async () => {
    // AdminPing is an authenticated write: class "write", limited per user (burst 3).
    const token = await auth.token(`rl-${Date.now()}`, ["admin"]);
    const call = () =>
      rawRequest(port, {
        method: "POST",
        path: "/v1/admin:ping",
        body: "{}",
        headers: { authorization: `Bearer ${token}` },
      });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await call()).status);
    expect(statuses).toEqual([200, 200, 200]);
    const refused = await call();
    expect(refused.status).toBe(429);
    expect(refused.json.code).toBe(Code.ResourceExhausted);
    expect(refused.headers["ratelimit-limit"]).toBe("3");
    expect(refused.headers["ratelimit-remaining"]).toBe("0");
    expect(Number(refused.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(refused.headers["ratelimit-policy"]).toBe("3;w=2");
    const retryInfo = refused.json.details.find((d: any) =>
      d["@type"].endsWith("google.rpc.RetryInfo"),
    );
    expect(retryInfo).toBeDefined();
    const client = fixtureClient(
      createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1" }),
    );
    await expect(
      client.adminPing({}, { headers: { authorization: `Bearer ${token}` } }),
    ).rejects.toMatchObject({ code: Code.ResourceExhausted });
    // Other users keep their own buckets.
    const other = await auth.token(`rl-other-${Date.now()}`, ["admin"]);
    expect(
      (await client.adminPing({}, { headers: { authorization: `Bearer ${other}` } })).reply,
    ).toBe("pong");
  });

  it("falls back to the per-process limiter when Redis is unreachable (still limits, counts the fallback)", async () => {
    const deadRedisEdge = await startEdge({
      services: [TranscodeFixtureService],
      upstreams: { [FIXTURE]: upstream.url },
      verifier: auth.verifier,
      env: {
        REDIS_URL: "redis://127.0.0.1:1",
        EDGE_RATE_LIMITS: JSON.stringify({
          read: { anonymous: { ratePerSecond: 0.01, burst: 2 } },
        }),
      },
    });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        statuses.push((await rawRequest(deadRedisEdge.port, { path: "/v1/items/r1" })).status);
      }
      expect(statuses).toEqual([200, 200, 429]);
      const metrics = await rawRequest(deadRedisEdge.port, { path: "/metrics" });
      const fallback = /edge_rate_limit_fallback_total\{[^}]*\} (\d+)/.exec(metrics.text);
      expect(Number(fallback?.[1])).toBeGreaterThanOrEqual(3);
      expect((await rawRequest(deadRedisEdge.port, { path: "/readyz" })).status).toBe(200);
    } finally {
      await deadRedisEdge.stop();
    }
  });
});
