import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { type DescMethod, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
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
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { parseGrpcTimeout } from "../rpc/grpc-timeout.js";

/**
 * Unary gRPC over HTTP/2 without the generic Connect pipeline.
 *
 * connect-node routes every call through async iterables, web streams and an
 * AbortSignal teardown per call; measured here that costs 5–7× the CPU of a
 * raw grpc-js server (bench/rpc-overhead.ts). Service-to-service traffic is
 * almost all unary gRPC, so this path handles exactly that case — identity
 * encoding, one length-prefixed message — and hands everything else (Connect,
 * gRPC-Web, streaming, compressed requests) to connect-node. Handlers and
 * interceptors are the same on both paths, so behaviour does not depend on
 * which path served a call.
 */
export interface FastPathOptions {
  services: { service: DescService; impl: Partial<ServiceImpl<DescService>> }[];
  interceptors: Interceptor[];
  readMaxBytes: number;
  writeMaxBytes: number;
  shutdownSignal: AbortSignal;
}

interface Route {
  method: DescMethod & { methodKind: "unary" };
  spec: MethodImplSpec;
}

export type FastPathHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => boolean;

export function createGrpcFastPath(options: FastPathOptions): FastPathHandler {
  const routes = new Map<string, Route>();
  for (const { service, impl } of options.services) {
    const serviceSpec = createServiceImplSpec(service, impl as ServiceImpl<DescService>);
    for (const method of service.methods) {
      if (method.methodKind !== "unary") continue;
      routes.set(`/${service.typeName}/${method.name}`, {
        method: method as Route["method"],
        spec: serviceSpec.methods[method.localName]!,
      });
    }
  }

  /** Returns false when the call is not for this path (caller falls back). */
  return function handle(stream, headers) {
    const contentType = headers["content-type"];
    if (contentType !== "application/grpc" && contentType !== "application/grpc+proto") {
      return false;
    }
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    const path = headers[":path"];
    const route = path === undefined ? undefined : routes.get(path);
    if (route === undefined) return false;
    serve(stream, headers, route, path!, options);
    return true;
  };
}

function serve(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  route: Route,
  path: string,
  options: FastPathOptions,
): void {
  const chunks: Buffer[] = [];
  let received = 0;
  let finished = false;
  const limit = options.readMaxBytes + 5;

  const fail = (error: ConnectError) => {
    if (finished) return;
    finished = true;
    if (stream.destroyed || stream.closed) return;
    const trailer = setTrailerStatus(new Headers(), error);
    const out: Record<string, string | number> = {
      ":status": 200,
      "content-type": "application/grpc+proto",
    };
    trailer.forEach((value, key) => {
      out[key] = value;
    });
    if (stream.headersSent) {
      stream.close();
      return;
    }
    stream.respond(out, { endStream: true });
    stream.resume();
  };

  stream.on("data", (chunk: Buffer) => {
    received += chunk.length;
    if (received > limit) {
      fail(
        new ConnectError(
          `message larger than configured limit of ${options.readMaxBytes} bytes`,
          Code.ResourceExhausted,
        ),
      );
      return;
    }
    chunks.push(chunk);
  });
  stream.on("error", () => {
    finished = true;
  });
  stream.on("end", () => {
    if (finished) return;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    if (body.length < 5) {
      fail(new ConnectError("protocol error: missing request message", Code.InvalidArgument));
      return;
    }
    if (body[0] !== 0) {
      fail(new ConnectError("protocol error: compressed message without encoding", Code.Internal));
      return;
    }
    const length = body.readUInt32BE(1);
    if (length + 5 !== body.length) {
      fail(
        new ConnectError(
          "protocol error: unary request must hold exactly one message",
          Code.InvalidArgument,
        ),
      );
      return;
    }
    let input: unknown;
    try {
      input = fromBinary(route.method.input, body.subarray(5));
    } catch (cause) {
      fail(
        new ConnectError(
          "parse binary: invalid request message",
          Code.InvalidArgument,
          undefined,
          [],
          cause,
        ),
      );
      return;
    }
    void run(stream, headers, route, path, input, options, fail, () => {
      finished = true;
    });
  });
}

async function run(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  route: Route,
  path: string,
  input: unknown,
  options: FastPathOptions,
  fail: (error: ConnectError) => void,
  markFinished: () => void,
): Promise<void> {
  const requestHeader = toHeaders(headers);
  const controller = new AbortController();
  const timeoutMs = parseGrpcTimeout(headers["grpc-timeout"]);
  let timer: NodeJS.Timeout | undefined;
  const onDeadline = () => {
    const error = new ConnectError("the operation timed out", Code.DeadlineExceeded);
    controller.abort(error);
    fail(error);
  };
  if (timeoutMs !== undefined) timer = setTimeout(onDeadline, timeoutMs);
  const onCancel = () => {
    if (!controller.signal.aborted) {
      controller.abort(new ConnectError("operation was cancelled by the client", Code.Canceled));
    }
  };
  stream.once("aborted", onCancel);
  const onShutdown = () => {
    if (!controller.signal.aborted) {
      controller.abort(new ConnectError("server is shutting down", Code.Unavailable));
    }
  };
  if (options.shutdownSignal.aborted) onShutdown();
  else options.shutdownSignal.addEventListener("abort", onShutdown, { once: true });
  const deadlineAt = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  const context: HandlerContext & { abort(reason?: unknown): void } = {
    method: route.method,
    service: route.method.parent,
    protocolName: "grpc",
    requestMethod: "POST",
    url: path,
    signal: controller.signal,
    timeoutMs: () => (deadlineAt === undefined ? undefined : deadlineAt - Date.now()),
    requestHeader,
    responseHeader: new Headers(),
    responseTrailer: new Headers(),
    // Per call: interceptors (auth) store the verified caller here.
    values: createContextValues(),
    abort: (reason?: unknown) => controller.abort(reason),
  } as HandlerContext & { abort(reason?: unknown): void };
  try {
    const output = await invokeUnaryImplementation(
      route.spec as MethodImplSpec & { kind: "unary" },
      context,
      input as never,
      options.interceptors,
    );
    if (controller.signal.aborted) {
      const reason = controller.signal.reason;
      fail(reason instanceof ConnectError ? reason : ConnectError.from(reason));
      return;
    }
    const bytes = toBinary(route.method.output, output as never);
    if (bytes.length > options.writeMaxBytes) {
      fail(
        new ConnectError(
          `response larger than configured limit of ${options.writeMaxBytes} bytes`,
          Code.ResourceExhausted,
        ),
      );
      return;
    }
    if (stream.destroyed || stream.closed) return;
    markFinished();
    const responseHeaders: Record<string, string | number> = {
      ":status": 200,
      "content-type": "application/grpc+proto",
    };
    context.responseHeader.forEach((value, key) => {
      responseHeaders[key] = value;
    });
    const trailers: Record<string, string> = { "grpc-status": "0" };
    context.responseTrailer.forEach((value, key) => {
      trailers[key] = value;
    });
    stream.respond(responseHeaders, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers(trailers));
    const frame = Buffer.allocUnsafe(5 + bytes.length);
    frame[0] = 0;
    frame.writeUInt32BE(bytes.length, 1);
    frame.set(bytes, 5);
    stream.end(frame);
  } catch (error) {
    fail(ConnectError.from(error));
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    stream.removeListener("aborted", onCancel);
    options.shutdownSignal.removeEventListener("abort", onShutdown);
  }
}

function toHeaders(headers: IncomingHttpHeaders): Headers {
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
