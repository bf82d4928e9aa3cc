import { type ChildProcess, spawn } from "node:child_process";
import type { Readable } from "node:stream";

/**
 * Child processes of the mesh. Each runs in its own process group
 * (`detached`), so a Ctrl-C in the terminal reaches only the starter, which
 * then stops the services before the infrastructure they depend on; and a
 * SIGKILL of the group also takes down grandchildren (e.g. the Postgres
 * server under its runner).
 */

const COLORS = [36, 33, 35, 32, 34, 96, 93, 95, 92, 94];

export type LinePrinter = (tag: string, line: string) => void;

/** Writes `[tag] line` to stdout, the tag padded and coloured per tag. */
export function createLinePrinter(options: {
  color: boolean;
  width: number;
  write?: (text: string) => void;
}): LinePrinter {
  const write = options.write ?? ((text: string) => process.stdout.write(text));
  const colors = new Map<string, number>();
  return (tag, line) => {
    const label = `[${tag}]`.padEnd(options.width + 2);
    if (!options.color) {
      write(`${label} ${line}\n`);
      return;
    }
    let color = colors.get(tag);
    if (color === undefined) {
      color = COLORS[colors.size % COLORS.length] ?? 36;
      colors.set(tag, color);
    }
    write(`\u001b[${color}m${label}\u001b[0m ${line}\n`);
  };
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly tag: string;
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  /** Set once the process has exited. */
  exitStatus(): ExitStatus | undefined;
  /** The most recent output lines (stdout and stderr interleaved). */
  lastLines(count?: number): string[];
  /**
   * SIGTERM, then SIGKILL of the whole group after `graceMs`.
   * Resolves to how it ended.
   */
  stop(graceMs: number, signal?: NodeJS.Signals): Promise<"exited" | "killed">;
  /** Immediate SIGKILL of the process group while it runs; safe in an 'exit' handler. */
  killNow(): void;
}

export class ProcessStartError extends Error {
  override name = "ProcessStartError";
}

export function startProcess(options: {
  tag: string;
  command: string;
  args: readonly string[];
  cwd: string;
  env: Record<string, string | undefined>;
  print: LinePrinter;
  historySize?: number;
}): ManagedProcess {
  const history: string[] = [];
  const historySize = options.historySize ?? 60;
  const child: ChildProcess = spawn(options.command, [...options.args], {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  if (child.pid === undefined) {
    // spawn reports ENOENT asynchronously; surface it synchronously with the command name.
    child.on("error", () => {});
    throw new ProcessStartError(`could not start ${options.tag}: ${options.command} not found`);
  }
  const pid = child.pid;
  const onLine = (line: string) => {
    history.push(line);
    if (history.length > historySize) history.shift();
    options.print(options.tag, line);
  };
  const stdoutDone = pipeLines(child.stdout, onLine);
  const stderrDone = pipeLines(child.stderr, onLine);

  let status: ExitStatus | undefined;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.on("exit", (code, signal) => {
      status = { code, signal };
      // Let the remaining buffered output reach the terminal before reporting the exit.
      // Bounded: a grandchild that inherited the pipes may keep them open.
      const flushed = Promise.all([stdoutDone, stderrDone]);
      const bounded = new Promise((done) => setTimeout(done, 1000).unref());
      void Promise.race([flushed, bounded]).then(() => resolve({ code, signal }));
    });
  });

  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {
      // No such group any more.
    }
  };

  return {
    tag: options.tag,
    pid,
    exited,
    exitStatus: () => status,
    lastLines: (count = 20) => history.slice(-count),
    async stop(graceMs, signal = "SIGTERM") {
      if (status === undefined) {
        try {
          process.kill(pid, signal);
        } catch {
          // Exited between the check and the signal.
        }
        let timer: NodeJS.Timeout | undefined;
        const outcome = await Promise.race([
          exited.then(() => "exited" as const),
          new Promise<"timeout">((resolve) => {
            timer = setTimeout(() => resolve("timeout"), graceMs);
          }),
        ]);
        clearTimeout(timer);
        if (outcome === "timeout") {
          killGroup("SIGKILL");
          await exited;
          return "killed";
        }
      }
      await exited;
      // Anything the process left behind in its group (grandchildren) goes too.
      killGroup("SIGKILL");
      return "exited";
    },
    killNow() {
      if (status === undefined) killGroup("SIGKILL");
    },
  };
}

function pipeLines(stream: Readable | null, onLine: (line: string) => void): Promise<void> {
  if (!stream) return Promise.resolve();
  return new Promise((resolve) => {
    let buffered = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      buffered += chunk;
      let index = buffered.indexOf("\n");
      while (index !== -1) {
        onLine(buffered.slice(0, index).replace(/\r$/, ""));
        buffered = buffered.slice(index + 1);
        index = buffered.indexOf("\n");
      }
    });
    stream.on("close", () => {
      if (buffered !== "") onLine(buffered);
      resolve();
    });
  });
}

export function describeExit(status: ExitStatus): string {
  return status.signal ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
}
