import { existsSync } from "node:fs";
import path from "node:path";
import { ConfigError, type Env, redact } from "../../platform/config/env.js";
import { ensureDatabase, ensureInfra, InfraError, type InfraReport } from "./infra.js";
import { acquireMeshLock, isProcessAlive, MeshAlreadyRunningError, type MeshLock } from "./lock.js";
import {
  type MeshConfig,
  readMeshConfig,
  type ServicePlan,
  scriptCommand,
  serviceEnv,
} from "./mesh-config.js";
import {
  createLinePrinter,
  describeExit,
  type LinePrinter,
  type ManagedProcess,
  startProcess,
} from "./processes.js";
import { isHttpReady, NotReadyError, StartAborted, tcpReachable, waitUntil } from "./readiness.js";

/**
 * `npm start`: infrastructure, then every service and the edge as separate
 * processes, then demo data, then the URLs. Shutdown runs in reverse: the
 * edge stops taking requests first, then the services drain, then the
 * infrastructure this run started itself.
 */

export const READY_LINE = "commerce-mesh is ready";

export class MeshStartError extends Error {
  override name = "MeshStartError";
}

/**
 * Extension point for demo data: after every service is ready, each service's
 * optional `services/<name>/seed.ts` runs once, in mesh order, with that
 * service's environment (PORT, DB_SCHEMA, upstream URLs, ...). A seed must be
 * idempotent: it runs on every `npm start`. MESH_SEED=false skips them.
 */
export const SEED_SCRIPT = "seed";

export async function runMesh(env: Env, root?: string): Promise<number> {
  let config: MeshConfig;
  try {
    config = readMeshConfig(env, root);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`commerce-mesh: ${error.message}`);
      return 2;
    }
    throw error;
  }
  let lock: MeshLock;
  try {
    lock = acquireMeshLock(config.dataDir);
  } catch (error) {
    if (error instanceof MeshAlreadyRunningError) {
      console.error(error.message);
      return 1;
    }
    throw error;
  }
  return new Mesh(config, env, lock).run();
}

class Mesh {
  private readonly print: LinePrinter;
  private readonly infra: ManagedProcess[] = [];
  private readonly services = new Map<string, ManagedProcess>();
  private readonly abort = new AbortController();
  private stopping: Promise<number> | undefined;
  private running = false;
  private resolveFinished: (code: number) => void = () => {};
  /** Settles with the exit code once shutdown has completed. */
  private readonly finished = new Promise<number>((resolve) => {
    this.resolveFinished = resolve;
  });

  constructor(
    private readonly config: MeshConfig,
    private readonly env: Env,
    private readonly lock: MeshLock,
  ) {
    this.print = createLinePrinter({ color: config.color, width: 13 });
  }

