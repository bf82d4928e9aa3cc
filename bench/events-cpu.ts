/**
 * CPU accounting for the event benchmarks: this process, nats-server and this
 * run's Postgres backends (application_name = the bench schema), read from
 * /proc so another workload on a shared machine does not count.
 */
import { execFileSync } from "node:child_process";
import { loadavg } from "node:os";
import type { Sql } from "postgres";
import { procCpuMicros } from "./proc-cpu.js";

function natsServerPid(): number | undefined {
  try {
    const out = execFileSync("pgrep", ["-o", "nats-server"], { encoding: "utf8" }).trim();
    return out ? Number(out) : undefined;
  } catch {
    return undefined;
  }
}

export interface CpuSnapshot {
  node: number;
  nats: number;
  pg: Map<number, number>;
}

/** `extraPids`: more Node processes of the run (e.g. a consumer process), counted as node. */
export function cpuMeter(sql: Sql, applicationName: string, extraPids: number[] = []) {
  const natsPid = natsServerPid();
  const snapshot = async (): Promise<CpuSnapshot> => {
    const rows = await sql<{ pid: number }[]>`
      select pid from pg_stat_activity where application_name = ${applicationName}`;
    const pg = new Map<number, number>();
    for (const { pid } of rows) pg.set(pid, procCpuMicros(pid));
    const usage = process.cpuUsage();
    let node = usage.user + usage.system;
    for (const pid of extraPids) node += procCpuMicros(pid);
    return { node, nats: natsPid ? procCpuMicros(natsPid) : 0, pg };
  };
  /** "node N µs, postgres N µs, nats-server N µs, total N µs per event; load average …" */
  const report = (start: CpuSnapshot, end: CpuSnapshot, events: number): string => {
    let pg = 0;
    // Backends that connected during the interval started from zero.
    for (const [pid, micros] of end.pg) pg += micros - (start.pg.get(pid) ?? 0);
    const node = end.node - start.node;
    const nats = end.nats - start.nats;
    const per = (micros: number) => (micros / events).toFixed(0);
    return (
      `CPU µs/event: node ${per(node)}, postgres ${per(pg)}, nats-server ${per(nats)}, ` +
      `total ${per(node + pg + nats)}; load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}`
    );
  };
  return { snapshot, report };
}

/**
 * With PROFILE_DIR set, records a V8 CPU profile of one stage into
 * `<PROFILE_DIR>/<label>.cpuprofile` (open it in Chrome DevTools), so a stage
 * can be studied without the start-up and the other stages in the way.
 */
export async function profiled<T>(label: string, run: () => Promise<T>): Promise<T> {
  const dir = process.env.PROFILE_DIR;
  if (!dir) return run();
  const { Session } = await import("node:inspector/promises");
  const { mkdirSync, writeFileSync } = await import("node:fs");
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
  try {
    return await run();
  } finally {
    const { profile } = await session.post("Profiler.stop");
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/${label}.cpuprofile`, JSON.stringify(profile));
    session.disconnect();
  }
}
