import { describe, expect, it } from "vitest";
import { createPeriodicTask } from "./periodic-task.js";

describe("periodic background task", () => {
  it("runs repeatedly without overlap, survives failures, and stop() waits for a run", async () => {
    let runs = 0;
    let concurrent = 0;
    let maxConcurrent = 0;
    const errors: unknown[] = [];
    const task = createPeriodicTask({
      name: "tick",
      intervalMs: 5,
      async run() {
        concurrent++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        runs++;
        await new Promise((r) => setTimeout(r, 10));
        concurrent--;
        if (runs === 2) throw new Error("one bad run");
      },
      onError: (error) => errors.push(error),
    });
    expect(task.stopped).toBe(false);
    task.start();
    while (runs < 4) await new Promise((r) => setTimeout(r, 5));
    await task.stop();
    expect(task.stopped).toBe(true);
    const after = runs;
    expect(concurrent).toBe(0);
    await new Promise((r) => setTimeout(r, 40));
    expect(runs).toBe(after);
    expect(maxConcurrent).toBe(1);
    expect(errors).toHaveLength(1);
  });
});
