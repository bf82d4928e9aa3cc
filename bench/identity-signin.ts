/**
 * Identity throughput, all measured in this run:
 *   (a) argon2id cost per hash at the service's parameters (m=19 MiB, t=2,
 *       p=1), single-threaded latency and the thread-pool ceiling (verifies/s
 *       with as many in flight as libuv has threads),
 *   (b) SignIn: sign-ins/s, p50/p99, server CPU per sign-in,
 *   (c) enumeration timing: unknown email vs wrong password, median latency,
 *   (d) GetMe: req/s, p50/p99, server CPU per call (JWT verify + PK lookup +
 *       envelope decryption), against GetJwks (no auth, no database) as the
 *       RPC-floor baseline,
 * and prints the ratios: sign-ins/s ÷ argon2 ceiling, GetMe ÷ GetJwks.
 *
 *   npx tsx bench/identity-signin.ts [--seconds 8] [--signin-concurrency 8] [--concurrency 50]
 */
import { type ChildProcess, fork } from "node:child_process";
import { availableParallelism } from "node:os";
import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { type Algorithm, hash, verify } from "@node-rs/argon2";
import { IdentityService } from "../gen/commerce/identity/v1/identity_service_pb.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    "signin-concurrency": { type: "string", default: "8" },
    concurrency: { type: "string", default: "50" },
  },
});
const seconds = Number(values.seconds);
const signInConcurrency = Number(values["signin-concurrency"]);
const concurrency = Number(values.concurrency);
const ARGON2 = { algorithm: 2 as Algorithm, memoryCost: 19_456, timeCost: 2, parallelism: 1 };
const PASSWORD = "correct horse battery staple 42";
const threadPool = Number(process.env.UV_THREADPOOL_SIZE ?? 4);

interface Run {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  cpuUsPerCall?: number;
}

const ms = (ns: number) => ns / 1e6;

