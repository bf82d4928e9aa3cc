import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProbeService } from "../../gen/platform/testing/v1/probe_pb.js";
import { createProbeService } from "../testing/probe-service.js";
import { createConnectFastPath } from "./connect-fast-path.js";
import { registerService } from "./rpc-server.js";

describe("Connect fast path on node:http", () => {
  let server: http.Server;
  let url: string;
  const shutdown = new AbortController();

  beforeAll(async () => {
    const fastPath = createConnectFastPath({
      services: [registerService(ProbeService, createProbeService())],
      interceptors: [],
      readMaxBytes: 64 * 1024,
      writeMaxBytes: 64 * 1024,
      shutdownSignal: shutdown.signal,
    });
    // What the fast path declines gets 599, so each answer says who served it.
    server = http.createServer((req, res) => {
      if (!fastPath(req, res)) res.writeHead(599).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/platform.testing.v1.ProbeService`;
  });
  afterAll(() => {
    shutdown.abort();
    server.close();
  });

  const post = (path: string, contentType: string, body: string | Uint8Array) =>
    fetch(`${url}/${path}`, { method: "POST", headers: { "content-type": contentType }, body });

  it("serves unary JSON (what Connect-Web sends) and answers JSON", async () => {
    for (const type of ["application/json", "application/json; charset=utf-8"]) {
      const res = await post("Echo", type, '{"text":"web"}');
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/json");
      expect(await res.json()).toMatchObject({ text: "web" });
    }
    const bad = await post("Echo", "application/json", '{"text": 1}');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { code: string }).code).toBe("invalid_argument");
  });

  it("leaves other shapes to connect-node", async () => {
    expect((await post("Echo", "application/json; charset=latin1", "{}")).status).toBe(599);
    expect((await post("Echo", "text/plain", "{}")).status).toBe(599);
    expect((await post("Count", "application/json", "{}")).status).toBe(599);
    expect((await fetch(`${url}/Echo?message=e30`)).status).toBe(599);
  });
});
