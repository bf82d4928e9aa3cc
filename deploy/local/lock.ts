import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";

/**
 * One mesh per data directory. The lock file records the starter's pid and
 * the kernel start time of that pid, so a pid recycled by an unrelated
 * process after a crash is recognised as stale instead of blocking forever.
 */

export class MeshAlreadyRunningError extends Error {
  override name = "MeshAlreadyRunningError";
  constructor(readonly pid: number) {
    super(
      `commerce-mesh is already running (pid ${pid}); stop it with Ctrl-C in its terminal or \`kill ${pid}\``,
    );
  }
}

export interface LockContents {
  pid: number;
  /** /proc/<pid>/stat start time; absent where /proc does not exist. */
  startTime?: string | undefined;
  startedAt: string;
  /** Child processes by tag, so operators (and tests) can see what the mesh runs. */
  children: Record<string, number>;
}

export interface MeshLock {
  readonly path: string;
  /** The stale lock this one replaced (a starter that died without cleaning up), if any. */
  readonly previous: LockContents | undefined;
  recordChildren(children: Record<string, number>): void;
  release(): void;
}

export const LOCK_FILE = "mesh.lock";

export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces and parentheses; fields after it are plain.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function readLock(file: string): LockContents | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as Partial<LockContents>;
    if (typeof parsed.pid !== "number" || !Number.isInteger(parsed.pid) || parsed.pid <= 0) {
      return undefined;
    }
    return {
      pid: parsed.pid,
      startTime: parsed.startTime,
      startedAt: String(parsed.startedAt ?? ""),
      children: parsed.children ?? {},
    };
  } catch {
    return undefined;
  }
}

/** Whether the lock's owner is still the process that wrote it. */
export function lockHolderAlive(contents: LockContents): boolean {
  if (!isProcessAlive(contents.pid)) return false;
  if (contents.startTime === undefined) return true;
  const current = processStartTime(contents.pid);
  return current === undefined || current === contents.startTime;
}

export function readMeshLock(dataDir: string): LockContents | undefined {
  return readLock(path.join(dataDir, LOCK_FILE));
}

export function acquireMeshLock(dataDir: string, pid: number = process.pid): MeshLock {
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, LOCK_FILE);
  const contents: LockContents = {
    pid,
    startTime: processStartTime(pid),
    startedAt: new Date().toISOString(),
    children: {},
  };
  let previous: LockContents | undefined;
  // Two attempts: the second follows removal of a stale lock.
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, JSON.stringify(contents, null, 2), { flag: "wx" });
      return createHandle(file, contents, previous);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const existing = readLock(file);
    if (existing && lockHolderAlive(existing)) throw new MeshAlreadyRunningError(existing.pid);
    previous = existing;
    // Stale (holder gone or pid recycled) or unreadable: remove and retry once.
    try {
      unlinkSync(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
  const holder = readLock(file);
  throw new MeshAlreadyRunningError(holder?.pid ?? -1);
}

function createHandle(
  file: string,
  contents: LockContents,
  previous: LockContents | undefined,
): MeshLock {
  let released = false;
  return {
    path: file,
    previous,
    recordChildren(children) {
      if (released) return;
      contents.children = { ...children };
      writeFileSync(file, JSON.stringify(contents, null, 2));
    },
    release() {
      if (released) return;
      released = true;
      // Only remove the file if it is still ours.
      if (readLock(file)?.pid !== contents.pid) return;
      try {
        unlinkSync(file);
      } catch {
        // Already gone: nothing to release.
      }
    },
  };
}
