import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type Health, HealthCheckResponse_ServingStatus } from "../../gen/health/v1/health_pb.js";
import type { ReadinessMonitor } from "./readiness.js";

/**
 * grpc.health.v1.Health backed by the readiness monitor. "" is the whole
 * server; each served service name reports the same status because they
 * share the process and its dependencies.
 */
export function createHealthService(
  readiness: ReadinessMonitor,
  serviceNames: string[],
): ServiceImpl<typeof Health> {
  const known = new Set(["", ...serviceNames]);
  const status = () =>
    readiness.ready
      ? HealthCheckResponse_ServingStatus.SERVING
      : HealthCheckResponse_ServingStatus.NOT_SERVING;
  return {
    check(req) {
      if (!known.has(req.service)) {
        throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      }
      return { status: status() };
    },
    list() {
      const current = status();
      return {
        statuses: Object.fromEntries([...known].map((name) => [name, { status: current }])),
      };
    },
    async *watch(req, context) {
      if (!known.has(req.service)) {
        yield { status: HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN };
        return;
      }
      let last = status();
      yield { status: last };
      while (!context.signal.aborted) {
        const next = await new Promise<boolean | undefined>((resolve) => {
          const onAbort = () => {
            readiness.off("change", onChange);
            resolve(undefined);
          };
          const onChange = (ready: boolean) => {
            context.signal.removeEventListener("abort", onAbort);
            resolve(ready);
          };
          readiness.once("change", onChange);
          context.signal.addEventListener("abort", onAbort, { once: true });
        });
        if (next === undefined) return;
        const current = status();
        if (current !== last) {
          last = current;
          yield { status: current };
        }
      }
    },
  };
}
