import type { Client, ServiceImpl } from "@connectrpc/connect";
import type { ProbeService } from "../../gen/platform/testing/v1/probe_pb.js";
import {
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
} from "../errors/domain-errors.js";

/** Test-only implementation of platform.testing.v1.ProbeService. */
export function createProbeService(
  downstream?: () => Client<typeof ProbeService>,
): ServiceImpl<typeof ProbeService> {
  return {
    async echo(req, ctx) {
      if (req.delayMs > 0) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, req.delayMs);
          ctx.signal.addEventListener(
            "abort",
            () => {
              clearTimeout(timer);
              reject(ctx.signal.reason);
            },
            { once: true },
          );
        });
      }
      const remaining = ctx.timeoutMs();
      return {
        payload: req.payload,
        text: req.text,
        deadlineRemainingMs: BigInt(remaining === undefined ? -1 : Math.round(remaining)),
      };
    },
    async relay(req) {
      if (!downstream) throw new Error("no downstream configured");
      const echo = await downstream().echo(req.echo ?? {});
      return { echo };
    },
    fail(req) {
      switch (req.kind) {
        case "invalid_argument":
          throw new InvalidArgumentError([
            { field: "items[0].quantity", description: "must be greater than 0" },
          ]);
        case "not_found":
          throw new NotFoundError("product", "0190f0f0-0000-7000-8000-000000000000");
        case "conflict":
          throw new ConflictError("order changed concurrently", "ORDER_VERSION_CONFLICT");
        case "exhausted":
          throw new ResourceExhaustedError("too many attempts", "RATE_LIMITED", 1500);
        default:
          throw new Error("database password=hunter2 at /srv/app.ts:42 exploded");
      }
    },
    async *count(req, ctx) {
      if (req.count < 0) {
        throw new InvalidArgumentError([{ field: "count", description: "must not be negative" }]);
      }
      for (let n = 1; n <= req.count; n++) {
        if (req.failAt === n) throw new ConflictError("stream interrupted", "STREAM_INTERRUPTED");
        if (ctx.signal.aborted) return;
        if (req.intervalMs > 0) await new Promise((r) => setTimeout(r, req.intervalMs));
        yield { n };
      }
    },
  };
}
