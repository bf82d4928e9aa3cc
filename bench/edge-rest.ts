/**
 * Edge read path against its baselines, in one run (issue 7):
 *
 *   1. raw node:http hello                                          (ceiling)
 *   2. single process: fastify + ioredis GET → cached product JSON  ("what a user might build")
 *   3. single process: node:http + ioredis, same handler            (reference: fastify's own cost)
 *   4. REST  GET /v1/products/{id} → edge → the real catalog service (Redis cache hit)
 *   5. Connect unary JSON (HTTP/1.1) → edge pass-through → catalog
 *   6. gRPC (HTTP/2) → edge pass-through → catalog
 *   7. gRPC (HTTP/2) straight to the catalog (what the edge adds on top)
 *   8. the edge's own hop straight to the catalog: unary binary Connect over
 *      HTTP/1.1 with the edge's client (2 connections × 32 pipelined)
 *
 * HTTP/1.1 loads: autocannon, 50 connections. HTTP/2 loads: a raw node:http2
 * gRPC driver with 50 calls in flight over 2 connections. Every server runs in
 * its own process. The catalog is services/catalog/main.ts in a throw-away
 * schema, Redis key prefix, event domain and stream; the product is created
 * through its CreateProduct RPC (admin token signed by a JWKS this process
 * serves) and read once so every measured GetProduct is a cache hit, which the
 * catalog's own cache metrics confirm per scenario. Edge and catalog log at
 * warn (no access log line per request); the edge's rate limiting is ON
 * (tokens leased from the Redis bucket in blocks) with limits above the load.
 * The baselines answer the JSON the edge answers, byte for byte (checked
 * before measuring).
 *
 * Scenarios 1, 2 and 4 run `--rounds` times (the machine's speed drifts
 * within minutes): each round runs raw, fastify, REST via edge, fastify, raw
 * and compares the edge with the mean of the baseline runs around it, which
 * cancels a steady drift; the median round is reported.
 *
 *   npx tsx bench/edge-rest.ts [--seconds 8] [--warmup 2] [--rounds 3] [--connections 50]
 *                              [--runtime dist|tsx] [--only rest|catalog]
 *
 * `--runtime dist` (default) runs the edge and the catalog as their images do
 * (`node dist/services/<name>/main.js`, built with `npm run build` first);
 * `--runtime tsx` runs them from source through tsx, whose keep-names helper
 * adds a property definition per closure created on the hot path.
 *
 * `--only rest` runs just the REST-via-edge scenario after the baselines'
 * servers started, `--only catalog` just scenario 8 (for profiling or
 * comparing one path; NODE_OPTIONS reaches every child).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { cpSync, existsSync, readdirSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect as connectNats } from "@nats-io/transport-node";
import autocannon from "autocannon";
import { Redis } from "ioredis";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import postgres from "postgres";
import {
  CatalogService,
  GetProductRequestSchema,
  GetProductResponseSchema,
} from "../gen/commerce/catalog/v1/catalog_service_pb.js";
import { DEFAULT_AUDIENCE, DEFAULT_ISSUER } from "../platform/auth/auth-config.js";
import { ACCESS_TOKEN_TYPE } from "../platform/auth/token-verifier.js";
import { createConnectHttp1Transport } from "../platform/clients/connect-http1-transport.js";
import { procCpuMicros } from "./proc-cpu.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    warmup: { type: "string", default: "2" },
    connections: { type: "string", default: "50" },
    only: { type: "string" },
    runtime: { type: "string", default: "dist" },
    rounds: { type: "string", default: "3" },
  },
});
const SECONDS = Number(values.seconds);
const WARMUP = Number(values.warmup);
const CONNECTIONS = Number(values.connections);
const ROUNDS = Math.max(1, Number(values.rounds));
const PG_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const NATS_URL = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const runId = randomBytes(4).toString("hex");
const redisPrefix = `bench:edge:${runId}:`;
const jsonPrefix = `${redisPrefix}json:`;
const schema = `bench_edge_${runId}`;
const eventDomain = `benchedge${runId}`;
const stream = `BENCH_EDGE_${runId}`;
const log = (line: string) => process.stdout.write(`${line}\n`);
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

interface Result {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU µs per request spent in each server process (contention-proof cost). */
  cpu?: Record<string, number>;
  /** Catalog cache lookups during the scenario (GetProduct calls it served, hits, misses). */
  cache?: { rpcs: number; hits: number; misses: number };
}

