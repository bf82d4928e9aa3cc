import { type DescMethod, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
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

/** The request message; a malformed one is INVALID_ARGUMENT, as connect-node answers it. */
export function decodeBinaryInput(route: UnaryRoute, bytes: Uint8Array): unknown {
  try {
    return fromBinary(route.method.input, bytes);
  } catch (cause) {
    throw new ConnectError(
      "parse binary: invalid request message",
      Code.InvalidArgument,
      undefined,
      [],
      cause,
    );
  }
}

/** `connect-timeout-ms` in milliseconds (capDeadlineHeaders bounded it); malformed means none. */
export function connectTimeoutMs(value: string | string[] | undefined): number | undefined {
  const ms = typeof value === "string" ? Number(value) : Number.NaN;
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
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
  /** The fast path's interceptors, response limit and shutdown signal. */
  options: Pick<UnaryFastPathOptions, "interceptors" | "writeMaxBytes" | "shutdownSignal">;
  /** Encodes the handler's answer (default: protobuf binary). */
  serialize?: (message: unknown) => Uint8Array;
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

const knownEncodings = new WeakMap<object, Uint8Array>();

/**
 * Marks `message` as encoding to `bytes` in protobuf binary, so the binary
 * fast paths send those bytes instead of encoding it again — for answers
 * built from bytes a cache already holds. The message must not change
 * afterwards; JSON and connect-node's paths encode the message as usual.
 */
export function withKnownEncoding<T extends object>(message: T, bytes: Uint8Array): T {
  knownEncodings.set(message, bytes);
  return message;
}

/** The binary encoding of a message whose only set field is message field `fieldNumber` = `bytes`. */
export function singleMessageFieldEncoding(fieldNumber: number, bytes: Uint8Array): Uint8Array {
  return new BinaryWriter().tag(fieldNumber, WireType.LengthDelimited).bytes(bytes).finish();
}

// One listener per shutdown signal instead of one per call: adding and
// removing an EventTarget listener cost more than a Set entry.
const shutdownWaiters = new WeakMap<AbortSignal, Set<() => void>>();

function whenAborted(signal: AbortSignal, fn: () => void): () => void {
  if (signal.aborted) {
    fn();
    return () => {};
  }
  let waiters = shutdownWaiters.get(signal);
  if (waiters === undefined) {
    const set = new Set<() => void>();
    waiters = set;
    shutdownWaiters.set(signal, set);
    signal.addEventListener(
      "abort",
      () => {
        for (const waiter of [...set]) waiter();
        set.clear();
      },
      { once: true },
    );
  }
  waiters.add(fn);
  return () => {
    waiters.delete(fn);
  };
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
  const removeShutdown = whenAborted(call.options.shutdownSignal, onShutdown);
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
      call.options.interceptors,
    );
    if (controller.signal.aborted) {
      const reason = controller.signal.reason;
      throw reason instanceof ConnectError ? reason : ConnectError.from(reason);
    }
    const bytes = call.serialize
      ? call.serialize(output)
      : (knownEncodings.get(output as object) ??
        toBinary(call.route.method.output, output as never));
    if (bytes.length > call.options.writeMaxBytes) {
      throw new ConnectError(
        `response larger than configured limit of ${call.options.writeMaxBytes} bytes`,
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
    removeShutdown();
  }
}

type RawHeaders = Record<string, string | string[] | undefined>;

// The DOM typings declare Headers' methods as properties, which a subclass
// cannot override; at runtime they are ordinary prototype methods.
interface HeaderMethods {
  get(name: string): string | null;
  has(name: string): boolean;
  set(name: string, value: string): void;
  append(name: string, value: string): void;
  delete(name: string): void;
  getSetCookie(): string[];
  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void;
  entries(): IterableIterator<[string, string]>;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
}
const HeadersBase = Headers as unknown as new () => HeaderMethods;

/**
 * A request's headers as fetch `Headers`, pseudo-headers left out. Reads go
 * straight to node's header object (already lower-cased and validated by the
 * parser); the first write or iteration copies them into the real `Headers`.
 * Copying every header per call cost more than the few reads interceptors make.
 */
class IncomingHeaders extends HeadersBase {
  #raw: RawHeaders | undefined;

  constructor(raw: RawHeaders) {
    super();
    this.#raw = raw;
  }

  #lookup(name: string): string | string[] | undefined {
    const key = name.toLowerCase();
    return key.charCodeAt(0) === 58 /* ":" */ ? undefined : this.#raw![key];
  }

  #own(): void {
    const raw = this.#raw;
    if (raw === undefined) return;
    this.#raw = undefined;
    for (const key in raw) {
      if (key.charCodeAt(0) === 58) continue;
      const value = raw[key];
      if (value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) super.append(key, v);
      else super.append(key, value);
    }
  }

  override get(name: string): string | null {
    if (this.#raw === undefined) return super.get(name);
    const value = this.#lookup(name);
    if (value === undefined) return null;
    return Array.isArray(value) ? value.join(", ") : value;
  }

  override has(name: string): boolean {
    if (this.#raw === undefined) return super.has(name);
    return this.#lookup(name) !== undefined;
  }

  override set(name: string, value: string): void {
    this.#own();
    super.set(name, value);
  }

  override append(name: string, value: string): void {
    this.#own();
    super.append(name, value);
  }

  override delete(name: string): void {
    this.#own();
    super.delete(name);
  }

  override getSetCookie(): string[] {
    this.#own();
    return super.getSetCookie();
  }

  override forEach(
    callback: (value: string, key: string, parent: Headers) => void,
    thisArg?: unknown,
  ): void {
    this.#own();
    super.forEach(callback, thisArg);
  }

  override entries(): IterableIterator<[string, string]> {
    this.#own();
    return super.entries();
  }

  override keys(): IterableIterator<string> {
    this.#own();
    return super.keys();
  }

  override values(): IterableIterator<string> {
    this.#own();
    return super.values();
  }

  override [Symbol.iterator](): IterableIterator<[string, string]> {
    this.#own();
    return super[Symbol.iterator]();
  }
}

/** Node's incoming headers as fetch Headers, pseudo-headers left out. */
export function toFetchHeaders(headers: RawHeaders): Headers {
  return new IncomingHeaders(headers) as unknown as Headers;
}