  async run(): Promise<number> {
    const onSignal = (signal: NodeJS.Signals) => {
      if (this.stopping) {
        // A second Ctrl-C means "now": no more waiting for graceful exits.
        this.log(`${signal} again: killing everything now`);
        this.killAll();
        this.lock.release();
        process.exit(130);
      }
      this.log(`${signal} received: stopping the mesh (Ctrl-C again to kill it at once)`);
      void this.shutdown(0);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    process.on("SIGHUP", onSignal);
    // Last resort if the starter itself dies: no orphaned servers, no lock left behind.
    process.on("exit", () => {
      this.killAll();
      this.lock.release();
    });

    try {
      await this.start();
    } catch (error) {
      if (!this.stopping) {
        this.reportStartFailure(error);
        void this.shutdown(1);
      }
    }
    // Running until a signal or an unexpected exit calls shutdown().
    return this.finished;
  }

  private async start(): Promise<void> {
    const { config } = this;
    await this.checkPortsFree();
    const reports = await ensureInfra({
      config,
      print: this.print,
      signal: this.abort.signal,
      timeoutMs: config.readyTimeoutMs,
      onStarted: (child) => {
        this.infra.push(child);
        // Started after shutdown began collecting processes: stop it on its own.
        if (this.stopping) void child.stop(config.stopGraceMs);
        this.watch(child);
        this.recordChildren();
      },
    });
    this.throwIfStopping();
    if (await ensureDatabase(config.databaseUrl)) {
      this.log(`created database ${new URL(config.databaseUrl).pathname.slice(1)}`);
    }
    this.throwIfStopping();

    for (const service of config.services) this.startService(service);
    this.recordChildren();
    await Promise.all(
      config.services.map((service) =>
        waitUntil({
          tag: service.name,
          what: `GET ${service.url}/readyz`,
          check: () => isHttpReady(service.url),
          timeoutMs: config.readyTimeoutMs,
          process: this.services.get(service.name),
          signal: this.abort.signal,
        }),
      ),
    );
    if (config.seed) await this.runSeeds();
    this.throwIfStopping();

    this.running = true;
    for (const child of [...this.infra, ...this.services.values()]) {
      const status = child.exitStatus();
      if (status) throw new MeshStartError(`${child.tag} ${describeExit(status)}`);
    }
    this.printBanner(reports);
  }

  private throwIfStopping(): void {
    if (this.stopping) throw new StartAborted("start-up interrupted");
  }

  private async checkPortsFree(): Promise<void> {
    for (const service of this.config.services) {
      const host = new URL(service.url).hostname.replace(/^\[(.*)\]$/, "$1");
      if (await tcpReachable(host, service.port, 500)) {
        const leftovers = Object.values(this.lock.previous?.children ?? {}).filter(isProcessAlive);
        const hint =
          leftovers.length > 0
            ? `\nAn earlier npm start died without stopping its processes; they still run: ` +
              `stop them with \`kill ${leftovers.join(" ")}\`.`
            : "";
        throw new MeshStartError(
          `port ${service.port} (${service.name}) is already in use by another process. ` +
            "Stop that process, or start the mesh on other ports with MESH_PORT_BASE=<port> " +
            `(the edge takes that port, the services the next four).${hint}`,
        );
      }
    }
  }

  private startService(service: ServicePlan): void {
    const { file, args } = scriptCommand(this.config.repoRoot, `services/${service.name}/main`);
    if (!existsSync(file)) {
      throw new MeshStartError(`${path.relative(this.config.repoRoot, file)} does not exist`);
    }
    const child = startProcess({
      tag: service.name,
      command: process.execPath,
      args,
      cwd: this.config.repoRoot,
      env: serviceEnv(this.config, service, this.env),
      print: this.print,
    });
    this.services.set(service.name, child);
    this.watch(child);
  }

  private async runSeeds(): Promise<void> {
    for (const service of this.config.services) {
      const { file, args } = scriptCommand(
        this.config.repoRoot,
        `services/${service.name}/${SEED_SCRIPT}`,
      );
      if (!existsSync(file)) continue;
      const tag = `${service.name}:seed`;
      this.log(`seeding ${service.name} (${path.relative(this.config.repoRoot, file)})`);
      const seed = startProcess({
        tag,
        command: process.execPath,
        args,
        cwd: this.config.repoRoot,
        env: serviceEnv(this.config, service, this.env),
        print: this.print,
      });
      this.services.set(tag, seed);
      const status = await Promise.race([
        seed.exited,
        new Promise<undefined>((resolve) =>
          this.abort.signal.addEventListener("abort", () => resolve(undefined)),
        ),
      ]);
      if (status === undefined) throw new StartAborted("start-up interrupted");
      this.services.delete(tag);
      if (status.code !== 0) {
        throw new NotReadyError(tag, `the seed ${describeExit(status)}`, seed.lastLines());
      }
    }
  }

  /** After start-up, any process that exits on its own takes the mesh down loudly. */
  private watch(child: ManagedProcess): void {
    void child.exited.then((status) => {
      if (!this.running || this.stopping) return;
      this.log(`${child.tag} ${describeExit(status)} unexpectedly; stopping the mesh`);
      for (const line of child.lastLines()) this.print(child.tag, line);
      void this.shutdown(1);
    });
  }

  private shutdown(code: number): Promise<number> {
    if (this.stopping) return this.stopping;
    this.abort.abort();
    this.stopping = this.stopEverything().then(
      () => code,
      (error: unknown) => {
        this.log(`error while stopping: ${String(error)}`);
        return code === 0 ? 1 : code;
      },
    );
    void this.stopping.then((result) => this.resolveFinished(result));
    return this.stopping;
  }

  private async stopEverything(): Promise<void> {
    const grace = this.config.stopGraceMs;
    const stop = async (child: ManagedProcess) => {
      const outcome = await child.stop(grace);
      if (outcome === "killed") this.log(`${child.tag} did not stop within ${grace} ms; killed it`);
    };
    // The edge first, so no new requests arrive while the services drain.
    const edge = this.services.get("edge");
    if (edge) await stop(edge);
    await Promise.all([...this.services.values()].filter((c) => c !== edge).map(stop));
    for (const child of [...this.infra].reverse()) await stop(child);
    this.lock.release();
    this.log("stopped");
  }

  private killAll(): void {
    for (const child of [...this.services.values(), ...this.infra]) {
      if (!child.exitStatus()) child.killNow();
    }
  }

  private recordChildren(): void {
    const children: Record<string, number> = {};
    for (const child of [...this.infra, ...this.services.values()]) children[child.tag] = child.pid;
    this.lock.recordChildren(children);
  }

  private reportStartFailure(error: unknown): void {
    if (error instanceof NotReadyError) {
      this.log(error.message);
      if (error.lastLines.length > 0) {
        this.log(`last log lines of ${error.tag}:`);
        for (const line of error.lastLines) this.print(error.tag, line);
      }
      if (error.cause) this.log(`last error: ${String(error.cause)}`);
    } else if (error instanceof InfraError || error instanceof MeshStartError) {
      this.log(error.message);
    } else {
      this.log(
        `start-up failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
      );
    }
  }

  private log(message: string): void {
    for (const line of message.split("\n")) this.print("mesh", line);
  }

  private printBanner(reports: InfraReport[]): void {
    const byName = new Map(this.config.services.map((s) => [s.name, s]));
    const edge = byName.get("edge");
    const lines = [
      "",
      READY_LINE,
      "",
      `  edge       ${edge?.url}   REST (/v1/...), Connect, gRPC-Web and gRPC (h2c) on one port`,
    ];
    for (const service of this.config.services) {
      if (service.name === "edge") continue;
      lines.push(
        `  ${service.name.padEnd(10)} ${service.url}   Connect + gRPC (schema ${service.schema})`,
      );
    }
    lines.push("  probes     /healthz  /readyz  /metrics  grpc.health.v1.Health on every port");
    for (const report of reports) {
      const how = report.started
        ? `started locally, data in ${this.config.dataDir}`
        : "already running";
      lines.push(`  ${report.kind.padEnd(10)} ${redact(report.url)}   (${how})`);
    }
    lines.push("", "Press Ctrl-C to stop.", "");
    process.stdout.write(`${lines.join("\n")}\n`);
  }
}
