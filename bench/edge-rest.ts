/**
 * Edge read path against its baselines, in one run (issue 7):
 *
 *   1. raw node:http hello                                  (ceiling)
 *   2. single process: node:http + ioredis GET → cached JSON ("what a user might build")
 *   3. REST  GET /v1/products/{id} → edge → catalog-shaped upstream (Redis cache hit)
 *   4. Connect unary JSON (HTTP/1.1) → edge pass-through → same upstream
 *   5. gRPC (HTTP/2) → edge pass-through → same upstream
 *   6. gRPC (HTTP/2) straight to the upstream (what the edge adds on top)
 *
 * HTTP/1.1 loads: autocannon, 50 connections. HTTP/2 loads: a raw node:http2
 * gRPC driver with 50 calls in flight over 2 connections. Every server runs in
 * its own process; the upstream is the platform server (gRPC fast path) whose
 * GetProduct reads the product's protobuf from Redis and decodes it, i.e. the
 * catalog's cache-hit work. Edge logs at warn (no access log line per
 * request); rate limiting is ON (one Redis EVALSHA per request) with limits
 * above the load.
 *
 *   npx tsx bench/edge-rest.ts [--seconds 10] [--warmup 2] [--connections 50]
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { parseArgs } from "node:util";
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import autocannon from "autocannon";
import { Redis } from "ioredis";
import {
  GetProductRequestSchema,
  GetProductResponseSchema,
} from "../gen/commerce/catalog/v1/catalog_service_pb.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    connections: { type: "string", default: "50" },
  },
});
const SECONDS = Number(values.seconds);
const WARMUP = Number(values.warmup);
const CONNECTIONS = Number(values.connections);
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const runId = randomBytes(4).toString("hex");
const keyPrefix = `bench:edge:${runId}:product:`;
const productId = randomUUID();
const log = (line: string) => process.stdout.write(`${line}\n`);

interface Result {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU µs per request spent in each server process (contention-proof cost). */
  cpu?: Record<string, number>;
}

