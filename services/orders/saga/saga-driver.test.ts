import pino from "pino";
import type { Sql } from "postgres";
import { describe, expect, it } from "vitest";
import { createSagaDriver } from "./saga-driver.js";
import type { AdvanceResult, SagaRunner } from "./saga-runner.js";
import { RetryableStepError } from "./upstream-errors.js";

/**
 * Scheduling of the fast path only: the runner is scripted and the
 * "transaction" just calls through (the real saga is covered end to end in
 * checkout.test.ts and crash-resume.test.ts).
 */
function scripted(steps: Record<string, number>, failAt: Record<string, number> = {}) {
  const taken: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const sequence: Record<string, number> = {};
  const runner: SagaRunner = {
    async advance(_tx, orderId): Promise<AdvanceResult> {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
      const done = sequence[orderId] ?? 1;
      if (failAt[orderId] === done) throw new RetryableStepError("dependency down");
      if (done - 1 >= (steps[orderId] ?? 0)) return { outcome: "idle", sequence: done };
      sequence[orderId] = done + 1;
      taken.push(`${orderId}:${done + 1}`);
      return { outcome: "advanced", sequence: done + 1 };
    },
  };
  const sql = { begin: (fn: (tx: unknown) => unknown) => fn({}) } as unknown as Sql;
  return { runner, sql, taken, maxInFlight: () => maxInFlight };
}

const logger = pino({ level: "silent" });

async function settle(driver: { active: number }) {
  while (driver.active > 0) await new Promise((r) => setTimeout(r, 5));
}

describe("saga fast path", () => {
  it("takes every step of an order in sequence and remembers what it committed", async () => {
    const s = scripted({ a: 3 });
    const driver = createSagaDriver({ sql: s.sql, runner: s.runner, logger, concurrency: 2 });
    driver.kick("a");
    await settle(driver);
    expect(s.taken).toEqual(["a:2", "a:3", "a:4"]);
    expect(driver.knowsLater("a", 3)).toBe(true);
    expect(driver.knowsLater("a", 4)).toBe(false);
    expect(driver.knowsLater("b", 1)).toBe(false);
  });

  it("never runs more orders at once than its concurrency, and queues the rest in order", async () => {
    const s = scripted({ a: 2, b: 2, c: 2, d: 2 });
    const driver = createSagaDriver({ sql: s.sql, runner: s.runner, logger, concurrency: 2 });
    for (const id of ["a", "b", "c", "d"]) driver.kick(id);
    await settle(driver);
    expect(s.maxInFlight()).toBe(2);
    expect(s.taken.filter((t) => t.endsWith(":3"))).toHaveLength(4);
    // c and d waited for a and b.
    expect(s.taken.indexOf("c:2")).toBeGreaterThan(s.taken.indexOf("a:2"));
  });

  it("stops at a failing step without retrying (the consumer retries with backoff)", async () => {
    const s = scripted({ a: 5 }, { a: 3 });
    const driver = createSagaDriver({ sql: s.sql, runner: s.runner, logger, concurrency: 1 });
    driver.kick("a");
    await settle(driver);
    expect(s.taken).toEqual(["a:2", "a:3"]);
    await driver.stop();
    driver.kick("a");
    expect(driver.active).toBe(0);
  });
});
