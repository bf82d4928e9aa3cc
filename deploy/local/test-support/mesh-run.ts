import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { moduleRoot, SERVICE_NAMES } from "../mesh-config.js";

/** A running starter process with its combined output, for tests. */
export interface MeshRun {
  child: ChildProcess;
  output(): string;
  waitFor(text: string | RegExp, timeoutMs: number): Promise<void>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Test cleanup: a graceful stop (so the starter stops its children), SIGKILL as a last resort. */
  stop(): Promise<void>;
}

export function spawnMesh(options: {
  script: string;
  cwd: string;
  env: Record<string, string | undefined>;
}): MeshRun {
  const child = spawn(process.execPath, ["--import", "tsx", options.script], {
    cwd: options.cwd,
    env: { ...process.env, NO_COLOR: "1", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    text += chunk.toString("utf8");
    for (const waiter of waiters) waiter();
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      resolve({ code, signal });
      for (const waiter of waiters) waiter();
    });
  });
  const matches = (pattern: string | RegExp) =>
    typeof pattern === "string" ? text.includes(pattern) : pattern.test(text);
  return {
    child,
    output: () => text,
    exit,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exit;
      clearTimeout(timer);
    },
    waitFor(pattern, timeoutMs) {
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (matches(pattern)) {
            cleanup();
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`starter exited before printing ${pattern}:\n${text}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${text}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}

/**
 * A throw-away repository root whose services are the stand-in, sharing the
 * real node_modules, deploy/ and platform/ through symlinks.
 */
export function createStandInRoot(options: { seed?: string } = {}): string {
  const repo = moduleRoot();
  const root = mkdtempSync(path.join(tmpdir(), "mesh-root-"));
  for (const entry of ["node_modules", "deploy", "platform"]) {
    symlinkSync(path.join(repo, entry), path.join(root, entry));
  }
  const standIn = path.join(repo, "deploy/local/test-support/stand-in-service.ts");
  for (const name of SERVICE_NAMES) {
    mkdirSync(path.join(root, "services", name), { recursive: true });
    symlinkSync(standIn, path.join(root, "services", name, "main.ts"));
  }
  if (options.seed !== undefined) {
    writeFileSync(path.join(root, "services", "catalog", "seed.ts"), options.seed);
  }
  return root;
}
