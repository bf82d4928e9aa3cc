import { rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { isProcessAlive, readMeshLock } from "./lock.js";
import { READY_LINE } from "./mesh.js";
import { isHttpReady, waitUntil } from "./readiness.js";
import { freePortRange } from "./test-support/free-port.js";
import { createStandInRoot, type MeshRun, spawnMesh } from "./test-support/mesh-run.js";

/**
 * The starter's orchestration, driven with stand-in services in a throw-away
 * root (the real services are covered by start-mesh.test.ts). Infrastructure
 * is the machine's; each run gets its own database, schema prefix and ports.
 */

const runner = path.join(import.meta.dirname, "test-support", "run-mesh-at.ts");
const roots: string[] = [];
const databases: string[] = [];

afterAll(async () => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
  const admin = postgres("postgres://postgres@127.0.0.1:5432/test", { max: 1 });
  for (const db of databases) await admin.unsafe(`drop database if exists "${db}" with (force)`);
  await admin.end();
});

async function setup(extraEnv: Record<string, string> = {}, seed?: string) {
  const root = createStandInRoot(seed === undefined ? {} : { seed });
  roots.push(root);
  const id = Math.random().toString(36).slice(2, 10);
  const db = `mesh_t_${id}`;
  databases.push(db);
  const base = await freePortRange(5);
  const env = {
    MESH_TEST_ROOT: root,
    MESH_PORT_BASE: String(base),
    MESH_SCHEMA_PREFIX: `t_${id}_`,
    DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${db}`,
    NATS_URL: "nats://127.0.0.1:4222",
    REDIS_URL: "redis://127.0.0.1:6379",
    ...extraEnv,
  };
  const start = () => spawnMesh({ script: runner, cwd: root, env });
  return { root, base, id, start };
}

/** Pids of the stand-ins, by service, from their "stand-in <pid> listening on host:port" lines. */
function standInPids(run: MeshRun): Map<string, number> {
  const pids = new Map<string, number>();
  for (const match of run.output().matchAll(/^\[(\w+)\]\s+stand-in (\d+) listening/gm)) {
    pids.set(match[1]!, Number(match[2]));
  }
  return pids;
}

async function expectAllGone(pids: Iterable<number>) {
  for (const pid of pids) {
    await waitUntil({
      tag: "test",
      what: `pid ${pid} gone`,
      check: async () => !isProcessAlive(pid),
      timeoutMs: 10_000,
      intervalMs: 50,
    });
  }
}

describe("mesh starter with stand-in services", () => {
  it("starts every service, runs the seed hook, refuses a second start, and stops on SIGINT with exit 0", async () => {
    const { root, base, id, start } = await setup(
      {},
      'console.log("seeded", process.env.DB_SCHEMA, process.env.CATALOG_URL);',
    );
    const first = start();
    try {
      await first.waitFor(READY_LINE, 90_000);
      expect(first.output()).toContain(
        `[catalog:seed]  seeded t_${id}_catalog http://127.0.0.1:${base + 2}`,
      );
      // The seed ran after every service was ready.
      expect(first.output().indexOf("seeded")).toBeGreaterThan(
        Math.max(...[...first.output().matchAll(/stand-in \d+ listening/g)].map((m) => m.index)),
      );
      for (let port = base; port < base + 5; port++) {
        expect(await isHttpReady(`http://127.0.0.1:${port}`)).toBe(true);
      }
      const lock = readMeshLock(path.join(root, ".data"));
      expect(lock?.pid).toBe(first.child.pid);
      expect(Object.keys(lock?.children ?? {}).sort()).toEqual([
        "catalog",
        "edge",
        "identity",
        "orders",
        "payments",
      ]);

      const second = start();
      expect((await second.exit).code).toBe(1);
      expect(second.output()).toContain(
        `commerce-mesh is already running (pid ${first.child.pid}); stop it with Ctrl-C in its terminal or \`kill ${first.child.pid}\``,
      );
      // The refused start touched nothing: the first mesh still answers.
      expect(await isHttpReady(`http://127.0.0.1:${base}`)).toBe(true);

      first.child.kill("SIGINT");
      expect(await first.exit).toEqual({ code: 0, signal: null });
      await expectAllGone(Object.values(lock?.children ?? {}));
      expect(readMeshLock(path.join(root, ".data"))).toBeUndefined();
      expect(first.output()).toMatch(/\[edge\]\s+got SIGTERM, stopping[\s\S]*\[mesh\]\s+stopped/);
    } finally {
      await first.stop();
    }
  });

  it("names a service that never becomes ready, shows its last log lines and stops the rest", async () => {
    const { base, start } = await setup({
      STAND_IN_FAULTY: "payments",
      STAND_IN_NEVER_READY: "1",
      MESH_READY_TIMEOUT_MS: "3000",
    });
    const run = start();
    const { code } = await run.exit;
    expect(code).toBe(1);
    expect(run.output()).toContain(
      `[mesh]          payments did not become ready: GET http://127.0.0.1:${base + 4}/readyz did not succeed within 3 s`,
    );
    expect(run.output()).toContain("[mesh]          last log lines of payments:");
    const pids = standInPids(run);
    expect(pids.size).toBe(5);
    await expectAllGone(pids.values());
  });

  it("takes the whole mesh down with exit 1 when a service dies after start-up", async () => {
    const { start } = await setup();
    const run = start();
    try {
      await run.waitFor(READY_LINE, 90_000);
      const pids = standInPids(run);
      process.kill(pids.get("orders")!, "SIGKILL");
      expect((await run.exit).code).toBe(1);
      expect(run.output()).toContain(
        "orders was killed by SIGKILL unexpectedly; stopping the mesh",
      );
      await expectAllGone(pids.values());
    } finally {
      await run.stop();
    }
  });

  it("kills a service that ignores SIGTERM after the grace period and still exits 0", async () => {
    const { start } = await setup({
      STAND_IN_FAULTY: "edge",
      STAND_IN_IGNORE_TERM: "1",
      MESH_STOP_GRACE_MS: "500",
    });
    const run = start();
    try {
      await run.waitFor(READY_LINE, 90_000);
      const pids = standInPids(run);
      run.child.kill("SIGTERM");
      expect((await run.exit).code).toBe(0);
      expect(run.output()).toContain("edge did not stop within 500 ms; killed it");
      await expectAllGone(pids.values());
    } finally {
      await run.stop();
    }
  });

  it("after a starter was SIGKILLed, a new start ignores its stale lock and names the orphans holding the ports", async () => {
    const { root, start } = await setup();
    const first = start();
    let orphans: number[] = [];
    try {
      await first.waitFor(READY_LINE, 90_000);
      orphans = Object.values(readMeshLock(path.join(root, ".data"))?.children ?? {});
      expect(orphans).toHaveLength(5);
      first.child.kill("SIGKILL");
      await first.exit;

      const second = start();
      expect((await second.exit).code).toBe(1);
      expect(second.output()).not.toContain("already running");
      expect(second.output()).toContain("is already in use by another process");
      const hint = /they still run: stop them with `kill ([\d ]+)`/.exec(second.output());
      expect(hint?.[1]?.split(" ").map(Number).sort()).toEqual([...orphans].sort());
    } finally {
      await first.stop();
      for (const pid of orphans) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
    }
  });

  it("refuses to start when a service port is taken, naming the port and service", async () => {
    const { base, start } = await setup();
    const blocker = net.createServer().listen(base + 3, "127.0.0.1");
    await new Promise((resolve) => blocker.once("listening", resolve));
    try {
      const run = start();
      expect((await run.exit).code).toBe(1);
      expect(run.output()).toContain(
        `port ${base + 3} (orders) is already in use by another process`,
      );
      expect(standInPids(run).size).toBe(0);
    } finally {
      blocker.close();
    }
  });
});