/** Two runs of one scenario as one: mean rate, latency and CPU; errors summed. */
function meanOf(a: Result, b: Result): Result {
  const mean = (x: number, y: number) => (x + y) / 2;
  const cpu: Record<string, number> = {};
  for (const who of Object.keys(a.cpu ?? {}))
    cpu[who] = mean(a.cpu![who]!, b.cpu?.[who] ?? a.cpu![who]!);
  return {
    name: a.name,
    rps: mean(a.rps, b.rps),
    p50: mean(a.p50, b.p50),
    p99: mean(a.p99, b.p99),
    errors: a.errors + b.errors,
    ...(a.cpu ? { cpu } : {}),
  };
}

const cpuMs = (pid: number) => procCpuMicros(pid) / 1000;

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

function track(name: string, child: ChildProcess) {
  children.push(child);
  servers.set(name, child.pid!);
}

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
  track(mode, child);
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

const DIST = values.runtime !== "tsx";

/** A mesh service's real entry point as its own process; resolves when /readyz answers. */
async function startService(name: string, env: Record<string, string>): Promise<string> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const entry = DIST
    ? [new URL(`../dist/services/${name}/main.js`, import.meta.url).pathname]
    : ["--import", "tsx", new URL(`../services/${name}/main.ts`, import.meta.url).pathname];
  const child = spawn(process.execPath, entry, {
    env: { ...process.env, ...env, PORT: String(port), SHUTDOWN_GRACE_MS: "1000" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  track(name, child);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) return url;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${name} did not become ready`);
}

/** The real catalog service, isolated for this run. */
function startCatalog(jwksUrl: string): Promise<string> {
  return startService("catalog", {
    DATABASE_URL: PG_URL,
    DB_SCHEMA: schema,
    DATABASE_POOL_MAX: "4",
    REDIS_URL,
    NATS_URL,
    REDIS_KEY_PREFIX: `${redisPrefix}catalog:`,
    CATALOG_EVENT_DOMAIN: eventDomain,
    CATALOG_EVENT_STREAM: stream,
    CATALOG_STREAM_MAX_BYTES: String(64 * 1024 * 1024),
    // Longer than any run, so no measured call can miss on expiry.
    CATALOG_CACHE_TTL_SECONDS: "3600",
    PAGE_TOKEN_SECRET: `bench-edge-${runId}-page-token-secret`,
    AUTH_JWKS_URL: jwksUrl,
    LOG_LEVEL: "warn",
  });
}

/** Serves a JWKS for the catalog and signs the admin token CreateProduct needs. */
async function adminAuth(): Promise<{ jwksUrl: string; token: string; close(): void }> {
  const { publicKey, privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const kid = randomBytes(6).toString("hex");
  const jwks = JSON.stringify({
    keys: [{ ...(await exportJWK(publicKey)), kid, alg: "EdDSA", use: "sig" }],
  });
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(jwks);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  const token = await new SignJWT({ roles: ["admin"] })
    .setProtectedHeader({ alg: "EdDSA", typ: ACCESS_TOKEN_TYPE, kid })
    .setIssuer(DEFAULT_ISSUER)
    .setAudience(DEFAULT_AUDIENCE)
    .setSubject(randomUUID())
    .setIssuedAt()
    .setExpirationTime("1h")
    .sign(privateKey);
  return { jwksUrl: `http://127.0.0.1:${port}/jwks.json`, token, close: () => server.close() };
}

/** Sum of the catalog's counter samples whose name and labels contain every fragment. */
function metric(text: string, name: string, ...fragments: string[]): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) && fragments.every((f) => line.includes(f))) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return sum;
}

async function cacheCounters(catalogUrl: string) {
  const text = await (await fetch(`${catalogUrl}/metrics`)).text();
  return {
    rpcs: metric(text, "rpc_server_duration_seconds_count", 'rpc_method="GetProduct"'),
    hits: metric(text, "cache_requests_total", 'cache="product"', 'result="hit"'),
    misses:
      metric(text, "cache_requests_total", 'cache="product"', 'result="miss"') +
      metric(text, "cache_requests_total", 'cache="product"', 'result="bypass"'),
  };
}

