import net from "node:net";
import { describeExit, type ManagedProcess } from "./processes.js";

export class NotReadyError extends Error {
  override name = "NotReadyError";
  constructor(
    readonly tag: string,
    reason: string,
    readonly lastLines: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(`${tag} did not become ready: ${reason}`, options);
  }
}

export class StartAborted extends Error {
  override name = "StartAborted";
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });

/**
 * Polls until `check` succeeds. Gives up early when the process it waits for
 * exits (its last log lines explain why far better than a timeout would).
 */
export async function waitUntil(options: {
  tag: string;
  check: () => Promise<boolean>;
  timeoutMs: number;
  process?: ManagedProcess | undefined;
  signal?: AbortSignal | undefined;
  intervalMs?: number;
  what: string;
}): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    if (options.signal?.aborted) throw new StartAborted("start-up interrupted");
    const exit = options.process?.exitStatus();
    if (exit) {
      throw new NotReadyError(
        options.tag,
        `the process ${describeExit(exit)}`,
        options.process?.lastLines() ?? [],
      );
    }
    try {
      if (await options.check()) return;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      throw new NotReadyError(
        options.tag,
        `${options.what} did not succeed within ${Math.round(options.timeoutMs / 1000)} s`,
        options.process?.lastLines() ?? [],
        { cause: lastError },
      );
    }
    await sleep(options.intervalMs ?? 250, options.signal);
  }
}

/** GET <url>/readyz answers 200. */
export async function isHttpReady(baseUrl: string, pathName = "/readyz"): Promise<boolean> {
  const response = await fetch(new URL(pathName, baseUrl), { signal: AbortSignal.timeout(2000) });
  await response.arrayBuffer();
  return response.status === 200;
}

/** A TCP connection to host:port is accepted within the timeout. */
export function tcpReachable(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (result: boolean) => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}
