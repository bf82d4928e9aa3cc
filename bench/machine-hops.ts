/**
 * What one hop costs on this machine (run: `npx tsx bench/machine-hops.ts`;
 * not a test). The event pipeline's CPU per event is mostly hops: a
 * statement to Postgres and its answer, a publish and its ack, a delivery and
 * its ack, each waking another process. Their price depends on the machine
 * far more than on our code: on a host where a system call or a wake-up is
 * several times dearer, every pipeline ratio against a single-process
 * baseline (bench/events-throughput.ts) falls with it. Print these beside a
 * pipeline figure so runs on different machines can be compared.
 *
 *   syscall          a cheap system call (fstat) in a loop
 *   ping-pong        one byte there and back between two Node processes
 *                    (Unix socket), CPU of both per round trip
 *   postgres select  postgres.js `select 1`, one in flight: Node + backend CPU
 *   nats request     core NATS request/reply, one in flight: both clients +
 *                    nats-server CPU
 *
 * Env: ROUNDS=20000 DATABASE_URL NATS_URL
 */
import { fork } from "node:child_process";
import { fstatSync, mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import postgres from "postgres";
import { connectNats } from "../platform/events/nats.js";
import { DATABASE_URL, env, NATS_URL } from "./events-bench-load.js";
import { procCpuMicros } from "./proc-cpu.js";

const ROUNDS = env("ROUNDS", 20_000);

/** Child process: echoes every byte it reads on the socket path it is given. */
async function echoChild(socketPath: string): Promise<void> {
  const socket = createConnection(socketPath);
  socket.setNoDelay(true);
  socket.on("data", (chunk) => socket.write(chunk));
  await new Promise((resolve) => socket.once("close", resolve));
  process.exit(0);
}

const selfCpu = () => {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
};

function line(name: string, wallMicros: number, cpuMicros: number, detail = ""): void {
  console.log(
    `${name.padEnd(16)} ${wallMicros.toFixed(1).padStart(7)} µs wall, ${cpuMicros
      .toFixed(1)
      .padStart(7)} µs CPU per round${detail ? ` (${detail})` : ""}`,
  );
}

function syscalls(): void {
  const rounds = ROUNDS * 10;
  const cpu = selfCpu();
  const started = performance.now();
  for (let i = 0; i < rounds; i++) fstatSync(0);
  const wall = ((performance.now() - started) * 1000) / rounds;
  line("syscall", wall, (selfCpu() - cpu) / rounds, "fstat, node's binding included");
}

async function pingPong(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), "hops-"));
  const socketPath = path.join(dir, "echo.sock");
  const accepted = new Promise<Socket>((resolve) => {
    const server = createServer((socket) => {
      server.close();
      resolve(socket);
    });
    server.listen(socketPath);
  });
  const child = fork(new URL(import.meta.url).pathname, ["echo", socketPath], {
    execArgv: ["--import", "tsx"],
  });
  const socket = await accepted;
  socket.setNoDelay(true);
  const one = Buffer.from([1]);
  let pending: (() => void) | undefined;
  socket.on("data", () => pending?.());
  const roundTrip = () =>
    new Promise<void>((resolve) => {
      pending = resolve;
      socket.write(one);
    });
  for (let i = 0; i < 1_000; i++) await roundTrip();
  const cpu = selfCpu() + procCpuMicros(child.pid!);
  const started = performance.now();
  for (let i = 0; i < ROUNDS; i++) await roundTrip();
  const wall = ((performance.now() - started) * 1000) / ROUNDS;
  line("ping-pong", wall, (selfCpu() + procCpuMicros(child.pid!) - cpu) / ROUNDS, "both processes");
  socket.destroy();
  await new Promise((resolve) => child.once("exit", resolve));
  rmSync(dir, { recursive: true, force: true });
}

async function postgresSelect(): Promise<void> {
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  const [{ pid }] = (await sql`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
  for (let i = 0; i < 1_000; i++) await sql`select 1`;
  const node = selfCpu();
  const backend = procCpuMicros(pid);
  const started = performance.now();
  for (let i = 0; i < ROUNDS; i++) await sql`select 1`;
  const wall = ((performance.now() - started) * 1000) / ROUNDS;
  const nodeCpu = (selfCpu() - node) / ROUNDS;
  const backendCpu = (procCpuMicros(pid) - backend) / ROUNDS;
  line(
    "postgres select",
    wall,
    nodeCpu + backendCpu,
    `node ${nodeCpu.toFixed(1)} + backend ${backendCpu.toFixed(1)}`,
  );
  await sql.end();
}

async function natsRequest(): Promise<void> {
  const server = await connectNats({ servers: NATS_URL, name: "hops-responder" });
  const client = await connectNats({ servers: NATS_URL, name: "hops-requester" });
  const subject = `hops.${process.pid}`;
  server.subscribe(subject, {
    callback: (_err, msg) => {
      msg.respond(msg.data);
    },
  });
  await server.flush();
  const payload = new Uint8Array(16);
  for (let i = 0; i < 1_000; i++) await client.request(subject, payload);
  const natsPid = Number(
    (await import("node:child_process"))
      .execFileSync("pgrep", ["-o", "nats-server"], { encoding: "utf8" })
      .trim(),
  );
  const node = selfCpu();
  const nats = procCpuMicros(natsPid);
  const started = performance.now();
  for (let i = 0; i < ROUNDS; i++) await client.request(subject, payload);
  const wall = ((performance.now() - started) * 1000) / ROUNDS;
  const nodeCpu = (selfCpu() - node) / ROUNDS;
  const natsCpu = (procCpuMicros(natsPid) - nats) / ROUNDS;
  line(
    "nats request",
    wall,
    nodeCpu + natsCpu,
    `node ${nodeCpu.toFixed(1)} (both clients) + nats-server ${natsCpu.toFixed(1)}`,
  );
  await Promise.all([server.close(), client.close()]);
}

if (process.argv[2] === "echo") {
  await echoChild(process.argv[3]!);
} else {
  console.log(`one hop on this machine, ${ROUNDS} rounds each, one in flight:`);
  syscalls();
  await pingPong();
  await postgresSelect();
  await natsRequest();
}
