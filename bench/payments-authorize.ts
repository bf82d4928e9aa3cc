/**
 * Payments Authorize throughput and latency through the real service (its own
 * process, as deployed: migrations, access policy with a service token,
 * outbox relay to JetStream), driven by a stock grpc-js client; the sandbox
 * provider approves instantly, so the figures are the service's own cost.
 * Baselines from the same run and the same Postgres: `pgbench -S` (PK
 * select, the read ceiling) and `pgbench -N` (simple updates, a write
 * ceiling) on a scratch database.
 *
 *   npx tsx bench/payments-authorize.ts [--seconds 10] [--concurrency 32] [--clients 32]
 *
 * Each Authorize is a fresh payment: 1 statement to claim the key and create
 * the payment, then 1 transaction (finish statement + outbox append + commit).
 */
import { execFileSync, fork } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import net from "node:net";
import { createHistogram } from "node:perf_hooks";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import postgres from "postgres";
import { PaymentService } from "../gen/commerce/payments/v1/payment_service_pb.js";
import { DEFAULT_AUDIENCE, DEFAULT_SERVICE_ISSUER } from "../platform/auth/auth-config.js";
import { createServiceTokenSource } from "../platform/auth/service-tokens.js";
import { createGrpcJsClient, grpcUnary } from "../platform/testing/grpc-js-client.js";
import { procCpuMicros } from "./proc-cpu.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    concurrency: { type: "string", default: "32" },
    clients: { type: "string", default: "32" },
    "database-url": {
      type: "string",
      default: process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test",
    },
    "nats-url": { type: "string", default: process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222" },
  },
});
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);
const pgClients = Number(values.clients);
const databaseUrl = values["database-url"]!;
const natsUrl = values["nats-url"]!;

const id = randomBytes(4).toString("hex");
const domain = `bench_pay_${id}`;
const scratchDb = `bench_pgbench_${id}`;
const serviceTokenSecret = randomBytes(32).toString("hex");

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const cpuMsOf = (pid: number) => procCpuMicros(pid) / 1000;

interface Result {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  cpuUsPerCall: number | undefined;
  errors: number;
}

async function drive(name: string, pid: number, call: () => Promise<unknown>): Promise<Result> {
  const warmUntil = Date.now() + 2000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < warmUntil) await call().catch(() => {});
    }),
  );
  const histogram = createHistogram();
  let done = 0;
  let errors = 0;
  let firstError: unknown;
  const cpuBefore = cpuMsOf(pid);
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
        } catch (error) {
          firstError ??= error;
          errors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const cpu = cpuMsOf(pid) - cpuBefore;
  if (firstError) console.error(`${name}: first error:`, (firstError as Error).message);
  return {
    name,
    rps: done / elapsed,
    p50: histogram.percentile(50) / 1000,
    p99: histogram.percentile(99) / 1000,
    cpuUsPerCall: (cpu * 1000) / Math.max(1, done),
    errors,
  };
}

function pgbench(args: string[], label: string): Result {
  const out = execFileSync("pgbench", [...args, "-h", "127.0.0.1", "-U", "postgres", scratchDb], {
    stdio: ["ignore", "pipe", "pipe"],
  }).toString();
  const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
  const avg = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1] ?? Number.NaN);
  return { name: label, rps: tps, p50: avg, p99: Number.NaN, cpuUsPerCall: undefined, errors: 0 };
}

const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });

interface RunningPayments {
  pid: number;
  client: grpc.Client;
  metadata: grpc.Metadata;
  schema: string;
  stream: string;
  /** Waits until every event written is published; returns the wait in ms. */
  drain(): Promise<{ ms: number; events: number }>;
  stop(): Promise<void>;
}