/** Records the catalog's GetProduct and cache counters around a scenario. */
async function withCache(catalogUrl: string, run: () => Promise<Result>): Promise<Result> {
  const before = await cacheCounters(catalogUrl);
  const result = await run();
  const after = await cacheCounters(catalogUrl);
  result.cache = {
    rpcs: after.rpcs - before.rpcs,
    hits: after.hits - before.hits,
    misses: after.misses - before.misses,
  };
  return result;
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

/**
 * CONNECTIONS workers each calling `call` back to back (the warm-up, then the
 * measured SECONDS); `call(worker)` resolves false for a failed call.
 */
async function closedLoop(
  name: string,
  call: (worker: number) => Promise<boolean>,
): Promise<Result> {
  const drive = async (seconds: number) => {
    const latencies: number[] = [];
    let errors = 0;
    const deadline = performance.now() + seconds * 1000;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async (_, worker) => {
        while (performance.now() < deadline) {
          const t0 = performance.now();
          const ok = await call(worker);
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
  if (WARMUP > 0) await drive(WARMUP);
  return drive(SECONDS);
}

/** Closed-loop gRPC unary driver over raw HTTP/2: CONNECTIONS calls in flight. */
async function grpcLoad(name: string, port: number, productId: string): Promise<Result> {
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
  try {
    return await closedLoop(name, (i) => call(sessions[i % sessions.length]!));
  } finally {
    for (const s of sessions) s.close();
  }
}

/** Closed loop over the edge's own upstream client: CONNECTIONS calls in flight. */
async function connectHop(name: string, url: string, productId: string): Promise<Result> {
  const transport = createConnectHttp1Transport({
    baseUrl: url,
    maxMessageBytes: 4 * 1024 * 1024,
    connections: 2,
    maxPipeline: 32,
    fallback: createConnectTransport({ baseUrl: url, httpVersion: "1.1" }),
  });
  const client = createClient(CatalogService, transport);
  try {
    return await closedLoop(name, () =>
      client.getProduct({ id: productId }, { timeoutMs: 5_000 }).then(
        () => true,
        () => false,
      ),
    );
  } finally {
    transport.close();
  }
}

async function main() {
  log(`edge-rest bench ${runId}: load average at start ${load()}`);
  if (DIST) {
    log("building dist/ (npm run build) so the services run as their images run them");
    execFileSync("npm", ["run", "--silent", "build"], { stdio: "inherit" });
    // As deploy/Dockerfile does: migrations sit next to each compiled main.js.
    for (const service of readdirSync(new URL("../services/", import.meta.url))) {
      const from = new URL(`../services/${service}/migrations/`, import.meta.url);
      if (existsSync(from)) {
        cpSync(from, new URL(`../dist/services/${service}/migrations/`, import.meta.url), {
          recursive: true,
        });
      }
    }
  }
  const redis = new Redis(REDIS_URL);
  const auth = await adminAuth();
  const catalogUrl = await startCatalog(auth.jwksUrl);
  const catalogPort = Number(new URL(catalogUrl).port);

  // The product goes in through the catalog's API (as an admin would add it);
  // one read then fills the catalog's Redis cache.
  const catalog = createClient(
    CatalogService,
    createGrpcTransport({
      baseUrl: catalogUrl,
      interceptors: [
        (next) => (req) => {
          req.header.set("authorization", `Bearer ${auth.token}`);
          return next(req);
        },
      ],
    }),
  );
  const { category } = await catalog.createCategory({
    category: { slug: `bench-${runId}`, name: "Coffee grinders" },
  });
  const { product } = await catalog.createProduct({
    product: {
      sku: `SKU-BENCH-${runId}`,
      name: "Benchmark espresso grinder",
      description: "Conical burr grinder with 40 settings, 250 g hopper and a stepless dial.",
      price: { amountMinor: 24900n, currencyCode: "EUR" },
      categoryId: category!.id,
      attributes: { color: "black", weight: "2.1kg" },
      active: true,
    },
  });
  const productId = product!.id;
  auth.close();
  const beforeFill = await cacheCounters(catalogUrl);
  const fetched = await catalog.getProduct({ id: productId });
  const afterFill = await cacheCounters(catalogUrl);
  if (afterFill.misses - beforeFill.misses !== 1) {
    throw new Error("the first GetProduct was expected to miss the cache and fill it");
  }
  // What the edge's transcoder must produce (proto3 JSON, implicit values
  // emitted): the body the single-process baselines serve from Redis.
  const json = toJsonString(GetProductResponseSchema, fetched, { alwaysEmitImplicit: true });
  await redis.set(`${jsonPrefix}${productId}`, json);

  const unlimited = { ratePerSecond: 1e7, burst: 1e7 };
  const rawPort = await start("raw", []);
  const fastifyPort = await start("fastify", [jsonPrefix]);
  const nodePort = await start("node", [jsonPrefix]);
  const edgeUrl = await startService("edge", {
    CATALOG_URL: catalogUrl,
    REDIS_URL,
    LOG_LEVEL: "warn",
    EDGE_RATE_LIMIT_PREFIX: `${redisPrefix}rl:`,
    EDGE_RATE_LIMITS: JSON.stringify({
      read: { anonymous: unlimited, user: unlimited },
      write: { anonymous: unlimited, user: unlimited },
      auth: { anonymous: unlimited, user: unlimited },
    }),
  });
  const edgePort = Number(new URL(edgeUrl).port);

  // The edge must answer exactly what the single-process handlers answer.
  const bodies = new Map<string, string>();
  for (const [who, port] of [
    ["edge", edgePort],
    ["fastify", fastifyPort],
    ["node", nodePort],
  ] as const) {
    const res = await fetch(`http://127.0.0.1:${port}/v1/products/${productId}`);
    const body = await res.text();
    if (res.status !== 200) throw new Error(`${who} answered ${res.status} ${body.slice(0, 300)}`);
    bodies.set(who, body);
  }
  if (
    bodies.get("edge") !== json ||
    bodies.get("fastify") !== json ||
    bodies.get("node") !== json
  ) {
    throw new Error(
      `bodies differ:\nexpected ${json}\n${[...bodies].map(([w, b]) => `${w} ${b}`).join("\n")}`,
    );
  }
  log(
    `product ${productId}: ${json.length} bytes of JSON, identical from edge, fastify, node:http`,
  );

  // CPU is read around the whole run (warm-up included) and divided by the
  // requests of the whole run, estimated from the measured rate.
  const withWarmup = (r: Result) => r.rps * (SECONDS + WARMUP);
  const viaEdge = ["edge", "catalog"];
  const restViaEdge = () =>
    withCache(catalogUrl, () =>
      withCpu(
        () =>
          cannon("REST GET via edge → catalog", {
            url: `http://127.0.0.1:${edgePort}/v1/products/${productId}`,
          }),
        withWarmup,
        viaEdge,
      ),
    );
  const catalogHop = () =>
    withCache(catalogUrl, () =>
      withCpu(
        () => connectHop("Connect binary (h1) direct to catalog", catalogUrl, productId),
        withWarmup,
        ["catalog"],
      ),
    );
  if (values.only === "catalog") {
    const r = await catalogHop();
    log(
      `${r.name}: ${r.rps.toFixed(0)} calls/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.errors} errors, catalog CPU ${r.cpu?.catalog?.toFixed(1)} µs/call`,
    );
    redis.disconnect();
    return;
  }
  if (values.only === "rest") {
    const r = await restViaEdge();
    const cpu = Object.entries(r.cpu ?? {}).map(([who, us]) => `${who} ${us.toFixed(0)}`);
    log(
      `${r.name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, ${r.errors} errors, CPU µs/request ${cpu.join(", ")}`,
    );
    redis.disconnect();
    return;
  }
  // The machine's speed drifts by tens of percent within minutes, so the
  // target scenarios run in rounds, back to back, and each round gives its
  // own ratios; the median round is reported. Within a round the baselines
  // run before and after the edge (raw, fastify, REST, fastify, raw) and the
  // edge is compared with their mean, which cancels a steady drift.
  const rawRun = () =>
    withCpu(
      () => cannon("raw node:http hello", { url: `http://127.0.0.1:${rawPort}/` }),
      withWarmup,
      ["raw"],
    );
  const fastifyRun = () =>
    withCpu(
      () =>
        cannon("single process fastify+ioredis", {
          url: `http://127.0.0.1:${fastifyPort}/v1/products/${productId}`,
        }),
      withWarmup,
      ["fastify"],
    );
  const rounds: { raw: Result; fastify: Result; rest: Result }[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const rawBefore = await rawRun();
    const fastifyBefore = await fastifyRun();
    const rest = await restViaEdge();
    const fastifyAfter = await fastifyRun();
    const rawAfter = await rawRun();
    const raw = meanOf(rawBefore, rawAfter);
    const fastify = meanOf(fastifyBefore, fastifyAfter);
    rounds.push({ raw, fastify, rest });
    log(
      `round ${round + 1}/${ROUNDS}: raw ${rawBefore.rps.toFixed(0)}/${rawAfter.rps.toFixed(0)}, fastify ${fastifyBefore.rps.toFixed(0)}/${fastifyAfter.rps.toFixed(0)} (before/after), REST via edge ${rest.rps.toFixed(0)} req/s → ÷raw ${(rest.rps / raw.rps).toFixed(3)}, ÷fastify ${(rest.rps / fastify.rps).toFixed(3)} (load ${load()})`,
    );
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[(values.length - 1) >> 1]!;
  const ratioRaw = rounds.map(({ raw, rest }) => rest.rps / raw.rps);
  const ratioFastify = rounds.map(({ fastify, rest }) => rest.rps / fastify.rps);
  const medianRound = rounds[ratioFastify.indexOf(median(ratioFastify))]!;
  // Reference only (what fastify itself costs over node:http), measured once.
  const node = await withCpu(
    () =>
      cannon("(ref) node:http+ioredis", {
        url: `http://127.0.0.1:${nodePort}/v1/products/${productId}`,
      }),
    withWarmup,
    ["node"],
  );
  const results: Result[] = [medianRound.raw, medianRound.fastify, node, medianRound.rest];
  results.push(
    await withCache(catalogUrl, () =>
      withCpu(
        () =>
          cannon("Connect JSON (h1) via edge", {
            url: `http://127.0.0.1:${edgePort}/commerce.catalog.v1.CatalogService/GetProduct`,
            method: "POST",
            headers: { "content-type": "application/json", "connect-protocol-version": "1" },
            body: JSON.stringify({ id: productId }),
          }),
        withWarmup,
        viaEdge,
      ),
    ),
  );
  results.push(
    await withCache(catalogUrl, () =>
      withCpu(() => grpcLoad("gRPC (h2) via edge", edgePort, productId), withWarmup, viaEdge),
    ),
  );
  results.push(
    await withCache(catalogUrl, () =>
      withCpu(() => grpcLoad("gRPC (h2) direct to catalog", catalogPort, productId), withWarmup, [
        "catalog",
      ]),
    ),
  );

  results.push(await catalogHop());

  const raw = results[0]!.rps;
  const single = results[1]!.rps;
  log("");
  log(
    `edge read path, ${CONNECTIONS} connections, ${SECONDS}s per run (warm-up ${WARMUP}s); rows 1, 2 and 4: the median round of ${ROUNDS} (baselines: mean of the runs before and after)`,
  );
  log(
    `${"scenario".padEnd(32)} ${"req/s".padStart(8)} ${"p50 ms".padStart(7)} ${"p99 ms".padStart(7)} ${"errors".padStart(6)} ${"÷raw".padStart(6)} ${"÷fastify".padStart(8)}  ${"cache hits".padEnd(24)}  CPU µs/request`,
  );
  for (const r of results) {
    const cpu = Object.entries(r.cpu ?? {})
      .map(([who, us]) => `${who} ${us.toFixed(0)}`)
      .join(", ");
    const cache = r.cache
      ? `${((100 * r.cache.hits) / Math.max(1, r.cache.hits + r.cache.misses)).toFixed(1)}% (${r.cache.hits}/${r.cache.hits + r.cache.misses}, ${r.cache.rpcs} rpcs)`
      : "";
    log(
      `${r.name.padEnd(32)} ${r.rps.toFixed(0).padStart(8)} ${r.p50.toFixed(2).padStart(7)} ${r.p99.toFixed(2).padStart(7)} ${String(r.errors).padStart(6)} ${(r.rps / raw).toFixed(3).padStart(6)} ${(r.rps / single).toFixed(3).padStart(8)}  ${cache.padEnd(24)}  ${cpu}`,
    );
  }
  const misses = results.reduce((n, r) => n + (r.cache?.misses ?? 0), 0);
  if (misses > 0) log(`WARNING: ${misses} catalog cache lookups missed during the measured runs`);
  const list = (values: number[]) => values.map((v) => v.toFixed(3)).join(", ");
  log("");
  log(
    `targets (median of ${ROUNDS} rounds, each against the mean of the baseline runs before and after it): REST via edge ≥ 0.25 × raw: ${median(ratioRaw).toFixed(3)} [${list(ratioRaw)}]; ≥ 0.4 × single process fastify: ${median(ratioFastify).toFixed(3)} [${list(ratioFastify)}]`,
  );
  log(`load average at end ${load()}`);
  redis.disconnect();
}

async function cleanup() {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
          child.once("exit", () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill("SIGTERM");
        }),
    ),
  );
  const sql = postgres(PG_URL, { max: 1, onnotice: () => {} });
  await sql.unsafe(`drop schema if exists "${schema}" cascade`).catch(() => {});
  await sql.end();
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${redisPrefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  // Deleting the stream deletes the consumers the catalog made on it.
  const nc = await connectNats({ servers: NATS_URL });
  await (await jetstreamManager(nc)).streams.delete(stream).catch(() => {});
  await nc.close();
}

try {
  await main();
} finally {
  await cleanup();
}
