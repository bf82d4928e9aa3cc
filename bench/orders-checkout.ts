/**
 * Checkout through the real mesh: orders, catalog and payments each in its
 * own process (main.ts, as deployed), Postgres/NATS/Redis on this machine,
 * driven by a stock grpc-js client.
 *
 *   npx tsx bench/orders-checkout.ts [--seconds 10] [--concurrency 32] [--clients 16]
 *
 * A checkout is what a client does: CreateOrder, then WatchOrder until the
 * order is CONFIRMED (the terminal event arrives on the stream).
 *
 * 1. Maximum: `--concurrency` customers in a closed loop (each places its
 *    next order when the previous one is confirmed) for `--seconds`;
 *    checkout throughput = confirmed orders per second.
 * 2. Open loop at 25/50/75% of that maximum: checkouts start on a fixed
 *    schedule whatever the answers (latency counted from the scheduled start,
 *    so no coordinated omission). Reported: CreateOrder latency and
 *    CreateOrder → CONFIRMED latency, errors, and CPU-ms per confirmed order
 *    summed over the three service processes (from /proc; "marginal"
 *    subtracts their idle CPU), plus Postgres/NATS/Redis CPU over the same
 *    interval (shared machine: other work on it counts there too).
 * 3. Baselines in the same run: a raw @grpc/grpc-js echo server (closed loop
 *    and open loop at the 50% rate), `pgbench -S` and `pgbench -N`.
 *
 * Each order has two lines (two products); the sandbox approves instantly.
 * Services log at "warn"; orders runs with DATABASE_POOL_MAX=24.
 */
import { execFileSync, fork } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import postgres from "postgres";
import { OrderStatus } from "../gen/commerce/orders/v1/order_pb.js";
import {
  OrderService,
  type WatchOrderRequest,
  WatchOrderRequestSchema,
  type WatchOrderResponse,
  WatchOrderResponseSchema,
} from "../gen/commerce/orders/v1/order_service_pb.js";
import { ProbeService } from "../gen/platform/testing/v1/probe_pb.js";
import { createGrpcJsClient, grpcUnary } from "../platform/testing/grpc-js-client.js";
import { TEST_DATABASE_URL } from "../platform/testing/service-harness.js";
import {
  SHIPPING_ADDRESS,
  startCheckoutWorld,
} from "../services/orders/test-support/checkout-world.js";
import { procCpuMicros } from "./proc-cpu.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    concurrency: { type: "string", default: "32" },
    clients: { type: "string", default: "16" },
  },
});
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);
const pgClients = Number(values.clients);

// ---------- CPU accounting from /proc ----------

const cpuMsOfPid = (pid: number) => procCpuMicros(pid) / 1000;

function pidsNamed(names: string[]): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, "utf8").trim();
      if (names.some((n) => comm.startsWith(n))) pids.push(Number(entry));
    } catch {
      /* exited */
    }
  }
  return pids;
}

/** CPU-ms per group; infra pids are re-scanned (Postgres forks backends). */
function cpuSnapshot(services: number[]): { services: number; infra: Map<number, number> } {
  const infra = new Map<number, number>();
  for (const pid of pidsNamed(["postgres", "nats-server", "redis-server"])) {
    infra.set(pid, cpuMsOfPid(pid));
  }
  return { services: services.reduce((sum, pid) => sum + cpuMsOfPid(pid), 0), infra };
}

function cpuDelta(before: ReturnType<typeof cpuSnapshot>, after: ReturnType<typeof cpuSnapshot>) {
  let infra = 0;
  for (const [pid, ms] of after.infra) infra += ms - (before.infra.get(pid) ?? 0);
  return { services: after.services - before.services, infra };
}

// ---------- the mesh ----------

console.error("starting catalog, payments and orders…");
const world = await startCheckoutWorld({ orders: false });
// Saga consumer (8) + fast path (8) each hold a connection during a step.
const orders = await world.startOrdersChild(undefined, { DATABASE_POOL_MAX: "24" });
const servicePids = [world.catalog.process.pid!, world.payments.process.pid!, orders.process.pid!];
const products = await Promise.all([
  world.createProduct({ priceMinor: 1_999n, stock: 10_000_000 }),
  world.createProduct({ priceMinor: 450n, stock: 10_000_000 }),
]);
const users = await Promise.all(Array.from({ length: 20 }, () => world.auth.userToken()));
const metadataFor = users.map((token) => {
  const m = new grpc.Metadata();
  m.set("authorization", `Bearer ${token}`);
  return m;
});
const client = createGrpcJsClient(`127.0.0.1:${orders.port}`);

