import { Code, type ConnectError, type Interceptor } from "@connectrpc/connect";
import { context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Logger } from "pino";
import { toConnectError } from "../errors/to-connect-error.js";
import { type Metrics, perKey } from "../telemetry/metrics.js";
import { runWithCallContext } from "./call-context.js";
import { parseGrpcTimeout } from "./grpc-timeout.js";

export { parseGrpcTimeout };

const tracer = trace.getTracer("commerce-mesh/rpc");

const headerGetter = {
  get: (carrier: Headers, key: string) => carrier.get(key) ?? undefined,
  keys: (carrier: Headers) => [...carrier.keys()],
};

/**
 * The one server interceptor every RPC passes through, on the Connect path and
 * the gRPC fast path alike: trace context, call context (deadline), error
 * mapping, one log line and RED metrics. One closure instead of a chain keeps
 * the per-call cost low (see README "Architecture notes").
 */
export function createServerInterceptor(deps: { logger: Logger; metrics: Metrics }): Interceptor {
  const { logger, metrics } = deps;
  // Label children resolved once per method and code.
  const metricsFor = perKey(
    (service: string, method: string, code: Code | 0) => `${service}/${method}/${code}`,
    (service, method, code) => {
      const labels = {
        rpc_service: service,
        rpc_method: method,
        rpc_grpc_status_code: String(code),
      };
      return {
        duration: metrics.rpcDuration.labels(labels),
        total: metrics.rpcTotal.labels(labels),
      };
    },
  );
  return (next) => async (req) => {
    const started = performance.now();
    const timeoutMs = readTimeoutMs(req.header);
    const procedure = `/${req.service.typeName}/${req.method.name}`;
    const requestId = req.header.get("x-request-id") ?? undefined;
    const parent = req.header.has("traceparent")
      ? propagation.extract(context.active(), req.header, headerGetter)
      : context.active();
    const span = tracer.startSpan(
      `${req.service.typeName}/${req.method.name}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "rpc.system": "grpc",
          "rpc.service": req.service.typeName,
          "rpc.method": req.method.name,
        },
      },
      parent,
    );
    const callContext = {
      deadline: timeoutMs === undefined ? undefined : Date.now() + timeoutMs,
      procedure,
      requestId,
    };
    // Handlers (and, for streams, each step of their iterator) run inside the
    // span and call context, so logs, outgoing calls and deadlines follow.
    const enter = <T>(fn: () => T): T =>
      context.with(trace.setSpan(parent, span), () => runWithCallContext(callContext, fn));

    const finish = (failure: ConnectError | undefined) => {
      const code: Code | 0 = failure ? failure.code : 0;
      const seconds = (performance.now() - started) / 1000;
      const child = metricsFor(req.service.typeName, req.method.name, code);
      child.duration.observe(seconds);
      child.total.inc();
      span.setAttribute("rpc.grpc.status_code", code);
      if (failure) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: Code[failure.code] });
        if (failure.code === Code.Internal || failure.code === Code.Unknown) {
          span.recordException(failure.cause instanceof Error ? failure.cause : failure);
        }
      }
      span.end();
      const spanContext = span.spanContext();
      const line = {
        rpc: procedure,
        code: code === 0 ? "OK" : Code[code],
        durationMs: Math.round(seconds * 1e6) / 1e3,
        traceId: spanContext.traceId,
        spanId: spanContext.spanId,
        requestId,
      };
      if (failure && (failure.code === Code.Internal || failure.code === Code.Unknown)) {
        logger.error({ ...line, err: failure.cause }, "rpc failed");
      } else if (logger.isLevelEnabled("info")) {
        logger.info(line, "rpc");
      }
    };

    let response: Awaited<ReturnType<typeof next>>;
    try {
      response = await enter(() => next(req));
    } catch (error) {
      const failure = toConnectError(error);
      finish(failure);
      throw failure;
    }
    if (!response.stream) {
      finish(undefined);
      return response;
    }
    // A streaming handler fails while its messages are read, after next()
    // returned: map, log and measure at the end of the stream instead.
    return { ...response, message: mapStream(response.message, enter, finish) } as typeof response;
  };
}

async function* mapStream<T>(
  source: AsyncIterable<T>,
  enter: <R>(fn: () => R) => R,
  finish: (failure: ConnectError | undefined) => void,
): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  let failure: ConnectError | undefined;
  try {
    for (;;) {
      const step = await enter(() => iterator.next());
      if (step.done) return;
      yield step.value;
    }
  } catch (error) {
    failure = toConnectError(error);
    throw failure;
  } finally {
    // The client went away early: let the handler's generator clean up.
    if (failure === undefined) await iterator.return?.();
    finish(failure);
  }
}

/** Connect and gRPC carry the caller's deadline in different headers. */
function readTimeoutMs(header: Headers): number | undefined {
  const connect = header.get("connect-timeout-ms");
  if (connect !== null) {
    const ms = Number(connect);
    return Number.isFinite(ms) ? ms : undefined;
  }
  const grpc = header.get("grpc-timeout");
  if (grpc === null) return undefined;
  return parseGrpcTimeout(grpc);
}
