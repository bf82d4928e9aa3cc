import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  acquireMeshLock,
  isProcessAlive,
  LOCK_FILE,
  MeshAlreadyRunningError,
  processStartTime,
  readMeshLock,
} from "./lock.js";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "mesh-lock-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A process that holds the lock until killed: a real second owner. */
async function lockHolder(dir: string) {
  const script = `
    import { acquireMeshLock } from ${JSON.stringify(path.resolve(import.meta.dirname, "lock.ts"))};
    acquireMeshLock(${JSON.stringify(dir)});
    console.log("locked");
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("locked")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`lock holder exited with ${code}`)));
  });
  return child;
}

describe("mesh lock", () => {
  it("refuses a second start while the first holder runs, naming its pid", async () => {
    const dir = tempDir();
    const holder = await lockHolder(dir);
    try {
      let caught: unknown;
      try {
        acquireMeshLock(dir);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(MeshAlreadyRunningError);
      expect((caught as MeshAlreadyRunningError).pid).toBe(holder.pid);
      expect((caught as Error).message).toBe(
        `commerce-mesh is already running (pid ${holder.pid}); stop it with Ctrl-C in its terminal or \`kill ${holder.pid}\``,
      );
    } finally {
      holder.kill("SIGKILL");
      await new Promise((resolve) => holder.once("exit", resolve));
    }
    // The holder died without releasing: its lock is stale and a new start proceeds.
    const lock = acquireMeshLock(dir);
    expect(readMeshLock(dir)?.pid).toBe(process.pid);
    lock.release();
    expect(readMeshLock(dir)).toBeUndefined();
  });

  it("refuses a second acquire from the same live process", () => {
    const dir = tempDir();
    const lock = acquireMeshLock(dir);
    expect(() => acquireMeshLock(dir)).toThrow(MeshAlreadyRunningError);
    lock.release();
    acquireMeshLock(dir).release();
  });

  it("treats a lock whose pid was recycled by another process as stale", () => {
    const dir = tempDir();
    // Our own pid is alive, but with a different start time it is "another process".
    writeFileSync(
      path.join(dir, LOCK_FILE),
      JSON.stringify({ pid: process.pid, startTime: "1", startedAt: "", children: {} }),
    );
    expect(processStartTime(process.pid)).not.toBe("1");
    const lock = acquireMeshLock(dir);
    expect(readMeshLock(dir)?.startTime).toBe(processStartTime(process.pid));
    lock.release();
  });

  it("replaces an unreadable lock file", () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, LOCK_FILE), "not json");
    const lock = acquireMeshLock(dir);
    expect(readMeshLock(dir)?.pid).toBe(process.pid);
    lock.release();
  });

  it("records children and never removes a lock that another process took over", () => {
    const dir = tempDir();
    const lock = acquireMeshLock(dir);
    lock.recordChildren({ catalog: 1234 });
    expect(JSON.parse(readFileSync(path.join(dir, LOCK_FILE), "utf8")).children).toEqual({
      catalog: 1234,
    });
    writeFileSync(
      path.join(dir, LOCK_FILE),
      JSON.stringify({ pid: 1, startedAt: "", children: {} }),
    );
    lock.release();
    expect(readMeshLock(dir)?.pid).toBe(1);
  });

  it("knows live and dead pids", async () => {
    expect(isProcessAlive(process.pid)).toBe(true);
    const child = spawn(process.execPath, ["-e", ""]);
    await new Promise((resolve) => child.once("exit", resolve));
    expect(isProcessAlive(child.pid!)).toBe(false);
  });
});