let callNo = 0;
const TERMINAL = new Set([OrderStatus.CONFIRMED, OrderStatus.REJECTED, OrderStatus.CANCELLED]);

/** Follows WatchOrder until the order's terminal event (resuming if a stream ends early). */
function watchUntilTerminal(orderId: string, metadata: grpc.Metadata): Promise<OrderStatus> {
  const path = `/${OrderService.typeName}/${OrderService.method.watchOrder.name}`;
  return new Promise((resolve, reject) => {
    let last = 0n;
    const open = () => {
      let final: OrderStatus | undefined;
      const call = client.makeServerStreamRequest(
        path,
        (m: WatchOrderRequest) => Buffer.from(toBinary(WatchOrderRequestSchema, m)),
        (b: Buffer) => fromBinary(WatchOrderResponseSchema, b),
        create(WatchOrderRequestSchema, { orderId, afterSequence: last }),
        metadata,
        { deadline: Date.now() + 60_000 },
      );
      call.on("data", (m: WatchOrderResponse) => {
        last = m.event!.sequence;
        if (TERMINAL.has(m.event!.status)) final = m.event!.status;
      });
      call.on("error", reject);
      call.on("end", () => (final === undefined ? open() : resolve(final)));
    };
    open();
  });
}

interface Checkout {
  createMs: number;
  doneMs: number;
  confirmed: boolean;
}

/**
 * One customer: CreateOrder, then WatchOrder until CONFIRMED (or another
 * terminal status). Times are measured from `startPerf` (the scheduled send
 * in the open loop).
 */
async function checkout(startPerf: number): Promise<Checkout> {
  const metadata = metadataFor[callNo++ % metadataFor.length]!;
  const { response } = await grpcUnary(
    client,
    OrderService.method.createOrder,
    {
      requestId: randomUUID(),
      items: products.map((p) => ({ productId: p.id, quantity: 1n })),
      shippingAddress: SHIPPING_ADDRESS,
      paymentMethodToken: "tok_approve",
    },
    { deadlineMs: 10_000, metadata },
  );
  const createMs = performance.now() - startPerf;
  const status = await watchUntilTerminal(response.order!.id, metadata);
  return {
    createMs,
    doneMs: performance.now() - startPerf,
    confirmed: status === OrderStatus.CONFIRMED,
  };
}

const ms = (h: RecordableHistogram, p: number) => h.percentile(p) / 1e6;
const record = (h: RecordableHistogram, value: number) =>
  h.record(Math.max(1, Math.round(value * 1e6)));

interface Step {
  name: string;
  offered: number;
  createRps: number;
  checkoutRps: number;
  create: RecordableHistogram;
  confirm: RecordableHistogram;
  errors: number;
  confirmed: number;
  rejected: number;
  cpuServicesMs: number;
  cpuInfraMs: number;
  /** Wall time the CPU was measured over. */
  cpuWindowMs: number;
}

async function measure(
  name: string,
  offered: number,
  run: (done: (c: Checkout) => void, failed: () => void) => Promise<void>,
): Promise<Step> {
  const create = createHistogram();
  const confirm = createHistogram();
  let confirmed = 0;
  let rejected = 0;
  let errors = 0;
  const cpuBefore = cpuSnapshot(servicePids);
  const started = performance.now();
  let lastCreate = started;
  await run(
    (c) => {
      record(create, c.createMs);
      lastCreate = Math.max(lastCreate, started + c.createMs);
      if (c.confirmed) {
        confirmed++;
        record(confirm, c.doneMs);
      } else {
        rejected++;
      }
    },
    () => {
      errors++;
    },
  );
  const elapsed = performance.now() - started;
  const cpu = cpuDelta(cpuBefore, cpuSnapshot(servicePids));
  return {
    name,
    offered,
    createRps: (confirmed + rejected) / (elapsed / 1000),
    checkoutRps: confirmed / (elapsed / 1000),
    create,
    confirm,
    errors,
    confirmed,
    rejected,
    cpuServicesMs: cpu.services,
    cpuInfraMs: cpu.infra,
    cpuWindowMs: elapsed,
  };
}

/** `concurrency` customers, each placing its next order when the previous one finished. */
function closedLoop(name: string): Promise<Step> {
  return measure(name, Number.NaN, async (done, failed) => {
    const until = performance.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < until) {
          await checkout(performance.now()).then(done, failed);
        }
      }),
    );
  });
}