async function drive(
  parallel: number,
  durationSec: number,
  call: (i: number) => Promise<unknown>,
  child?: ChildProcess,
): Promise<Run> {
  const histogram: RecordableHistogram = createHistogram();
  let done = 0;
  let errors = 0;
  const cpuBefore = child ? await cpuOf(child) : 0;
  const started = performance.now();
  const until = Date.now() + durationSec * 1000;
  await Promise.all(
    Array.from({ length: parallel }, async (_, worker) => {
      let n = worker;
      while (Date.now() < until) {
        const t0 = performance.now();
        try {
          await call(n);
          histogram.record(Math.max(1, Math.round((performance.now() - t0) * 1e6)));
          done++;
        } catch {
          errors++;
        }
        n += parallel;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const cpuAfter = child ? await cpuOf(child) : 0;
  return {
    rps: done / elapsed,
    p50: ms(histogram.percentile(50)),
    p99: ms(histogram.percentile(99)),
    errors,
    ...(child ? { cpuUsPerCall: (cpuAfter - cpuBefore) / Math.max(done, 1) } : {}),
  };
}

function cpuOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    child.once("message", (m: { cpu: NodeJS.CpuUsage }) => resolve(m.cpu.user + m.cpu.system));
    child.send({ cmd: "cpu" });
  });
}

// ---------------------------------------------------------------- (a) argon2id
const sample = await hash(PASSWORD, ARGON2);
const single = createHistogram();
const cpuStart = process.cpuUsage();
for (let i = 0; i < 20; i++) {
  const t0 = performance.now();
  await verify(sample, PASSWORD);
  single.record(Math.round((performance.now() - t0) * 1e6));
}
const cpuUsed = process.cpuUsage(cpuStart);
// CPU time does not depend on how busy the machine is; wall time does.
const argonCpuUs = (cpuUsed.user + cpuUsed.system) / 20;
const ceiling = await drive(threadPool, Math.min(seconds, 5), () => verify(sample, PASSWORD));

// ---------------------------------------------------------------- service
const child = fork(new URL("./identity-server.ts", import.meta.url), [], {
  execArgv: ["--import", "tsx"],
  stdio: ["ignore", "ignore", "inherit", "ipc"],
});
const { url } = await new Promise<{ url: string }>((resolve, reject) => {
  child.once("message", (m: { url: string }) => resolve(m));
  child.once("exit", (code) => reject(new Error(`identity server exited with ${code}`)));
});
const client = createClient(IdentityService, createGrpcTransport({ baseUrl: url }));
const users: string[] = [];
for (let i = 0; i < signInConcurrency * 2; i++) {
  const email = `bench.${Date.now().toString(36)}.${i}@example.com`;
  await client.signUp({ email, password: PASSWORD, firstName: "Bench", lastName: `User ${i}` });
  users.push(email);
}
const signIn = (i: number) =>
  client.signIn({ email: users[i % users.length]!, password: PASSWORD });
await drive(signInConcurrency, 1.5, signIn); // warm-up
const signIns = await drive(signInConcurrency, seconds, signIn, child);

// ---------------------------------------------------------------- (c) enumeration timing
const known = createHistogram();
const unknown = createHistogram();
for (let i = 0; i < 40; i++) {
  for (const [histogram, email] of [
    [known, users[0]!],
    [unknown, `nobody.${i}@example.com`],
  ] as const) {
    const t0 = performance.now();
    await client.signIn({ email, password: "a wrong password!" }).catch(() => {});
    histogram.record(Math.round((performance.now() - t0) * 1e6));
  }
}

// ---------------------------------------------------------------- (d) GetMe vs GetJwks
const { tokens } = await client.signIn({ email: users[0]!, password: PASSWORD });
const auth = { headers: { authorization: `Bearer ${tokens!.accessToken}` } };
const getMe = () => client.getMe({}, auth);
const getJwks = () => client.getJwks({});
await drive(concurrency, 1.5, getMe);
const me = await drive(concurrency, seconds, getMe, child);
await drive(concurrency, 1.5, getJwks);
const jwks = await drive(concurrency, seconds, getJwks, child);

child.send({ cmd: "stop" });
await new Promise((r) => child.once("exit", r));

const f = (n: number, d = 1) => n.toFixed(d);
const line = (name: string, r: Run) =>
  `${name.padEnd(34)} ${f(r.rps).padStart(9)} /s  p50 ${f(r.p50, 2).padStart(7)} ms  p99 ${f(r.p99, 2).padStart(7)} ms` +
  `${r.cpuUsPerCall === undefined ? "" : `  server CPU ${f(r.cpuUsPerCall, 0).padStart(6)} µs/call`}  errors ${r.errors}`;
console.log(
  `identity benchmark — Node ${process.version}, ${availableParallelism()} cores, UV_THREADPOOL_SIZE ${threadPool}, ${seconds}s per run`,
);
console.log(`argon2id m=${ARGON2.memoryCost} KiB t=${ARGON2.timeCost} p=${ARGON2.parallelism}`);
console.log(
  `  one verify, sequential            mean ${f(ms(single.mean), 2)} ms  p99 ${f(ms(single.percentile(99)), 2)} ms`,
);
console.log(`  one verify, CPU                    ${f(argonCpuUs / 1000, 2)} ms`);
console.log(line(`  verify ceiling (${threadPool} in flight)`, ceiling));
console.log(line(`SignIn (${signInConcurrency} in flight)`, signIns));
console.log(
  `  wrong password median ${f(ms(known.percentile(50)), 2)} ms vs unknown email median ${f(ms(unknown.percentile(50)), 2)} ms`,
);
console.log(line(`GetMe (${concurrency} in flight)`, me));
console.log(line(`GetJwks baseline (${concurrency} in flight)`, jwks));
console.log("ratios");
console.log(`  sign-ins/s ÷ argon2 verify ceiling   ${f(signIns.rps / ceiling.rps, 2)}`);
console.log(`  SignIn p50 ÷ one argon2 verify       ${f(signIns.p50 / ms(single.mean), 2)}`);
console.log(`  SignIn server CPU ÷ argon2 CPU       ${f(signIns.cpuUsPerCall! / argonCpuUs, 2)}`);
console.log(
  `  GetMe server CPU ÷ GetJwks           ${f(me.cpuUsPerCall! / jwks.cpuUsPerCall!, 2)}`,
);
console.log(
  `  unknown-email ÷ wrong-password p50   ${f(unknown.percentile(50) / known.percentile(50), 2)}`,
);
console.log(`  GetMe req/s ÷ GetJwks req/s          ${f(me.rps / jwks.rps, 2)}`);
console.log(`  GetMe req/s ÷ sign-ins/s             ${f(me.rps / signIns.rps, 1)}`);
