import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import {
  type CallOptions,
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { context, propagation } from "@opentelemetry/api";
import {
  BrokenCircuitError,
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  type IPolicy,
  noop,
  retry,
} from "cockatiel";
import { currentCallContext, remainingDeadlineMs } from "../rpc/call-context.js";

export interface UpstreamOptions {
  /** Name of the upstream service, used in errors and metrics. */
  name: string;
  /** e.g. http://127.0.0.1:8082 */
  baseUrl: string;
  maxMessageBytes?: number;
  /** Deadline for calls made outside an incoming call (or without one). */
  defaultTimeoutMs?: number;
  /** No outgoing call may ask for more than this. */
  maxTimeoutMs?: number;
  /** Consecutive infrastructure failures that open the breaker. */
  breakerThreshold?: number;
  breakerHalfOpenAfterMs?: number;
  retryAttempts?: number;
  /** Extra client interceptors (e.g. the service token for mesh-internal calls). */
  interceptors?: Interceptor[];
  transport?: Transport;
}

/** Failures that say the upstream (not the request) is unhealthy. */
const INFRASTRUCTURE_CODES = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Internal,
  Code.Unknown,
]);

export interface Upstream {
  readonly name: string;
  readonly transport: Transport;
  readonly breaker: ReturnType<typeof circuitBreaker>;
  readonly options: Required<Omit<UpstreamOptions, "transport" | "interceptors">>;
}

const headerSetter = {
  set: (carrier: Headers, key: string, value: string) => carrier.set(key, value),
};

/** Carries the trace and request id of the call being served to the next hop. */
const propagateContext: Interceptor = (next) => (req) => {
  propagation.inject(context.active(), req.header, headerSetter);
  const requestId = currentCallContext()?.requestId;
  if (requestId && !req.header.has("x-request-id")) req.header.set("x-request-id", requestId);
  return next(req);
};

export function createUpstream(options: UpstreamOptions): Upstream {
  const resolved = {
    name: options.name,
    baseUrl: options.baseUrl,
    maxMessageBytes: options.maxMessageBytes ?? 4 * 1024 * 1024,
    defaultTimeoutMs: options.defaultTimeoutMs ?? 5_000,
    maxTimeoutMs: options.maxTimeoutMs ?? 30_000,
    breakerThreshold: options.breakerThreshold ?? 5,
    breakerHalfOpenAfterMs: options.breakerHalfOpenAfterMs ?? 5_000,
    retryAttempts: options.retryAttempts ?? 2,
  };
  const transport =
    options.transport ??
    createGrpcTransport({
      baseUrl: options.baseUrl,
      readMaxBytes: resolved.maxMessageBytes,
      writeMaxBytes: resolved.maxMessageBytes,
      interceptors: [propagateContext, ...(options.interceptors ?? [])],
    });
  const breaker = circuitBreaker(
    handleWhen((error) => error instanceof ConnectError && INFRASTRUCTURE_CODES.has(error.code)),
    {
      halfOpenAfter: resolved.breakerHalfOpenAfterMs,
      breaker: new ConsecutiveBreaker(resolved.breakerThreshold),
    },
  );
  return { name: options.name, transport, breaker, options: resolved };
}

function isIdempotent(method: DescMethod): boolean {
  return (
    method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS ||
    method.idempotency === MethodOptions_IdempotencyLevel.IDEMPOTENT
  );
}

/**
 * A typed client whose every call has a deadline (the caller's remaining one
 * when serving an RPC, capped), retries only methods the contract marks
 * idempotent, and fails fast while the upstream's circuit is open.
 */
export function createServiceClient<S extends DescService>(
  service: S,
  upstream: Upstream,
): Client<S> {
  const base = createClient(service, upstream.transport) as unknown as Record<
    string,
    (req: unknown, options?: CallOptions) => unknown
  >;
  const { options } = upstream;
  const client: Record<string, unknown> = {};
  for (const method of service.methods) {
    const call = base[method.localName]!;
    const retryPolicy: IPolicy =
      method.methodKind === "unary" && isIdempotent(method)
        ? retry(
            handleWhen((e) => e instanceof ConnectError && e.code === Code.Unavailable),
            {
              maxAttempts: options.retryAttempts,
              backoff: new ExponentialBackoff({ initialDelay: 25, maxDelay: 250 }),
            },
          )
        : noop;
    const timeoutFor = (callOptions?: CallOptions): number => {
      let timeout = Math.min(
        callOptions?.timeoutMs ?? options.defaultTimeoutMs,
        options.maxTimeoutMs,
      );
      const remaining = remainingDeadlineMs();
      if (remaining !== undefined) timeout = Math.min(timeout, remaining);
      if (timeout <= 0) {
        throw new ConnectError(
          `deadline exceeded before calling ${service.typeName}/${method.name}`,
          Code.DeadlineExceeded,
        );
      }
      return timeout;
    };
    if (method.methodKind !== "unary") {
      client[method.localName] = (req: unknown, callOptions?: CallOptions) =>
        call(req, { ...callOptions, timeoutMs: timeoutFor(callOptions) });
      continue;
    }
    client[method.localName] = async (req: unknown, callOptions?: CallOptions) => {
      try {
        return await upstream.breaker.execute(() =>
          retryPolicy.execute(() =>
            call(req, { ...callOptions, timeoutMs: timeoutFor(callOptions) }),
          ),
        );
      } catch (error) {
        if (error instanceof BrokenCircuitError) {
          throw new ConnectError(
            `${upstream.name} is unavailable (circuit open)`,
            Code.Unavailable,
            undefined,
            undefined,
            error,
          );
        }
        throw error;
      }
    };
  }
  return client as Client<S>;
}
