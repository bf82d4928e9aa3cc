import { type DescMethod, type DescService, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  createServiceImplSpec,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type ServiceImpl,
} from "@connectrpc/connect";
import { invokeUnaryImplementation } from "@connectrpc/connect/protocol";

/**
 * What the unary fast paths (gRPC over HTTP/2, Connect over HTTP/1.1) share:
 * the route table and one call through the same interceptors and handler
 * connect-node would run, so behaviour does not depend on the path taken.
 */
export interface UnaryRoute {
  method: DescMethod & { methodKind: "unary" };
  spec: MethodImplSpec;
}

export function unaryRoutes(
  services: { service: DescService; impl: Partial<ServiceImpl<DescService>> }[],
): Map<string, UnaryRoute> {
  const routes = new Map<string, UnaryRoute>();
  for (const { service, impl } of services) {
    const serviceSpec = createServiceImplSpec(service, impl as ServiceImpl<DescService>);
    for (const method of service.methods) {
      if (method.methodKind !== "unary") continue;
      routes.set(`/${service.typeName}/${method.name}`, {
        method: method as UnaryRoute["method"],
        spec: serviceSpec.methods[method.localName]!,
      });
    }
  }
  return routes;
}

/** What both unary fast paths are built from. */
export interface UnaryFastPathOptions {
  services: { service: DescService; impl: Partial<ServiceImpl<DescService>> }[];
  interceptors: Interceptor[];
  readMaxBytes: number;
  writeMaxBytes: number;
  shutdownSignal: AbortSignal;
}

export interface UnaryCall {
  route: UnaryRoute;
  path: string;
  protocolName: "grpc" | "connect";
  requestHeader: Headers;
  timeoutMs: number | undefined;
  input: unknown;
  interceptors: Interceptor[];
  writeMaxBytes: number;
  shutdownSignal: AbortSignal;
  /** Registers the transport's "client went away" notification; returns its removal. */
  onClientGone(cancel: () => void): () => void;
  /** Called at most once, when the deadline passes before the handler answered. */
  onDeadline(error: ConnectError): void;
}

export interface UnaryResult {
  bytes: Uint8Array;
  responseHeader: Headers;
  responseTrailer: Headers;
}

/** Runs the call; resolves with the encoded response, rejects with a ConnectError. */
export async function runUnaryCall(call: UnaryCall): Promise<UnaryResult> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  if (call.timeoutMs !== undefined) {
    timer = setTimeout(() => {
      const error = new ConnectError("the operation timed out", Code.DeadlineExceeded);
      controller.abort(error);
      call.onDeadline(error);
    }, call.timeoutMs);
  }
  const removeClientGone = call.onClientGone(() => {
    if (!controller.signal.aborted) {
      controller.abort(new ConnectError("operation was cancelled by the client", Code.Canceled));
    }
  });
  const onShutdown = () => {
    if (!controller.signal.aborted) {
      controller.abort(new ConnectError("server is shutting down", Code.Unavailable));
    }
  };
  if (call.shutdownSignal.aborted) onShutdown();
  else call.shutdownSignal.addEventListener("abort", onShutdown, { once: true });
  const deadlineAt = call.timeoutMs === undefined ? undefined : Date.now() + call.timeoutMs;
  const context = {
    method: call.route.method,
    service: call.route.method.parent,
    protocolName: call.protocolName,
    requestMethod: "POST",
    url: call.path,
    signal: controller.signal,
    timeoutMs: () => (deadlineAt === undefined ? undefined : deadlineAt - Date.now()),
    requestHeader: call.requestHeader,
    responseHeader: new Headers(),
    responseTrailer: new Headers(),
    // Per call: interceptors (auth) store the verified caller here.
    values: createContextValues(),
    abort: (reason?: unknown) => controller.abort(reason),
  } as HandlerContext & { abort(reason?: unknown): void };
  try {
    const output = await invokeUnaryImplementation(
      call.route.spec as MethodImplSpec & { kind: "unary" },
      context,
      call.input as never,
      call.interceptors,
    );
    if (controller.signal.aborted) {
      const reason = controller.signal.reason;
      throw reason instanceof ConnectError ? reason : ConnectError.from(reason);
    }
    const bytes = toBinary(call.route.method.output, output as never);
    if (bytes.length > call.writeMaxBytes) {
      throw new ConnectError(
        `response larger than configured limit of ${call.writeMaxBytes} bytes`,
        Code.ResourceExhausted,
      );
    }
    return {
      bytes,
      responseHeader: context.responseHeader,
      responseTrailer: context.responseTrailer,
    };
  } catch (error) {
    throw ConnectError.from(error);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    removeClientGone();
    call.shutdownSignal.removeEventListener("abort", onShutdown);
  }
}

/** Node's incoming headers as fetch Headers, pseudo-headers left out. */
export function toFetchHeaders(headers: Record<string, string | string[] | undefined>): Headers {
  const out = new Headers();
  for (const key in headers) {
    if (key.charCodeAt(0) === 58 /* ":" */) continue;
    const value = headers[key];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) out.append(key, v);
    else out.set(key, value);
  }
  return out;
}
