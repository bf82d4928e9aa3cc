import type { BackgroundTask } from "./run-service.js";

export interface PeriodicTask extends BackgroundTask {
  /** True once stop() was called (until the next start()); long runs check it to end early. */
  readonly stopped: boolean;
}

/**
 * Runs `run` every `intervalMs` (measured from the end of the previous run, so
 * runs never overlap) between start() and stop(); stop() waits for a run in
 * progress. Failures go to `onError` and the schedule continues.
 */
export function createPeriodicTask(options: {
  name: string;
  intervalMs: number;
  run(): Promise<unknown>;
  onError(error: unknown): void;
}): PeriodicTask {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  let started = false;
  let stopped = false;
  const schedule = () => {
    if (!started || stopped) return;
    timer = setTimeout(() => {
      running = options.run().catch(options.onError).finally(schedule);
    }, options.intervalMs);
    timer.unref();
  };
  return {
    name: options.name,
    get stopped() {
      return stopped;
    },
    start() {
      started = true;
      stopped = false;
      schedule();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
