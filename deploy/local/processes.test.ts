import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { isProcessAlive } from "./lock.js";
import { createLinePrinter, ProcessStartError, startProcess } from "./processes.js";
import { isHttpReady, NotReadyError, waitUntil } from "./readiness.js";

const standIn = path.join(import.meta.dirname, "test-support", "stand-in-service.ts");

function recorder() {
  const lines: Array<[string, string]> = [];
  return { lines, print: (tag: string, line: string) => lines.push([tag, line]) };
}

function startStandIn(tag: string, env: Record<string, string> = {}) {
  const out = recorder();
  const child = startProcess({
    tag,
    command: process.execPath,
    args: ["--import", "tsx", standIn],
    cwd: process.cwd(),
    env: { ...process.env, PORT: "0", ...env },
    print: out.print,
  });
  return { child, out };
}

async function waitForLine(lines: Array<[string, string]>, text: string): Promise<string> {
  await waitUntil({
    tag: "test",
    what: `line containing ${text}`,
    check: async () => lines.some(([, line]) => line.includes(text)),
    timeoutMs: 30_000,
    intervalMs: 50,
  });
  return lines.find(([, line]) => line.includes(text))![1];
}

describe("managed processes", () => {
  it("tags every output line, stops gracefully on SIGTERM and flushes an unterminated last line", async () => {
    const { child, out } = startStandIn("catalog");
    onTestFinished(() => child.killNow());
    const listening = await waitForLine(out.lines, "listening on");
    const port = Number(listening.split(":").at(-1));
    expect(await isHttpReady(`http://127.0.0.1:${port}`)).toBe(true);

    expect(await child.stop(20_000)).toBe("exited");
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(out.lines).toContainEqual(["catalog", "got SIGTERM, stopping"]);
    expect(out.lines.at(-1)).toEqual(["catalog", "bye"]);
    expect(out.lines.every(([tag]) => tag === "catalog")).toBe(true);
    expect(child.lastLines(2)).toEqual(["got SIGTERM, stopping", "bye"]);
    expect(isProcessAlive(child.pid)).toBe(false);
  });

  it("kills a process that ignores SIGTERM once the grace period is over", async () => {
    const { child, out } = startStandIn("stubborn", { STAND_IN_IGNORE_TERM: "1" });
    try {
      await waitForLine(out.lines, "listening on");
      expect(await child.stop(500)).toBe("killed");
      expect((await child.exited).signal).toBe("SIGKILL");
      expect(out.lines).toContainEqual(["stubborn", "ignoring SIGTERM"]);
    } finally {
      child.killNow();
    }
  });

  it("takes down grandchildren left in the process group", async () => {
    const out = recorder();
    const script = `
      const { spawn } = require("node:child_process");
      const sleeper = spawn("sleep", ["600"], { stdio: "ignore" });
      console.log("grandchild " + sleeper.pid);
      process.on("SIGTERM", () => process.exit(0));
      setInterval(() => {}, 1000);
    `;
    const child = startProcess({
      tag: "parent",
      command: process.execPath,
      args: ["-e", script],
      cwd: process.cwd(),
      env: process.env,
      print: out.print,
    });
    onTestFinished(() => child.killNow());
    const line = await waitForLine(out.lines, "grandchild ");
    const grandchild = Number(line.split(" ")[1]);
    expect(isProcessAlive(grandchild)).toBe(true);
    expect(await child.stop(10_000)).toBe("exited");
    await waitUntil({
      tag: "test",
      what: "grandchild gone",
      check: async () => !isProcessAlive(grandchild),
      timeoutMs: 10_000,
      intervalMs: 50,
    });
  });

  it("reports a missing command by name", () => {
    expect(() =>
      startProcess({
        tag: "nats",
        command: "/nonexistent/nats-server",
        args: [],
        cwd: process.cwd(),
        env: process.env,
        print: () => {},
      }),
    ).toThrow(ProcessStartError);
  });
});

describe("readiness", () => {
  it("names the process and shows its last lines when it exits before becoming ready", async () => {
    const { child } = startStandIn("payments", {
      STAND_IN_NEVER_READY: "1",
      STAND_IN_CRASH_AFTER_MS: "300",
    });
    onTestFinished(() => child.killNow());
    const error = await waitUntil({
      tag: "payments",
      what: "never",
      check: async () => false,
      timeoutMs: 60_000,
      process: child,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotReadyError);
    expect((error as NotReadyError).message).toBe(
      "payments did not become ready: the process exited with code 3",
    );
    expect((error as NotReadyError).lastLines).toContain("stand-in crashing on purpose");
  });

  it("times out with the check's description while the process keeps running", async () => {
    const { child, out } = startStandIn("orders", { STAND_IN_NEVER_READY: "1" });
    try {
      const listening = await waitForLine(out.lines, "listening on");
      const url = `http://127.0.0.1:${listening.split(":").at(-1)}`;
      const error = await waitUntil({
        tag: "orders",
        what: `GET ${url}/readyz`,
        check: () => isHttpReady(url),
        timeoutMs: 1000,
        process: child,
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(NotReadyError);
      expect((error as Error).message).toMatch(
        /^orders did not become ready: GET .*\/readyz did not succeed within 1 s$/,
      );
    } finally {
      await child.stop(5000);
      child.killNow();
    }
  });
});

describe("line printer", () => {
  it("pads tags and colours them per tag only when colour is on", () => {
    const plain: string[] = [];
    createLinePrinter({ color: false, width: 8, write: (t) => plain.push(t) })("edge", "hello");
    expect(plain).toEqual(["[edge]     hello\n"]);

    const coloured: string[] = [];
    const print = createLinePrinter({ color: true, width: 8, write: (t) => coloured.push(t) });
    print("edge", "a");
    print("catalog", "b");
    print("edge", "c");
    expect(coloured[0]).toBe("\u001b[36m[edge]    \u001b[0m a\n");
    expect(coloured[1]).toBe("\u001b[33m[catalog] \u001b[0m b\n");
    expect(coloured[2]).toBe(coloured[0]!.replace(" a\n", " c\n"));
  });
});
