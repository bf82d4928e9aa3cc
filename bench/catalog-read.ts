/**
 * Catalog read path and bulk import at 100k products, with ceilings measured
 * in the same run:
 *   - import of a generated 100k-row feed: rows/s, total seconds;
 *   - SearchProducts: p50/p95/p99 and req/s (client-side, stock grpc-js client),
 *     plus the service-side p95 from its own RPC histogram;
 *   - GetProduct cache hit vs cache miss: latency and req/s;
 *   - ceilings: `pgbench -S` (select-only, scratch database) and
 *     `redis-benchmark -t get`; ratios printed against them.
 *
 *   npx tsx bench/catalog-read.ts [--products 100000] [--seconds 8] [--concurrency 16]
 *
 * The service runs as its own process (`services/catalog/main.ts`) in a
 * throw-away schema; the bulk load's outbox rows are marked sent before the
 * read phases so the relay does not compete with them.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { DescMethod } from "@bufbuild/protobuf";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect as connectNats } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { CatalogService } from "../gen/commerce/catalog/v1/catalog_service_pb.js";
import { createDatabase, migrateDatabase } from "../platform/db/postgres.js";
import { createGrpcJsClient, grpcUnary } from "../platform/testing/grpc-js-client.js";
import { createCatalogEvents } from "../services/catalog/events/catalog-events.js";
import { ensureCategories } from "../services/catalog/import/demo-categories.js";
import { generateFeedFile } from "../services/catalog/import/generate-cli.js";
import { importFeed } from "../services/catalog/import/importer.js";

const { values } = parseArgs({
  options: {
    products: { type: "string", default: "100000" },
    seconds: { type: "string", default: "8" },
    concurrency: { type: "string", default: "16" },
  },
});
const PRODUCTS = Number(values.products);
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
const PG_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const NATS_URL = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const id = randomBytes(4).toString("hex");
const schema = `bench_catalog_${id}`;
const keyPrefix = `bench:catalog:${id}:`;
const stream = `BENCH_CAT_${id}`;
const log = (line: string) => process.stdout.write(`${line}\n`);

interface Stats {
  name: string;
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Closed loop: CONCURRENCY callers, each issuing the next request when the last one returns. */
async function drive(
  name: string,
  call: (i: number) => Promise<unknown>,
  concurrency = CONCURRENCY,
): Promise<Stats> {
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const i = next++;
        const t0 = performance.now();
        try {
          await call(i);
          latencies.push(performance.now() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    name,
    requests: latencies.length,
    errors,
    rps: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

async function waitReady(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`catalog exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("catalog did not become ready");
}

type Buckets = { le: string; count: number }[];

/** Cumulative RPC histogram buckets of one method (successful calls). */
async function histogram(url: string, method: string): Promise<Buckets> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split("\n")
    .filter(
      (l) =>
        l.startsWith("rpc_server_duration_seconds_bucket") &&
        l.includes(`rpc_method="${method}"`) &&
        l.includes('rpc_grpc_status_code="0"'),
    )
    .map((l) => ({ le: l.match(/le="([^"]+)"/)![1]!, count: Number(l.split(" ").pop()) }));
}

/**
 * Service-side p95 (histogram bucket upper bound) of the calls made between
 * two snapshots, so each phase is judged on its own calls.
 */
function serverP95(after: Buckets, before: Buckets = []): string {
  const buckets = after.map((b) => ({
    le: b.le,
    count: b.count - (before.find((x) => x.le === b.le)?.count ?? 0),
  }));
  const total = buckets.find((b) => b.le === "+Inf")?.count ?? 0;
  const bucket = buckets.find((b) => b.count >= 0.95 * total);
  return bucket && total > 0 ? `≤ ${(Number(bucket.le) * 1000).toString()} ms` : "n/a";
}

function pgbenchCeiling(): number {
  const db = `bench_pgbench_${id}`;
  const base = ["-h", "127.0.0.1", "-U", "postgres"];
  execFileSync("createdb", [...base, db]);
  try {
    execFileSync("pgbench", [...base, "-i", "-q", "-s", "10", db], { stdio: "ignore" });
    const out = execFileSync(
      "pgbench",
      [...base, "-S", "-n", "-c", String(CONCURRENCY), "-j", "2", "-T", String(SECONDS), db],
      {
        encoding: "utf8",
      },
    );
    return Number(out.match(/tps = ([\d.]+)/)?.[1] ?? Number.NaN);
  } finally {
    execFileSync("dropdb", [...base, db]);
  }
}

function redisCeiling(): number {
  const url = new URL(REDIS_URL);
  const out = execFileSync(
    "redis-benchmark",
    [
      "-h",
      url.hostname,
      "-p",
      url.port || "6379",
      "-t",
      "get",
      "-n",
      "200000",
      "-c",
      String(CONCURRENCY),
      "-q",
    ],
    { encoding: "utf8" },
  );
  const lines = out.split(/[\r\n]/).filter((l) => l.includes("requests per second"));
  return Number(lines.pop()?.match(/([\d.]+) requests per second/)?.[1] ?? Number.NaN);
}

const SEARCHES: [string, boolean][] = [
  ["kettle", false],
  ["copper kettle", false],
  ["trail running shoe", false],
  ["oak desk", false],
  ["wireless headphones", false],
  ["ultralight tent", false],
  ["merino shirt", false],
  ["lapt", true],
  ["espresso mach", true],
  ["garden ho", true],
];

async function main() {
  log(
    `catalog-read bench: ${PRODUCTS} products, ${SECONDS}s per phase, concurrency ${CONCURRENCY}, load avg ${(
      await import("node:os")
    )
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
  );
  const migrations = new URL("../services/catalog/migrations/", import.meta.url).pathname;
  await migrateDatabase({ url: PG_URL, schema }, migrations);
  const db = createDatabase({ url: PG_URL, schema, maxConnections: 4 });
  const feed = join(tmpdir(), `catalog-bench-${id}.ndjson`);
  let child: ChildProcess | undefined;
  const redis = new Redis(REDIS_URL);
  try {
    await ensureCategories(db.sql);
    await generateFeedFile({ count: PRODUCTS, out: feed, seed: 7, format: "ndjson" });
    const report = await importFeed({
      sql: db.sql,
      events: createCatalogEvents(`benchcat${id}`),
      eventDomain: `benchcat${id}`,
      path: feed,
      format: "ndjson",
      rejectsPath: `${feed}.rejects`,
    });
    log(
      `import ${report.inserted} rows: ${report.seconds.toFixed(1)} s total, ${Math.round(report.rowsPerSecond)} rows/s (target ≤ 20 s)`,
    );
    const rerun = await importFeed({
      sql: db.sql,
      events: createCatalogEvents(`benchcat${id}`),
      eventDomain: `benchcat${id}`,
      path: feed,
      format: "ndjson",
      rejectsPath: `${feed}.rejects`,
    });
    log(
      `re-import (no changes): ${rerun.seconds.toFixed(1)} s, ${Math.round(rerun.rowsPerSecond)} rows/s, unchanged ${rerun.unchanged}`,
    );
    await db.sql`update outbox set sent_at = now() where sent_at is null`;
    // What autovacuum does after a bulk load: flush the GIN pending list, refresh statistics.
    await db.sql`vacuum analyze products`;
    await db.sql`analyze`;

    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, ["--import", "tsx", "services/catalog/main.ts"], {
      env: {
        ...process.env,
        PORT: String(port),
        DATABASE_URL: PG_URL,
        DB_SCHEMA: schema,
        REDIS_URL,
        NATS_URL,
        REDIS_KEY_PREFIX: keyPrefix,
        CATALOG_EVENT_DOMAIN: `benchcat${id}`,
        CATALOG_EVENT_STREAM: stream,
        CATALOG_STREAM_MAX_BYTES: String(64 * 1024 * 1024),
        LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "ignore", "inherit"],
    });
    await waitReady(url, child);
    const client = createGrpcJsClient(`127.0.0.1:${port}`);
    const ids = (await db.sql<{ id: string }[]>`select id from products order by random()`).map(
      (r) => r.id,
    );
    const method = (name: string) =>
      CatalogService.method[name as keyof typeof CatalogService.method] as DescMethod;

    // Warm-up (JIT, connections, prepared statements).
    await drive("warm-up", (i) =>
      grpcUnary(client, method("searchProducts") as never, {
        query: SEARCHES[i % SEARCHES.length]![0],
      }),
    );

    const searchCall = (i: number) => {
      const [query, prefix] = SEARCHES[i % SEARCHES.length]!;
      return grpcUnary(client, method("searchProducts") as never, { query, prefix, pageSize: 20 });
    };
    // Latency of one search at a time (the "p95 at the service" target), then
    // throughput at CONCURRENCY, where a 2-core box queues requests.
    const beforeSerial = await histogram(url, "SearchProducts");
    const searchSerial = await drive("SearchProducts (1 at a time)", searchCall, 1);
    const afterSerial = await histogram(url, "SearchProducts");
    const search = await drive(`SearchProducts (${CONCURRENCY} at a time)`, searchCall);
    const afterSearch = await histogram(url, "SearchProducts");
    const hot = ids.slice(0, 1000);
    for (const hid of hot) await grpcUnary(client, method("getProduct") as never, { id: hid });
    const hit = await drive("GetProduct (cache hit)", (i) =>
      grpcUnary(client, method("getProduct") as never, { id: hot[i % hot.length]! }),
    );
    const cold = ids.slice(1000);
    const miss = await drive("GetProduct (cache miss)", (i) =>
      grpcUnary(client, method("getProduct") as never, { id: cold[i % cold.length]! }),
    );
    if (miss.requests > cold.length)
      log("note: more miss requests than cold ids; later ones were hits");
    const list = await drive("ListProducts (page 50)", () =>
      grpcUnary(client, method("listProducts") as never, { pageSize: 50 }),
    );
    const searchSerialServer = serverP95(afterSerial, beforeSerial);
    const searchServer = serverP95(afterSearch, afterSerial);
    const getServer = serverP95(await histogram(url, "GetProduct"));
    client.close();

    log("measuring ceilings (pgbench -S, redis-benchmark -t get) ...");
    const pgTps = pgbenchCeiling();
    const redisRps = redisCeiling();

    const row = (s: Stats) =>
      `${s.name.padEnd(30)} ${s.rps.toFixed(0).padStart(7)} req/s   p50 ${s.p50.toFixed(2).padStart(6)} ms   p95 ${s.p95.toFixed(2).padStart(6)} ms   p99 ${s.p99.toFixed(2).padStart(6)} ms   errors ${s.errors}`;
    log("");
    for (const s of [searchSerial, search, hit, miss, list]) log(row(s));
    log(
      `service-side p95 (histogram bucket): SearchProducts 1 at a time ${searchSerialServer} (target < 5 ms), ` +
        `${CONCURRENCY} at a time ${searchServer}; GetProduct ${getServer}`,
    );
    log(`ceiling pgbench -S              ${pgTps.toFixed(0).padStart(7)} tps`);
    log(`ceiling redis-benchmark GET     ${redisRps.toFixed(0).padStart(7)} req/s`);
    log(
      `ratios: search / pgbench-S ${(search.rps / pgTps).toFixed(3)}, get-miss / pgbench-S ${(miss.rps / pgTps).toFixed(3)}, ` +
        `get-hit / redis GET ${(hit.rps / redisRps).toFixed(3)}, get-hit / get-miss ${(hit.rps / miss.rps).toFixed(2)}x`,
    );
  } finally {
    if (child && child.exitCode === null) {
      child.kill("SIGTERM");
      await new Promise((r) => child!.once("exit", r));
    }
    await db.sql.unsafe(`drop schema if exists "${schema}" cascade`).catch(() => {});
    await db.close();
    const keys = await redis.keys(`${keyPrefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    const nc = await connectNats({ servers: NATS_URL });
    await (await jetstreamManager(nc)).streams.delete(stream).catch(() => {});
    await nc.close();
    await rm(feed, { force: true });
    await rm(`${feed}.rejects`, { force: true });
  }
}

await main();