/** Arrivals on a fixed schedule whatever the answers; latency from the scheduled time. */
function openLoop(name: string, rate: number): Promise<Step> {
  return measure(name, rate, async (done, failed) => {
    const total = Math.round(rate * seconds);
    const inFlight: Promise<void>[] = [];
    const startPerf = performance.now();
    let issued = 0;
    while (issued < total) {
      const due = Math.min(total, Math.floor(((performance.now() - startPerf) / 1000) * rate) + 1);
      while (issued < due) {
        const scheduled = startPerf + (issued / rate) * 1000;
        issued++;
        inFlight.push(checkout(scheduled).then(done, failed));
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(inFlight);
  });
}

// ---------- run ----------

console.error("warm-up…");
await Promise.all(
  Array.from({ length: 16 }, async () => {
    for (let i = 0; i < 12; i++) await checkout(performance.now());
  }),
);
// Idle cost of the three services (timers, pollers, health checks): subtracted
// for the "marginal" CPU per order, so low rates are not charged for it.
await new Promise((r) => setTimeout(r, 1_000));
const idleBefore = cpuSnapshot(servicePids);
const idleStarted = Date.now();
await new Promise((r) => setTimeout(r, 5_000));
const idleMsPerSec =
  (cpuDelta(idleBefore, cpuSnapshot(servicePids)).services / (Date.now() - idleStarted)) * 1000;

console.error(`maximum (closed loop, ${concurrency} customers, ${seconds}s)…`);
const max = await closedLoop(`max (closed loop, ${concurrency} customers)`);
const steps: Step[] = [max];
const maxRate = max.checkoutRps;

for (const share of [0.25, 0.5, 0.75]) {
  const rate = Math.max(1, Math.round(maxRate * share));
  console.error(`open loop at ${rate}/s (${share * 100}% of max)…`);
  steps.push(await openLoop(`open loop ${share * 100}% of max`, rate));
  await new Promise((r) => setTimeout(r, 1_000));
}

client.close();
await orders.stop();
await world.stop();

// Baseline 1: raw grpc-js echo server (same client library).
console.error("baseline: raw grpc-js…");
const rawServer = fork(new URL("./rpc-overhead-server.ts", import.meta.url), ["grpc-js"], {
  execArgv: ["--import", "tsx"],
  stdio: ["ignore", "ignore", "inherit", "ipc"],
});
const rawPort = await new Promise<number>((resolve) =>
  rawServer.once("message", (m: { port: number }) => resolve(m.port)),
);
const rawClient = createGrpcJsClient(`127.0.0.1:${rawPort}`);
const echo = () =>
  grpcUnary(rawClient, ProbeService.method.echo, { text: "x" }, { deadlineMs: 5_000 }).then(
    () => undefined,
  );
const rawClosed = createHistogram();
let rawCount = 0;
let rawSummary = { rps: 0, p50: 0, p99: 0, cpuUs: 0 };
{
  const warm = Date.now() + 1_000;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (Date.now() < warm) await echo();
    }),
  );
  const cpu0 = cpuMsOfPid(rawServer.pid!);
  const t0 = Date.now();
  const until = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (Date.now() < until) {
        const s = performance.now();
        await echo();
        rawClosed.record(Math.max(1, Math.round((performance.now() - s) * 1e6)));
        rawCount++;
      }
    }),
  );
  const rps = rawCount / ((Date.now() - t0) / 1000);
  const cpuUs = ((cpuMsOfPid(rawServer.pid!) - cpu0) * 1000) / rawCount;
  rawSummary = { rps, p50: ms(rawClosed, 50), p99: ms(rawClosed, 99), cpuUs };
}
const halfRate = steps[2]!.offered;
const rawOpen = { create: createHistogram(), errors: 0 };
{
  const total = Math.round(halfRate * seconds);
  const inFlight: Promise<void>[] = [];
  const startPerf = performance.now();
  let issued = 0;
  while (issued < total) {
    const due = Math.min(
      total,
      Math.floor(((performance.now() - startPerf) / 1000) * halfRate) + 1,
    );
    while (issued < due) {
      const scheduled = startPerf + (issued / halfRate) * 1000;
      issued++;
      inFlight.push(
        echo().then(
          () => record(rawOpen.create, performance.now() - scheduled),
          () => {
            rawOpen.errors++;
          },
        ),
      );
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(inFlight);
}
rawClient.close();
rawServer.kill("SIGTERM");

// Baseline 2: pgbench on a scratch database of the same server.
console.error("baseline: pgbench…");
const scratch = `bench_orders_pgbench_${randomBytes(4).toString("hex")}`;
const admin = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
const pg: { name: string; tps: number; latency: number }[] = [];
await admin.unsafe(`create database ${scratch}`);
try {
  const conn = ["-h", "127.0.0.1", "-U", "postgres", scratch];
  execFileSync("pgbench", ["-i", "-q", "-s", "10", ...conn], { stdio: "ignore" });
  const common = [
    "-n",
    "-c",
    String(pgClients),
    "-j",
    "2",
    "-T",
    String(seconds),
    "-M",
    "prepared",
  ];
  for (const [flag, name] of [
    ["-S", "pgbench -S (PK select)"],
    ["-N", "pgbench -N (simple update txn)"],
  ] as const) {
    const out = execFileSync("pgbench", [flag, ...common, ...conn], {
      stdio: ["ignore", "pipe", "pipe"],
    }).toString();
    pg.push({
      name: `${name}, ${pgClients} clients`,
      tps: Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? Number.NaN),
      latency: Number(/latency average = ([\d.]+) ms/.exec(out)?.[1] ?? Number.NaN),
    });
  }
} finally {
  await admin.unsafe(`drop database if exists ${scratch}`);
  await admin.end();
}

// ---------- report ----------

console.log(
  `\nCheckout (CreateOrder → CONFIRMED), ${seconds}s per step, Node ${process.version}, ${concurrency} in flight for the maximum\n`,
);
console.log(
  "step".padEnd(36) +
    "offered/s".padStart(10) +
    "create/s".padStart(10) +
    "checkout/s".padStart(11) +
    "create p50/p95/p99 ms".padStart(24) +
    "→CONFIRMED p50/p95/p99 ms".padStart(28) +
    "errors".padStart(8) +
    "rejected".padStart(9) +
    "svc CPU-ms/order".padStart(18) +
    "(marginal)".padStart(11) +
    "infra CPU-ms/order".padStart(20),
);
for (const s of steps) {
  const p = (h: RecordableHistogram) =>
    `${ms(h, 50).toFixed(1)}/${ms(h, 95).toFixed(1)}/${ms(h, 99).toFixed(1)}`;
  console.log(
    s.name.padEnd(36) +
      (Number.isNaN(s.offered) ? "–" : String(s.offered)).padStart(10) +
      s.createRps.toFixed(0).padStart(10) +
      s.checkoutRps.toFixed(1).padStart(11) +
      p(s.create).padStart(24) +
      p(s.confirm).padStart(28) +
      String(s.errors).padStart(8) +
      String(s.rejected).padStart(9) +
      (s.cpuServicesMs / Math.max(1, s.confirmed)).toFixed(2).padStart(18) +
      ((s.cpuServicesMs - (idleMsPerSec * s.cpuWindowMs) / 1000) / Math.max(1, s.confirmed))
        .toFixed(2)
        .padStart(11) +
      (s.cpuInfraMs / Math.max(1, s.confirmed)).toFixed(2).padStart(20),
  );
}
console.log(
  `(services idle: ${idleMsPerSec.toFixed(1)} CPU-ms/s for the three processes together; "marginal" subtracts it)`,
);
console.log("\nbaselines (same run, same machine)");
console.log(
  `  raw grpc-js echo, closed loop 50 in flight: ${rawSummary.rps.toFixed(0)} req/s, p50 ${rawSummary.p50.toFixed(2)} ms, p99 ${rawSummary.p99.toFixed(2)} ms, server ${rawSummary.cpuUs.toFixed(0)} µs CPU/call`,
);
console.log(
  `  raw grpc-js echo, open loop at ${halfRate}/s: p50 ${ms(rawOpen.create, 50).toFixed(2)} ms, p99 ${ms(rawOpen.create, 99).toFixed(2)} ms, errors ${rawOpen.errors}`,
);
for (const r of pg)
  console.log(`  ${r.name}: ${r.tps.toFixed(0)} tps, avg ${r.latency.toFixed(2)} ms`);
const half = steps[2]!;
console.log("\nratios");
console.log(`  max checkout/s ÷ pgbench -N tps = ${(maxRate / pg[1]!.tps).toFixed(4)}`);
console.log(`  max checkout/s ÷ raw grpc-js req/s = ${(maxRate / rawSummary.rps).toFixed(4)}`);
console.log(
  `  CreateOrder p99 at 50% of max = ${ms(half.create, 99).toFixed(1)} ms (target < 50 ms), raw grpc-js p99 at the same rate = ${ms(rawOpen.create, 99).toFixed(2)} ms; errors ${half.errors} (target 0)`,
);