/** The service as deployed: its own process, main.ts, production-like logging. */
async function startPayments(label: string, env: Record<string, string>): Promise<RunningPayments> {
  const schema = `bench_payments_${id}_${label}`;
  const stream = `BENCH_PAY_${id}_${label.toUpperCase()}`;
  const port = await freePort();
  const child = fork(new URL("../services/payments/main.ts", import.meta.url), [], {
    execArgv: [
      "--import",
      "tsx",
      // BENCH_CPU_PROF=<dir> writes a V8 CPU profile of the service on exit.
      ...(process.env.BENCH_CPU_PROF
        ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`]
        : []),
    ],
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    env: {
      ...process.env,
      PORT: String(port),
      DATABASE_URL: databaseUrl,
      DB_SCHEMA: schema,
      NATS_URL: natsUrl,
      LOG_LEVEL: "info",
      SERVICE_TOKEN_SECRET: serviceTokenSecret,
      PAYMENTS_EVENTS_DOMAIN: `${domain}_${label}`,
      PAYMENTS_EVENTS_STREAM: stream,
      ...env,
    },
  });
  for (let i = 0; ; i++) {
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ready) break;
    if (i > 300 || child.exitCode !== null) throw new Error("payments did not become ready");
    await new Promise((r) => setTimeout(r, 100));
  }
  const token = await createServiceTokenSource({
    service: "bench",
    secret: new TextEncoder().encode(serviceTokenSecret),
    issuer: DEFAULT_SERVICE_ISSUER,
    audience: DEFAULT_AUDIENCE,
    ttlSec: 3600,
  }).token();
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  const client = createGrpcJsClient(`127.0.0.1:${port}`);
  return {
    pid: child.pid!,
    client,
    metadata,
    schema,
    stream,
    async drain() {
      const sql = postgres(databaseUrl, { max: 1, connection: { search_path: schema } });
      const t0 = performance.now();
      for (;;) {
        const [row] = await sql`select count(*)::int as n from outbox where sent_at is null`;
        if (row!.n === 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const ms = performance.now() - t0;
      const [all] = await sql`select count(*)::int as n from outbox`;
      await sql.end();
      return { ms, events: all!.n };
    },
    async stop() {
      client.close();
      child.kill("SIGTERM");
      if (child.exitCode === null) await new Promise((r) => child.once("exit", r));
      await admin.unsafe(`drop schema if exists "${schema}" cascade`);
      const nc = await connect({ servers: natsUrl });
      await (await jetstreamManager(nc)).streams.delete(stream).catch(() => {});
      await nc.close();
    },
  };
}

function authorizeCall(p: RunningPayments, orderId = randomUUID()) {
  return grpcUnary(
    p.client,
    PaymentService.method.authorize,
    {
      idempotencyKey: `order:${orderId}:authorize`,
      orderId,
      amount: { amountMinor: 1999n, currencyCode: "EUR" },
      paymentMethodToken: "tok_approve",
    },
    { deadlineMs: 5000, metadata: p.metadata },
  );
}

const results: Result[] = [];
const drains: string[] = [];

const notifying = await startPayments("notify", {});
try {
  results.push(
    await drive("Authorize, outbox NOTIFY on (default)", notifying.pid, () =>
      authorizeCall(notifying),
    ),
  );
  const drained = await notifying.drain();
  drains.push(
    `NOTIFY on: ${drained.events} events, outbox empty ${drained.ms.toFixed(0)} ms after the load`,
  );
  const { response } = await authorizeCall(notifying);
  const paymentId = response.payment!.id;
  results.push(
    await drive("GetPayment (payment + ledger read)", notifying.pid, () =>
      grpcUnary(
        notifying.client,
        PaymentService.method.getPayment,
        { id: paymentId },
        { deadlineMs: 5000, metadata: notifying.metadata },
      ),
    ),
  );
  const replayed = randomUUID();
  await authorizeCall(notifying, replayed);
  results.push(
    await drive("Authorize replay (same key, same request)", notifying.pid, () =>
      authorizeCall(notifying, replayed),
    ),
  );
} finally {
  await notifying.stop();
}

const polling = await startPayments("poll", {
  PAYMENTS_OUTBOX_NOTIFY: "false",
  PAYMENTS_OUTBOX_POLL_MS: "100",
});
try {
  results.push(
    await drive("Authorize, outbox NOTIFY off (relay polls 100 ms)", polling.pid, () =>
      authorizeCall(polling),
    ),
  );
  const drained = await polling.drain();
  drains.push(
    `NOTIFY off: ${drained.events} events, outbox empty ${drained.ms.toFixed(0)} ms after the load`,
  );
} finally {
  await polling.stop();
}

// Baselines on the same Postgres, in the same run.
await admin.unsafe(`create database ${scratchDb}`);
try {
  execFileSync(
    "pgbench",
    ["-i", "-q", "-s", "10", "-h", "127.0.0.1", "-U", "postgres", scratchDb],
    {
      stdio: "ignore",
    },
  );
  const threads = String(Math.min(pgClients, 2));
  const common = [
    "-n",
    "-c",
    String(pgClients),
    "-j",
    threads,
    "-T",
    String(seconds),
    "-M",
    "prepared",
  ];
  results.push(pgbench(["-S", ...common], `pgbench -S (PK select), ${pgClients} clients`));
  results.push(pgbench(["-N", ...common], `pgbench -N (simple update txn), ${pgClients} clients`));
} finally {
  await admin.unsafe(`drop database if exists ${scratchDb}`);
  await admin.end();
}

console.log(
  `\nPayments Authorize — ${seconds}s per scenario, ${concurrency} calls in flight (grpc-js client), Node ${process.version}\n`,
);
console.log(
  "scenario".padEnd(56) +
    "req/s".padStart(9) +
    "p50 ms".padStart(9) +
    "p99 ms".padStart(9) +
    "svc CPU µs/call".padStart(17) +
    "errors".padStart(8),
);
for (const r of results) {
  console.log(
    r.name.padEnd(56) +
      r.rps.toFixed(0).padStart(9) +
      r.p50.toFixed(2).padStart(9) +
      (Number.isNaN(r.p99) ? "–" : r.p99.toFixed(2)).padStart(9) +
      (r.cpuUsPerCall === undefined ? "–" : r.cpuUsPerCall.toFixed(0)).padStart(17) +
      String(r.errors).padStart(8),
  );
}
console.log("(pgbench rows: tps and average latency; p99 not reported by pgbench)");
const [authNotify, get, replay, authPoll, pgS, pgN] = results;
console.log(`\nratios (same run):`);
for (const [name, r] of [
  ["Authorize (NOTIFY on)", authNotify],
  ["Authorize (NOTIFY off)", authPoll],
  ["Authorize replay", replay],
  ["GetPayment", get],
] as const) {
  console.log(
    `  ${name.padEnd(24)} / pgbench -S = ${(r!.rps / pgS!.rps).toFixed(3)}   / pgbench -N = ${(r!.rps / pgN!.rps).toFixed(3)}`,
  );
}
for (const line of drains) console.log(`outbox ${line}`);
