import { runService } from "../../../platform/service/run-service.js";
import type { SagaEffect } from "../saga/checkout-steps.js";
import { createOrdersDefinition } from "../service.js";

/**
 * The orders service with a fault: the process kills itself (SIGKILL, no
 * cleanup) right after the saga effect named in ORDERS_TEST_CRASH_AFTER
 * succeeded remotely and before it is recorded. Crash-resume tests only.
 */
const crashAfter = process.env.ORDERS_TEST_CRASH_AFTER as SagaEffect | undefined;

await runService(
  createOrdersDefinition({
    hooks: {
      afterEffect(effect) {
        if (effect === crashAfter) process.kill(process.pid, "SIGKILL");
      },
    },
  }),
);
