/**
 * CPU accounting for the event benchmarks: this process, nats-server and this
 * run's Postgres backends (application_name = the bench schema), read from
 * /proc so another workload on a shared machine does not count.
 */
import { execFileSync } from "node:child_process";
import { loadavg } from "node:os";
import type { Sql } from "postgres";
import { procCpuMicros } from "./proc-cpu.js";

/** The oldest nats-server process on this host, if any. */
export function natsServerPid(): number | undefined {
  try {
    const out = execFileSync("pgrep", ["-o", "nats-server"], { encoding: "utf8" }).trim();
    return out ? Number(out) : undefined;
  } catch {
    return undefined;
  }
}

export interface CpuSnapshot {
  /** Node CPU by process: "this" and each extra pid's label. */
  nodeBy: Map<string, number>;
  nats: number;
  pg: Map<number, { role: string; micros: number }>;
}

/**
 * Application name of a bench connection pool with a role (`<schema>:writers`):
 * the meter counts it with the run's backends and breaks Postgres CPU down by role.
 */
export const roleApplicationName = (applicationName: string, role: string) =>
  `${applicationName}:${role}`;

/**
 * `extraPids`: more Node processes of the run (e.g. a consumer process),
 * counted as node; a label names them in the breakdown.
 */
export function cpuMeter(
  sql: Sql,
  applicationName: string,
  extraPids: number[] | Record<string, number> = [],
) {
  const natsPid = natsServerPid();
  const extras = Array.isArray(extraPids)
    ? extraPids.map((pid) => [`pid ${pid}`, pid] as const)
    : Object.entries(extraPids);
  const snapshot = async (): Promise<CpuSnapshot> => {
    const rows = await sql<{ pid: number; application_name: string }[]>`
      select pid, application_name from pg_stat_activity
      where application_name = ${applicationName}
         or starts_with(application_name, ${`${applicationName}:`})`;
    const pg = new Map<number, { role: string; micros: number }>();
    for (const { pid, application_name: name } of rows) {
      const role = name.slice(applicationName.length + 1) || "other";
      pg.set(pid, { role, micros: procCpuMicros(pid) });
    }
    const usage = process.cpuUsage();
    const nodeBy = new Map<string, number>([["this", usage.user + usage.system]]);
    for (const [label, pid] of extras) nodeBy.set(label, procCpuMicros(pid));
    return { nodeBy, nats: natsPid ? procCpuMicros(natsPid) : 0, pg };
  };
  /** "node N µs, postgres N µs, nats-server N µs, total N µs per event; load average …" */
  const report = (start: CpuSnapshot, end: CpuSnapshot, events: number): string => {
    let pg = 0;
    const pgBy = new Map<string, number>();
    // Backends that connected during the interval started from zero.
    for (const [pid, { role, micros }] of end.pg) {
      const used = micros - (start.pg.get(pid)?.micros ?? 0);
      pg += used;
      pgBy.set(role, (pgBy.get(role) ?? 0) + used);
    }
    let node = 0;
    for (const [label, micros] of end.nodeBy) node += micros - (start.nodeBy.get(label) ?? 0);
    const nats = end.nats - start.nats;
    const per = (micros: number) => (micros / events).toFixed(0);
    const breakdown = (by: Map<string, number>, startBy?: Map<string, number>) =>
      [...by]
        .map(([label, micros]) => `${label} ${per(micros - (startBy?.get(label) ?? 0))}`)
        .join(" / ");
    const pgDetail = pgBy.size > 1 || !pgBy.has("other") ? ` (${breakdown(pgBy)})` : "";
    const nodeDetail = end.nodeBy.size > 1 ? ` (${breakdown(end.nodeBy, start.nodeBy)})` : "";
    return (
      `CPU µs/event: node ${per(node)}${nodeDetail}, postgres ${per(pg)}${pgDetail}, nats-server ${per(nats)}, ` +
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