/** utime + stime of a process in ms (Linux /proc; 10 ms resolution). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const servers = new Map<string, number>();

async function withCpu(
  run: () => Promise<Result>,
  totalRequests: (r: Result) => number,
  who: string[],
) {
  const before = new Map(who.map((name) => [name, cpuMs(servers.get(name)!)]));
  const result = await run();
  const requests = totalRequests(result);
  result.cpu = Object.fromEntries(
    who.map((name) => [name, ((cpuMs(servers.get(name)!) - before.get(name)!) * 1000) / requests]),
  );
  return result;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

const children: ChildProcess[] = [];

async function start(mode: string, args: string[], env: Record<string, string> = {}) {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      new URL("./edge-bench-servers.ts", import.meta.url).pathname,
      mode,
      String(port),
      ...args,
    ],
    { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] },
  );
  children.push(child);
  servers.set(mode, child.pid!);
  await new Promise<void>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (c: Buffer) => {
      out += c;
      if (out.includes("READY")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`${mode} exited with ${code}`)));
  });
  return port;
}

async function cannon(
  name: string,
  options: {
    url: string;
    method?: "GET" | "POST";
    headers?: Record<string, string>;
    body?: string;
  },
): Promise<Result> {
  const run = (duration: number) =>
    autocannon({
      ...options,
      connections: CONNECTIONS,
      duration,
      pipelining: 1,
    }) as Promise<autocannon.Result>;
  if (WARMUP > 0) await run(WARMUP);
  const result = await run(SECONDS);
  const errors = result.errors + result.non2xx + result.timeouts;
  return {
    name,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors,
  };
}

/** Closed-loop gRPC unary driver over raw HTTP/2: CONNECTIONS calls in flight. */
async function grpcLoad(name: string, port: number): Promise<Result> {
  const request = toBinary(
    GetProductRequestSchema,
    create(GetProductRequestSchema, { id: productId }),
  );
  const frame = Buffer.alloc(5 + request.length);
  frame.writeUInt32BE(request.length, 1);
  frame.set(request, 5);
  const sessions = [0, 1].map(() => http2.connect(`http://127.0.0.1:${port}`));
  const headers = {
    ":method": "POST",
    ":path": "/commerce.catalog.v1.CatalogService/GetProduct",
    "content-type": "application/grpc",
    te: "trailers",
    "grpc-timeout": "5S",
  };
  const call = (session: http2.ClientHttp2Session) =>
    new Promise<boolean>((resolve) => {
      const stream = session.request(headers);
      let status = "";
      stream.on("response", (h) => {
        if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
      });
      stream.on("trailers", (t) => {
        status = String(t["grpc-status"]);
      });
      stream.on("data", () => {});
      stream.on("close", () => resolve(status === "0"));
      stream.on("error", () => resolve(false));
      stream.end(frame);
    });
  const drive = async (seconds: number) => {
    const latencies: number[] = [];
    let errors = 0;
    const deadline = performance.now() + seconds * 1000;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async (_, i) => {
        const session = sessions[i % sessions.length]!;
        while (performance.now() < deadline) {
          const t0 = performance.now();
          const ok = await call(session);
          latencies.push(performance.now() - t0);
          if (!ok) errors++;
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    const pick = (p: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
    return { name, rps: latencies.length / elapsed, p50: pick(0.5), p99: pick(0.99), errors };
  };
  try {
    if (WARMUP > 0) await drive(WARMUP);
    return await drive(SECONDS);
  } finally {
    for (const s of sessions) s.close();
  }
}

async function main() {
  const redis = new Redis(REDIS_URL);
  const product = create(GetProductResponseSchema, {
    product: {
      id: productId,
      sku: "SKU-BENCH-0001",
      name: "Benchmark espresso grinder",
      description: "Conical burr grinder with 40 settings, 250 g hopper and a stepless dial.",
      price: { amountMinor: 24900n, currencyCode: "EUR" },
      categoryId: randomUUID(),
      attributes: { color: "black", weight: "2.1kg" },
      active: true,
      createTime: timestampFromDate(new Date("2024-03-01T10:00:00Z")),
      updateTime: timestampFromDate(new Date("2024-06-01T10:00:00Z")),
    },
  });
  const json = toJsonString(GetProductResponseSchema, product, { alwaysEmitImplicit: true });
  await redis.set(
    `${keyPrefix}${productId}`,
    Buffer.from(toBinary(GetProductResponseSchema, product)),
  );
  await redis.set(`${keyPrefix}json`, json);

  const unlimited = { ratePerSecond: 1e7, burst: 1e7 };
  const rawPort = await start("raw", []);
  const singlePort = await start("single", [`${keyPrefix}json`]);
  const upstreamPort = await start("upstream", [keyPrefix]);
  const edgePort = await start("edge", [`http://127.0.0.1:${upstreamPort}`], {
    LOG_LEVEL: "warn",
    EDGE_RATE_LIMIT_PREFIX: `bench:edge:${runId}:rl:`,
    EDGE_RATE_LIMITS: JSON.stringify({
      read: { anonymous: unlimited, user: unlimited },
      write: { anonymous: unlimited, user: unlimited },
      auth: { anonymous: unlimited, user: unlimited },
    }),
  });

  // The edge must answer exactly what the single-process handler answers.
  const check = await fetch(`http://127.0.0.1:${edgePort}/v1/products/${productId}`);
  const edgeBody = await check.text();
  if (
    check.status !== 200 ||
    JSON.stringify(JSON.parse(edgeBody)) !== JSON.stringify(JSON.parse(json))
  ) {
    throw new Error(`edge answered ${check.status} ${edgeBody.slice(0, 300)}`);
  }

  // CPU is read around the whole run (warm-up included) and divided by the
  // requests of the whole run, estimated from the measured rate.
  const withWarmup = (r: Result) => r.rps * (SECONDS + WARMUP);
  const results: Result[] = [];
  results.push(
    await withCpu(
      () => cannon("raw node:http hello", { url: `http://127.0.0.1:${rawPort}/` }),
      withWarmup,
      ["raw"],
    ),
  );
  results.push(
    await withCpu(
      () =>
        cannon("single process node:http+ioredis", {
          url: `http://127.0.0.1:${singlePort}/v1/products/${productId}`,
        }),
      withWarmup,
      ["single"],
    ),
  );
  results.push(
    await withCpu(
      () =>
        cannon("REST GET via edge → upstream", {
          url: `http://127.0.0.1:${edgePort}/v1/products/${productId}`,
        }),
      withWarmup,
      ["edge", "upstream"],
    ),
  );
  results.push(
    await withCpu(
      () =>
        cannon("Connect JSON (h1) via edge", {
          url: `http://127.0.0.1:${edgePort}/commerce.catalog.v1.CatalogService/GetProduct`,
          method: "POST",
          headers: { "content-type": "application/json", "connect-protocol-version": "1" },
          body: JSON.stringify({ id: productId }),
        }),
      withWarmup,
      ["edge", "upstream"],
    ),
  );
  results.push(
    await withCpu(() => grpcLoad("gRPC (h2) via edge", edgePort), withWarmup, ["edge", "upstream"]),
  );
  results.push(
    await withCpu(() => grpcLoad("gRPC (h2) direct to upstream", upstreamPort), withWarmup, [
      "upstream",
    ]),
  );

  const raw = results[0]!.rps;
  const single = results[1]!.rps;
  log("");
  log(`edge read path, ${CONNECTIONS} connections, ${SECONDS}s per run (warm-up ${WARMUP}s)`);
  log(
    `${"scenario".padEnd(36)} ${"req/s".padStart(9)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"errors".padStart(7)} ${"÷raw".padStart(6)} ${"÷single".padStart(8)}  CPU µs/request`,
  );
  for (const r of results) {
    const cpu = Object.entries(r.cpu ?? {})
      .map(([who, us]) => `${who} ${us.toFixed(0)}`)
      .join(", ");
    log(
      `${r.name.padEnd(36)} ${r.rps.toFixed(0).padStart(9)} ${r.p50.toFixed(2).padStart(8)} ${r.p99.toFixed(2).padStart(8)} ${String(r.errors).padStart(7)} ${(r.rps / raw).toFixed(3).padStart(6)} ${(r.rps / single).toFixed(3).padStart(8)}  ${cpu}`,
    );
  }
  const rest = results[2]!.rps;
  log("");
  log(
    `targets: REST via edge ≥ 0.25 × raw (${(rest / raw).toFixed(3)}) and ≥ 0.4 × single process (${(rest / single).toFixed(3)})`,
  );
  const keys = await redis.keys(`bench:edge:${runId}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
}

try {
  await main();
} finally {
  for (const child of children) child.kill("SIGTERM");
}
