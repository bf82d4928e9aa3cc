import { EventEmitter } from "node:events";

/** A dependency the service needs before it can take traffic. */
export interface ReadinessCheck {
  name: string;
  check(): Promise<void>;
}

export interface ReadinessReport {
  ready: boolean;
  checks: { name: string; ok: boolean; error?: string }[];
}

/**
 * Polls the checks in the background so /readyz and grpc Health answer from
 * memory (probes stay cheap and cannot pile up on a slow dependency).
 */
export class ReadinessMonitor extends EventEmitter<{ change: [boolean] }> {
  #report: ReadinessReport = { ready: false, checks: [] };
  #draining = false;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<ReadinessReport> | undefined;

  constructor(
    private readonly checks: ReadinessCheck[],
    private readonly intervalMs = 2000,
    private readonly checkTimeoutMs = 1500,
  ) {
    super();
  }

  get ready(): boolean {
    return this.#report.ready && !this.#draining;
  }

  get report(): ReadinessReport {
    return this.#draining ? { ...this.#report, ready: false } : this.#report;
  }

  async start(): Promise<ReadinessReport> {
    const report = await this.refresh();
    this.#timer = setInterval(() => void this.refresh(), this.intervalMs);
    this.#timer.unref();
    return report;
  }

  /** Shutdown starts: report not-ready from now on, whatever the checks say. */
  drain(): void {
    const before = this.ready;
    this.#draining = true;
    if (this.#timer) clearInterval(this.#timer);
    if (before) this.emit("change", false);
  }

  refresh(): Promise<ReadinessReport> {
    this.#running ??= this.#runChecks().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #runChecks(): Promise<ReadinessReport> {
    const checks = await Promise.all(
      this.checks.map(async (c) => {
        try {
          await withTimeout(c.check(), this.checkTimeoutMs, c.name);
          return { name: c.name, ok: true };
        } catch (error) {
          return { name: c.name, ok: false, error: (error as Error).message };
        }
      }),
    );
    const before = this.ready;
    this.#report = { ready: checks.every((c) => c.ok), checks };
    if (before !== this.ready) this.emit("change", this.ready);
    return this.report;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, name: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${name} check timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
