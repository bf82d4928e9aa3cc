import type { Logger } from "pino";
import type { Sql } from "postgres";
import type { SagaRunner } from "./saga-runner.js";
import { RetryableStepError } from "./upstream-errors.js";

/**
 * The saga's fast path. Recording a step appends an event, and the durable
 * consumer would take the next step when that event comes back from
 * JetStream (outbox relay → stream → consumer: a few ms per step, more under
 * load). The driver instead takes the following steps at once, in this
 * process, each in its own short transaction under the order's row lock, so
 * every step is still recorded before the next starts.
 *
 * It is only an accelerator: it never retries (a failed step is left to the
 * consumer's redelivery with backoff, and to the deadline sweeper), it queues
 * a bounded number of orders when busy and drops the rest, and a crash loses
 * nothing because the events it appended are delivered to the consumer
 * anyway (which finds them already handled).
 */
export interface SagaDriver {
  /** Drive this order now, if there is capacity. */
  kick(orderId: string): void;
  /**
   * True when this process already committed a later event of the order:
   * a delivery of `sequence` is then certainly stale (no query needed).
   */
  knowsLater(orderId: string, sequence: number): boolean;
  /** Waits for running drives (shutdown). */
  stop(): Promise<void>;
  readonly active: number;
}

export function createSagaDriver(deps: {
  sql: Sql;
  runner: SagaRunner;
  logger: Logger;
  /** Orders driven at once; each holds one DB connection during a step. */
  concurrency: number;
  /** Orders waiting for a slot; beyond this the consumer takes them. */
  maxQueued?: number;
}): SagaDriver {
  const maxQueued = deps.maxQueued ?? 10_000;
  // Insertion-ordered: the oldest waiting order gets the next free slot.
  const queued = new Set<string>();
  const running = new Map<string, Promise<void>>();
  // Last sequence this process committed per order (bounded, oldest evicted).
  const committed = new Map<string, number>();
  const note = (orderId: string, sequence: number) => {
    committed.delete(orderId);
    committed.set(orderId, sequence);
    if (committed.size > 10_000) committed.delete(committed.keys().next().value!);
  };
  const again = new Set<string>();
  let stopped = false;

  async function drive(orderId: string): Promise<void> {
    try {
      do {
        again.delete(orderId);
        for (let steps = 0; steps < 16 && !stopped; steps++) {
          const result = await deps.sql.begin((tx) => deps.runner.advance(tx, orderId));
          if (result.outcome !== "advanced") break;
          note(orderId, result.sequence);
        }
      } while (again.has(orderId) && !stopped);
    } catch (error) {
      const level = error instanceof RetryableStepError ? "debug" : "warn";
      deps.logger[level]({ err: error, orderId }, "saga fast path stopped; the consumer resumes");
    } finally {
      running.delete(orderId);
      again.delete(orderId);
      const next = queued.values().next();
      if (!next.done && !stopped) {
        queued.delete(next.value);
        running.set(next.value, drive(next.value));
      }
    }
  }

  return {
    get active() {
      return running.size;
    },
    knowsLater(orderId, sequence) {
      return (committed.get(orderId) ?? 0) > sequence;
    },
    kick(orderId) {
      if (stopped) return;
      if (running.has(orderId)) {
        again.add(orderId);
        return;
      }
      if (running.size >= deps.concurrency) {
        if (queued.size < maxQueued) queued.add(orderId);
        return;
      }
      running.set(orderId, drive(orderId));
    },
    async stop() {
      stopped = true;
      queued.clear();
      await Promise.allSettled([...running.values()]);
    },
  };
}
