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
import { natsServerPid } from "./events-cpu.js";
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

/**
 * Times ROUNDS sequential round trips (after 1,000 to warm up) and prints wall
 * time and CPU per round: this process plus `peer`, the other process that
 * serves it (its CPU is read from /proc).
 */
async function measureHop(
  name: string,
  roundTrip: () => Promise<unknown>,
  peer: { pid: number; label: string },
): Promise<void> {
  for (let i = 0; i < 1_000; i++) await roundTrip();
  const node = selfCpu();
  const other = procCpuMicros(peer.pid);
  const started = performance.now();
  for (let i = 0; i < ROUNDS; i++) await roundTrip();
  const wall = ((performance.now() - started) * 1000) / ROUNDS;
  const nodeCpu = (selfCpu() - node) / ROUNDS;
  const otherCpu = (procCpuMicros(peer.pid) - other) / ROUNDS;
  line(
    name,
    wall,
    nodeCpu + otherCpu,
    `node ${nodeCpu.toFixed(1)} + ${peer.label} ${otherCpu.toFixed(1)}`,
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
  await measureHop("ping-pong", roundTrip, { pid: child.pid!, label: "echo process" });
  socket.destroy();
  await new Promise((resolve) => child.once("exit", resolve));
  rmSync(dir, { recursive: true, force: true });
}

async function postgresSelect(): Promise<void> {
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  const [{ pid }] = (await sql`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
  await measureHop("postgres select", () => sql`select 1`, { pid, label: "backend" });
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
  const natsPid = natsServerPid();
  if (natsPid === undefined) throw new Error("machine-hops: no nats-server process on this host");
  // Both clients live in this process, so "node" counts requester and responder.
  await measureHop("nats request", () => client.request(subject, payload), {
    pid: natsPid,
    label: "nats-server",
  });
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
