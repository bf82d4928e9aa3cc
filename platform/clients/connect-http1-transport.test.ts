import http from "node:http";
import type net from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  EchoResponseSchema,
  FailRequestSchema,
  ProbeService,
} from "../../gen/platform/testing/v1/probe_pb.js";
import { encodedMessageOf } from "../rpc/encoded-message.js";
import { startProbeServer } from "../testing/probe-server.js";
import { createConnectHttp1Transport } from "./connect-http1-transport.js";

type Probe = Awaited<ReturnType<typeof startProbeServer>>;

function transportFor(
  baseUrl: string,
  options: { maxMessageBytes?: number; abandonGraceMs?: number } = {},
) {
  return createConnectHttp1Transport({
    baseUrl,
    maxMessageBytes: options.maxMessageBytes ?? 1024 * 1024,
    connections: 2,
    maxPipeline: 4,
    ...(options.abandonGraceMs ? { abandonGraceMs: options.abandonGraceMs } : {}),
    fallback: createConnectTransport({ baseUrl, httpVersion: "1.1" }),
  });
}

/** A node:http server answering every POST with `respond`, counting connections. */
async function rawServer(respond: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => respond(req, res));
  });
  let connections = 0;
  server.on("connection", () => connections++);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    connections: () => connections,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const echoBytes = (text: string) =>
  Buffer.from(toBinary(EchoResponseSchema, create(EchoResponseSchema, { text })));

