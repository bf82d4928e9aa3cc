import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { ProbeService } from "../../gen/platform/testing/v1/probe_pb.js";
import { createGrpcJsClient, grpcUnary } from "../testing/grpc-js-client.js";

const PROBE_MAIN = new URL("../testing/probe-main.ts", import.meta.url).pathname;

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  server.close();
  return port;
}

function startProbe(env: Record<string, string>): { child: ChildProcess; output: () => string } {
  let output = "";
  const child = spawn(process.execPath, ["--import", "tsx", PROBE_MAIN], {
    env: { ...process.env, LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (d) => {
    output += d;
  });
  child.stderr!.on("data", (d) => {
    output += d;
  });
  return { child, output: () => output };
}

async function waitReady(port: number, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`service on ${port} never became ready`);
}

describe("service process lifecycle", () => {
  it("stops at start-up with a message naming a malformed variable", async () => {
    for (const [name, value] of [
      ["PORT", "eighty"],
      ["DATABASE_URL", "postgres://[::1"],
    ] as const) {
      const probe = startProbe({ [name]: value });
      const [code] = await once(probe.child, "exit");
      expect(code).toBe(1);
      expect(probe.output()).toContain(name);
      expect(probe.output()).toContain("invalid configuration");
    }
  });

  it("finishes an in-flight call on SIGTERM, then exits 0", async () => {
    const port = await freePort();
    const probe = startProbe({
      PORT: String(port),
      PROBE_NEEDS_POSTGRES: "1",
      DATABASE_URL: "postgres://postgres@127.0.0.1:5432/test",
      DB_SCHEMA: "probe_lifecycle",
    });
    await waitReady(port);
    const client = createGrpcJsClient(`127.0.0.1:${port}`);
    // Connect first, so SIGTERM lands while the slow call is in the handler
    // rather than while the client is still dialling (slow under load).
    await grpcUnary(client, ProbeService.method.echo, { text: "warm up" });
    const call = grpcUnary(client, ProbeService.method.echo, { text: "finish me", delayMs: 1500 });
    await new Promise((r) => setTimeout(r, 500));
    probe.child.kill("SIGTERM");
    const { response } = await call;
    expect(response.text).toBe("finish me");
    const [code] = await once(probe.child, "exit");
    expect(code).toBe(0);
    expect(probe.output()).toContain('"msg":"stopped"');
    client.close();
  });

  it("reports not ready (503) while a dependency is unreachable, and stays alive", async () => {
    const port = await freePort();
    const deadPort = await freePort();
    const probe = startProbe({
      PORT: String(port),
      PROBE_NEEDS_POSTGRES: "1",
      DATABASE_URL: `postgres://postgres@127.0.0.1:${deadPort}/test`,
    });
    try {
      let status = 0;
      for (let i = 0; i < 100 && status === 0; i++) {
        status = await fetch(`http://127.0.0.1:${port}/readyz`).then(
          (r) => r.status,
          () => 0,
        );
        if (status === 0) await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe(503);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    } finally {
      probe.child.kill("SIGTERM");
      const [code] = await once(probe.child, "exit");
      expect(code).toBe(0);
    }
  });
});
