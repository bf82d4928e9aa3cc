/**
 * Internal RPC cost: req/s, p50/p99 and server CPU µs per call for
 *   (a) a raw @grpc/grpc-js server (baseline),
 *   (b) the platform server over gRPC (unary fast path),
 *   (b') the platform server with the fast path off (connect-node's gRPC),
 *   (c) the platform server over the Connect protocol,
 * all measured in this run with the same client per protocol and the same proto.
 *
 *   npx tsx bench/rpc-overhead.ts [--seconds 8] [--concurrency 50]
 *
 * Server logging is on for the platform servers (one JSON line per RPC to
 * /dev/null), as in production.
 */
import { type ChildProcess, fork } from "node:child_process";
import { createHistogram } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ProbeService } from "../gen/platform/testing/v1/probe_pb.js";
import { createGrpcJsClient, grpcUnary } from "../platform/testing/grpc-js-client.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    concurrency: { type: "string", default: "50" },
  },
});
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);

interface Result {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  cpuUsPerCall: number;
  errors: number;
}

async function startServer(kind: string): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(new URL("./rpc-overhead-server.ts", import.meta.url), [kind], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", (m: { port: number }) => resolve(m.port));
    child.once("exit", (code) => reject(new Error(`${kind} server exited with ${code}`)));
  });
  return { child, port };
}

function cpuOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    child.once("message", (m: { cpu: NodeJS.CpuUsage }) => resolve(m.cpu.user + m.cpu.system));
    child.send({ cmd: "cpu" });
  });
}

async function drive(
  name: string,
  child: ChildProcess,
  call: () => Promise<unknown>,
): Promise<Result> {
  // Warm-up so JIT and connection set-up do not count.
  const warmUntil = Date.now() + 1500;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < warmUntil) await call();
    }),
  );
  const histogram = createHistogram();
  let done = 0;
  let errors = 0;
  const cpuBefore = await cpuOf(child);
  const started = performance.now();
  const until = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < until) {
        const t0 = performance.now();
        try {
          await call();
          histogram.record(Math.max(1, Math.round((performance.now() - t0) * 1000)));
          done++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const cpuAfter = await cpuOf(child);
  return {
    name,
    rps: done / elapsed,
    p50: histogram.percentile(50) / 1000,
    p99: histogram.percentile(99) / 1000,
    cpuUsPerCall: (cpuAfter - cpuBefore) / Math.max(1, done),
    errors,
  };
}

const request = { text: "hello", payload: new Uint8Array(64) };
const results: Result[] = [];

for (const kind of ["grpc-js", "platform", "platform-connect-only"]) {
  const { child, port } = await startServer(kind);
  const client = createGrpcJsClient(`127.0.0.1:${port}`);
  const label = {
    "grpc-js": "(a) raw grpc-js server, grpc-js client",
    platform: "(b) platform server, gRPC (fast path), grpc-js client",
    "platform-connect-only": "(b') platform server, gRPC via connect-node, grpc-js client",
  }[kind]!;
  results.push(
    await drive(label, child, () =>
      grpcUnary(client, ProbeService.method.echo, request, { deadlineMs: 5000 }),
    ),
  );
  client.close();
  if (kind === "platform") {
    const connect = createClient(
      ProbeService,
      createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "2" }),
    );
    results.push(
      await drive(
        "(c) platform server, Connect protocol (HTTP/2), connect-node client",
        child,
        () => connect.echo(request, { timeoutMs: 5000 }),
      ),
    );
  }
  child.send({ cmd: "exit" });
}

const baseline = results[0]!;
console.log(
  `\nRPC overhead — ${seconds}s per scenario, ${concurrency} calls in flight, Node ${process.version}\n`,
);
console.log(
  "scenario".padEnd(72) +
    "req/s".padStart(9) +
    "p50 ms".padStart(9) +
    "p99 ms".padStart(9) +
    "CPU µs/call".padStart(13) +
    "CPU ratio".padStart(11) +
    "errors".padStart(8),
);
for (const r of results) {
  console.log(
    r.name.padEnd(72) +
      r.rps.toFixed(0).padStart(9) +
      r.p50.toFixed(2).padStart(9) +
      r.p99.toFixed(2).padStart(9) +
      r.cpuUsPerCall.toFixed(1).padStart(13) +
      (r.cpuUsPerCall / baseline.cpuUsPerCall).toFixed(2).padStart(11) +
      String(r.errors).padStart(8),
  );
}
const fast = results[1]!;
console.log(
  `\ntarget: (b) CPU per call ≤ 1.5 × (a) → ${(fast.cpuUsPerCall / baseline.cpuUsPerCall).toFixed(2)}× ${
    fast.cpuUsPerCall / baseline.cpuUsPerCall <= 1.5 ? "MET" : "NOT MET"
  }`,
);