describe("Connect over HTTP/1.1 transport", () => {
  let probe: Probe;
  beforeAll(async () => {
    probe = await startProbeServer();
  });
  afterAll(async () => {
    await probe.server.close();
  });

  it("answers each of many concurrent calls with its own response over a few pipelined connections", async () => {
    const transport = transportFor(probe.url);
    const client = createClient(ProbeService, transport);
    const texts = Array.from({ length: 200 }, (_, i) => `call-${i}-${"x".repeat(i % 7)}`);
    const answers = await Promise.all(texts.map((text) => client.echo({ text })));
    expect(answers.map((a) => a.text)).toEqual(texts);
    // The deadline travelled as connect-timeout-ms (the server capped/defaulted it).
    expect(answers[0]!.deadlineRemainingMs).toBeGreaterThan(0n);
    transport.close();
  });

  it("keeps the answer's bytes for callers that re-encode, and decodes the message only when read", async () => {
    const bodies = [echoBytes("kept"), Buffer.from([0x0a, 0x05, 0x61])]; // the second is truncated
    const server = await rawServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/proto" }).end(bodies.shift());
    });
    const transport = transportFor(server.url);
    const call = () =>
      transport.unary(ProbeService.method.echo, undefined, 1_000, undefined, { text: "x" });
    const good = await call();
    expect(Buffer.from(encodedMessageOf(good)!)).toEqual(echoBytes("kept"));
    expect(good.message.text).toBe("kept");
    // A malformed answer fails where the message is read, as INTERNAL.
    const bad = await call();
    expect(encodedMessageOf(bad)).toHaveLength(3);
    const error = (() => {
      try {
        return bad.message;
      } catch (e) {
        return e;
      }
    })();
    expect(ConnectError.from(error).code).toBe(Code.Internal);
    expect(ConnectError.from(error).rawMessage).toBe("protocol error: undecodable response");
    transport.close();
    await server.close();
  });

  it("sends the caller's deadline and headers, and surfaces response headers", async () => {
    const transport = transportFor(probe.url);
    const client = createClient(ProbeService, transport);
    let header: Headers | undefined;
    const answer = await client.echo(
      { text: "hi" },
      { timeoutMs: 2_000, headers: { "x-request-id": "req-1" }, onHeader: (h) => (header = h) },
    );
    expect(Number(answer.deadlineRemainingMs)).toBeLessThanOrEqual(2_000);
    expect(Number(answer.deadlineRemainingMs)).toBeGreaterThan(1_000);
    expect(header?.get("content-type")).toBe("application/proto");
    transport.close();
  });

  it("turns Connect error bodies into ConnectErrors with their details", async () => {
    const transport = transportFor(probe.url);
    const client = createClient(ProbeService, transport);
    const invalid = await client.fail({ kind: "invalid_argument" }).catch((e) => e);
    expect(invalid).toBeInstanceOf(ConnectError);
    expect(invalid.code).toBe(Code.InvalidArgument);
    expect(invalid.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe(
      "items[0].quantity",
    );
    const missing = await client.fail({ kind: "not_found" }).catch((e) => e);
    expect(missing.code).toBe(Code.NotFound);
    const internal = await client.fail({ kind: "boom" }).catch((e) => e);
    expect(internal.code).toBe(Code.Internal);
    expect(internal.rawMessage).toBe("internal error");
    expect(JSON.stringify(internal.details)).not.toContain("hunter2");
    // The connection is still in sync after errors.
    expect((await client.echo({ text: "after" })).text).toBe("after");
    transport.close();
  });

  it("times out and aborts calls without desynchronising the connection", async () => {
    const transport = transportFor(probe.url);
    const client = createClient(ProbeService, transport);
    const slow = client.echo({ text: "slow", delayMs: 400 }, { timeoutMs: 50 });
    const others = Array.from({ length: 10 }, (_, i) => client.echo({ text: `next-${i}` }));
    await expect(slow).rejects.toMatchObject({ code: Code.DeadlineExceeded });
    expect((await Promise.all(others)).map((a) => a.text)).toEqual(
      Array.from({ length: 10 }, (_, i) => `next-${i}`),
    );
    const controller = new AbortController();
    const aborted = client.echo({ text: "abort", delayMs: 300 }, { signal: controller.signal });
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: Code.Canceled });
    expect((await client.echo({ text: "still fine" })).text).toBe("still fine");
    transport.close();
  });

  it("fails as UNAVAILABLE while the server is down and reconnects when it is back", async () => {
    const server = await rawServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/proto" }).end(echoBytes("up"));
    });
    const url = server.url;
    await server.close();
    const transport = transportFor(url);
    const client = createClient(ProbeService, transport);
    await expect(client.echo({})).rejects.toMatchObject({ code: Code.Unavailable });
    const port = Number(new URL(url).port);
    const back = http.createServer((req, res) => {
      req.resume();
      req.on("end", () =>
        res.writeHead(200, { "content-type": "application/proto" }).end(echoBytes("back")),
      );
    });
    await new Promise<void>((resolve) => back.listen(port, "127.0.0.1", resolve));
    expect((await client.echo({})).text).toBe("back");
    transport.close();
    back.closeAllConnections();
    await new Promise<void>((resolve) => back.close(() => resolve()));
  });

  it("reads chunked bodies with trailers, and reconnects after `connection: close`", async () => {
    let n = 0;
    const server = await rawServer((_req, res) => {
      n++;
      const body = echoBytes(`reply-${n}`);
      if (n % 2 === 1) {
        // No content-length: node:http sends it chunked, here in two chunks plus trailers.
        res.writeHead(200, { "content-type": "application/proto", trailer: "x-checksum" });
        res.write(body.subarray(0, 3));
        res.addTrailers({ "x-checksum": "abc" });
        res.end(body.subarray(3));
      } else {
        res.writeHead(200, {
          "content-type": "application/proto",
          "content-length": body.length,
          connection: "close",
        });
        res.end(body);
      }
    });
    const transport = transportFor(server.url);
    const client = createClient(ProbeService, transport);
    const texts: string[] = [];
    for (let i = 0; i < 4; i++) texts.push((await client.echo({})).text);
    expect(texts).toEqual(["reply-1", "reply-2", "reply-3", "reply-4"]);
    expect(server.connections()).toBeGreaterThanOrEqual(2);
    transport.close();
    await server.close();
  });

  it("keeps new calls off a connection whose abandoned call hangs, then closes it", async () => {
    let closed = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      req.socket.once("close", () => closed++);
      if (req.headers["x-hang"]) return; // never answered
      req.on("end", () =>
        res.writeHead(200, { "content-type": "application/proto" }).end(echoBytes("ok")),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const transport = transportFor(url, { abandonGraceMs: 200 });
    const client = createClient(ProbeService, transport);
    await expect(
      client.echo({}, { timeoutMs: 50, headers: { "x-hang": "1" } }),
    ).rejects.toMatchObject({ code: Code.DeadlineExceeded });
    // Served elsewhere meanwhile, not queued behind the hung call.
    const during = await Promise.all(Array.from({ length: 6 }, () => client.echo({})));
    expect(during.every((a) => a.text === "ok")).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(closed).toBeGreaterThanOrEqual(1);
    expect((await client.echo({})).text).toBe("ok");
    transport.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("joins a large body that arrives in many chunks", async () => {
    const server = await rawServer((_req, res) => {
      const body = echoBytes("z".repeat(600_000));
      res.writeHead(200, { "content-type": "application/proto", "content-length": body.length });
      // Many small writes: the client sees the body in pieces.
      for (let at = 0; at < body.length; at += 4096) res.write(body.subarray(at, at + 4096));
      res.end();
    });
    const transport = transportFor(server.url);
    const client = createClient(ProbeService, transport);
    const [a, b] = await Promise.all([client.echo({}), client.echo({})]);
    expect(a.text.length).toBe(600_000);
    expect(b.text.length).toBe(600_000);
    transport.close();
    await server.close();
  });

  it("refuses oversized responses and header values that would smuggle a header", async () => {
    const server = await rawServer((_req, res) => {
      const body = echoBytes("y".repeat(5_000));
      res
        .writeHead(200, { "content-type": "application/proto", "content-length": body.length })
        .end(body);
    });
    const transport = transportFor(server.url, { maxMessageBytes: 1_000 });
    const client = createClient(ProbeService, transport);
    await expect(client.echo({})).rejects.toMatchObject({ code: Code.ResourceExhausted });
    // Plain header records (what the edge passes) are checked by the transport itself.
    await expect(
      transport.unary(
        ProbeService.method.echo,
        undefined,
        undefined,
        { "x-note": "a\r\nx-admin: yes" },
        {},
      ),
    ).rejects.toMatchObject({ code: Code.Internal });
    transport.close();
    await server.close();
  });
});

describe("Connect unary fast path on the platform server", () => {
  let probe: Probe;
  beforeAll(async () => {
    probe = await startProbeServer({ limits: { maxMessageBytes: 64 * 1024 } });
  });
  afterAll(async () => {
    await probe.server.close();
  });

  const post = (path: string, body: Uint8Array, headers: Record<string, string> = {}) =>
    fetch(`${probe.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/proto", ...headers },
      body,
    });

  it("answers binary Connect calls and maps errors to Connect JSON with the HTTP status", async () => {
    const ok = await post(
      "/platform.testing.v1.ProbeService/Echo",
      new Uint8Array([0x12, 0x02, 0x68, 0x69]),
    );
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toBe("application/proto");
    const failed = await post(
      "/platform.testing.v1.ProbeService/Fail",
      toBinary(FailRequestSchema, create(FailRequestSchema, { kind: "invalid_argument" })),
    );
    expect(failed.status).toBe(400);
    const error = (await failed.json()) as { code: string; details: { type: string }[] };
    expect(error.code).toBe("invalid_argument");
    expect(error.details.map((d) => d.type)).toContain("google.rpc.BadRequest");
  });

  it("rejects malformed and oversized bodies, and leaves other shapes to connect-node", async () => {
    const malformed = await post("/platform.testing.v1.ProbeService/Echo", new Uint8Array([0xff]));
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { code: string }).code).toBe("invalid_argument");
    const oversized = await post(
      "/platform.testing.v1.ProbeService/Echo",
      new Uint8Array(70 * 1024),
    );
    expect(oversized.status).toBe(429);
    expect(((await oversized.json()) as { code: string }).code).toBe("resource_exhausted");
    const unknown = await post("/platform.testing.v1.ProbeService/Nope", new Uint8Array());
    expect(unknown.status).toBe(404);
    // JSON is connect-node's.
    const json = await fetch(`${probe.url}/platform.testing.v1.ProbeService/Echo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: "json" }),
    });
    expect(((await json.json()) as { text: string }).text).toBe("json");
  });
});
