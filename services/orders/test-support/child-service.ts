import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

// Children must not outlive the test process, whatever way it ends.
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/** A free TCP port on 127.0.0.1 (bound and released; fine for tests). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface ChildService {
  name: string;
  url: string;
  port: number;
  process: ChildProcess;
  /** Output of the process so far (for failure messages). */
  output(): string;
  /** SIGTERM and wait (graceful drain). */
  stop(): Promise<void>;
  /** SIGKILL and wait: a crash. */
  kill(): Promise<void>;
  exited: Promise<number | null>;
}

/**
 * Runs a service's real entry point (`<entry>` relative to the repo root,
 * default services/<name>/main.ts) as its own Node process, as it runs in
 * production, and resolves once /readyz answers 200.
 */
export async function startChildService(
  name: string,
  env: Record<string, string>,
  options: {
    entry?: string;
    port?: number;
    readyTimeoutMs?: number;
    /** Resolve (instead of failing) when the process exits before it is ready (crash tests). */
    exitBeforeReadyIsOk?: boolean;
  } = {},
): Promise<ChildService> {
  const port = options.port ?? (await freePort());
  const entry = options.entry ?? `services/${name}/main.ts`;
  const child = spawn(process.execPath, ["--import", "tsx", entry], {
    cwd: ROOT,
    env: {
      ...process.env,
      LOG_LEVEL: process.env.TEST_CHILD_LOG_LEVEL ?? "warn",
      ...env,
      PORT: String(port),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  child.once("exit", () => live.delete(child));
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  let exitCode: number | null | undefined;
  void exited.then((code) => {
    exitCode = code;
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 90_000);
  for (;;) {
    if (exitCode !== undefined) {
      if (options.exitBeforeReadyIsOk) break;
      throw new Error(`${name} exited with ${exitCode} before it was ready:\n${output}`);
    }
    const ready = await fetch(`${url}/readyz`).then(
      (res) => res.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await exited;
      throw new Error(`${name} was not ready in time:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const signal = async (sig: NodeJS.Signals) => {
    if (exitCode === undefined) child.kill(sig);
    await exited;
  };
  return {
    name,
    url,
    port,
    process: child,
    output: () => output,
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
    exited,
  };
}
