import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Duplex } from "node:stream";
import {
  create,
  createRegistry,
  type DescFile,
  type DescMessage,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  type DescService,
  type Registry,
  toJson,
} from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { encodedMessageOf, undecodableResponse } from "../rpc/encoded-message.js";
import { parseGrpcTimeout } from "../rpc/grpc-timeout.js";
import { createBinaryJsonWriter } from "./binary-json.js";
import { type Binding, compileBindings, type ResumeOverride } from "./bindings.js";
import { decodeRequestJson, parseJsonBody } from "./json-body.js";
import { applyPathVariables, applyQuery, maskFromBody } from "./request-builder.js";
import { RouteMatcher } from "./route-matcher.js";
import {
  asConnectError,
  badRequest,
  HttpError,
  httpStatusOf,
  isHttpError,
  statusJson,
} from "./status.js";
import { adoptWebSocketBearer, createStreamingServer, type StreamingServer } from "./streaming.js";

export type HttpRequest = IncomingMessage | Http2ServerRequest;
/** What the transcoder needs of http.ServerResponse / Http2ServerResponse. */
export interface HttpResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  write(chunk: string): boolean;
  end(chunk: string): unknown;
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
  readonly destroyed: boolean;
  once(event: "close", listener: () => void): unknown;
  off(event: "close", listener: () => void): unknown;
}

// Both Node response classes satisfy it.
const _responseCheck: [HttpResponse, HttpResponse] | undefined = undefined as unknown as
  | [ServerResponse, Http2ServerResponse]
  | undefined;
void _responseCheck;

export interface TranscoderLimits {
  /** Largest request body accepted (413 beyond). */
  maxBodyBytes: number;
  /** Deepest JSON nesting accepted in a body. */
  maxJsonDepth: number;
  /** Deadline for unary calls without `grpc-timeout` / `connect-timeout-ms`. */
  defaultTimeoutMs: number;
  /** No unary call may ask for more. */
  maxTimeoutMs: number;
  /** Deadline of server streams (SSE / WebSocket). */
  streamTimeoutMs: number;
  /** Comment line sent on idle SSE streams so proxies keep them open. */
  sseKeepAliveMs: number;
  /** How long a stream may take to produce its first message or error before 200 is sent. */
  streamFirstMessageWaitMs: number;
}

export const DEFAULT_TRANSCODER_LIMITS: TranscoderLimits = {
  maxBodyBytes: 1024 * 1024,
  maxJsonDepth: 32,
  defaultTimeoutMs: 15_000,
  maxTimeoutMs: 60_000,
  streamTimeoutMs: 30 * 60_000,
  sseKeepAliveMs: 15_000,
  streamFirstMessageWaitMs: 150,
};

/** What hooks see of a call the transcoder is about to make. */
export interface TranscodedCall {
  binding: Binding;
  request: HttpRequest;
  /** Sent to the upstream; starts with the forwarded request headers. */
  upstreamHeaders: Record<string, string>;
  /** Added to the HTTP response, errors included (e.g. RateLimit-*). */
  responseHeaders: Record<string, string>;
}

export interface TranscoderHooks {
  /**
   * Runs after routing and before the body is read (auth, rate limits).
   * Throwing a ConnectError answers with its Status.
   */
  beforeCall?(call: TranscodedCall): void | Promise<void>;
  /** Every failed call (logging, metrics); the response is already decided. */
  onError?(error: ConnectError, call: { binding?: Binding; request: HttpRequest }): void;
}

export interface TranscoderOptions {
  services: readonly DescService[];
  /** How to reach each service: one transport for all, or one per service. */
  transport: Transport | ((service: DescService) => Transport);
  limits?: Partial<TranscoderLimits>;
  hooks?: TranscoderHooks;
  /** Stream resume mapping, keyed "package.Service.Method"; null disables. */
  streamResume?: Record<string, ResumeOverride | null>;
  /** Request headers passed to the upstream (lower case). */
  forwardHeaders?: readonly string[];
  /** Extra types for Any values in responses and error details. */
  registry?: Registry;
}

export interface Transcoder {
  readonly bindings: readonly Binding[];
  readonly registry: Registry;
  /**
   * Answers every request it is given (404 with a Status for unknown routes).
   * `baseHeaders` (a fresh object per request; it is added to) go on every
   * response, errors included.
   */
  handle(req: HttpRequest, res: HttpResponse, baseHeaders?: Record<string, string>): Promise<void>;
  /** WebSocket upgrade for server-streaming routes; answers errors on the socket. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Ends open streams (shutdown). */
  close(): void;
}

export const DEFAULT_FORWARD_HEADERS = [
  "authorization",
  "x-request-id",
  "traceparent",
  "tracestate",
  "accept-language",
];

function collectFiles(services: readonly DescService[]): DescFile[] {
  const files = new Set<DescFile>();
  const visit = (file: DescFile) => {
    if (files.has(file)) return;
    files.add(file);
    for (const dep of file.dependencies) visit(dep);
  };
  for (const service of services) visit(service.file);
  visit(file_google_rpc_error_details);
  return [...files];
}

/**
 * Content type and length of a JSON answer, added to `headers`. With the
 * length known, node:http sends the body as is; without it (writeHead before
 * end) every answer went out chunked — more bytes, a writev of several
 * pieces, and chunk parsing for the client.
 */
export function jsonHeaders(headers: Record<string, string>, text: string): Record<string, string> {
  headers["content-type"] = "application/json";
  headers["content-length"] = String(Buffer.byteLength(text));
  return headers;
}

export function createTranscoder(options: TranscoderOptions): Transcoder {
  const limits = { ...DEFAULT_TRANSCODER_LIMITS, ...options.limits };
  const hooks = options.hooks ?? {};
  const forward = options.forwardHeaders ?? DEFAULT_FORWARD_HEADERS;
  const registry = options.registry
    ? createRegistry(options.registry, ...collectFiles(options.services))
    : createRegistry(...collectFiles(options.services));
  const transportFor = new Map<DescService, Transport>();
  for (const service of options.services) {
    transportFor.set(
      service,
      typeof options.transport === "function" ? options.transport(service) : options.transport,
    );
  }
  const bindings = compileBindings(options.services, options.streamResume);
  const matcher = new RouteMatcher<Binding>();
  for (const binding of bindings) {
    matcher.add(binding, (b) => `${b.service.typeName}.${b.method.name}`);
  }
  const jsonWrite = { alwaysEmitImplicit: true, registry } as const;
  // Same text as responseJson, straight from the upstream's bytes when the
  // transport kept them (binary-json.ts; the edge's HTTP/1.1 transport does).
  const writeBinaryJson = createBinaryJsonWriter(registry);
  const binaryJson = (desc: DescMessage, bytes: Uint8Array): string => {
    try {
      return writeBinaryJson(desc, bytes);
    } catch (cause) {
      throw undecodableResponse(cause);
    }
  };

  const responseJson = (binding: Binding, message: unknown): unknown => {
    const json = toJson(binding.method.output, message as never, jsonWrite) as Record<
      string,
      unknown
    >;
    const field = binding.responseField;
    if (!field) return json;
    const picked = json[field.jsonName];
    if (picked !== undefined) return picked;
    // An unset message field: answer its default so the shape is stable.
    return field.fieldKind === "message"
      ? toJson(field.message, create(field.message), jsonWrite)
      : null;
  };

  const fail = (
    res: HttpResponse,
    error: unknown,
    headers: Record<string, string> | undefined,
    request: HttpRequest,
    binding: Binding | undefined,
  ) => {
    const connectError = publicError(asConnectError(error));
    hooks.onError?.(connectError, { binding, request });
    writeStatus(res, connectError, registry, headers, request);
  };

  /** The request message; synchronous for routes without a body (no read, no tick). */
  const buildInput = (
    binding: Binding,
    req: HttpRequest,
    segments: string[],
    query: string,
  ): unknown => {
    if (binding.body.kind === "none") {
      if (hasBody(req.headers)) throw badRequest("this route takes no request body");
      return inputFrom(binding, req, {}, segments, query);
    }
    return readJson(req, limits).then((json) => inputWithBody(binding, req, json, segments, query));
  };

  const inputWithBody = (
    binding: Binding,
    req: HttpRequest,
    json: unknown,
    segments: string[],
    query: string,
  ): unknown => {
    const body = binding.body;
    let root: Record<string, unknown> = {};
    if (body.kind === "all") {
      if (json !== undefined) {
        if (json === null || typeof json !== "object" || Array.isArray(json)) {
          throw badRequest("request body must be a JSON object", "", "expected a JSON object");
        }
        root = json as Record<string, unknown>;
      }
    } else if (body.kind === "field" && json !== undefined) {
      root[body.field.jsonName] = json;
    }
    if (
      binding.updateMask &&
      json !== null &&
      typeof json === "object" &&
      !Array.isArray(json) &&
      body.kind === "field" &&
      body.field.fieldKind === "message"
    ) {
      // Filled after the query so an explicit ?update_mask= wins.
      applyQuery(root, binding, query);
      const mask = binding.updateMask;
      if (root[mask.jsonName] === undefined && root[mask.name] === undefined) {
        root[mask.jsonName] = maskFromBody(
          body.field.message,
          json as Record<string, unknown>,
        ).join(",");
      }
      applyPathVariables(root, binding.pathVariables, segments);
      return decodeRequestJson(binding.method.input, root);
    }
    return inputFrom(binding, req, root, segments, query);
  };

  const inputFrom = (
    binding: Binding,
    req: HttpRequest,
    root: Record<string, unknown>,
    segments: string[],
    query: string,
  ): unknown => {
    applyQuery(root, binding, query);
    applyPathVariables(root, binding.pathVariables, segments);
    if (binding.resume) {
      const lastEventId = req.headers["last-event-id"];
      if (typeof lastEventId === "string" && lastEventId !== "") {
        const field = binding.resume.request;
        delete root[field.name];
        root[field.jsonName] = lastEventId;
      }
    }
    return decodeRequestJson(binding.method.input, root);
  };

  const headersFor = (req: HttpRequest): Record<string, string> => {
    const out: Record<string, string> = {};
    const h = req.headers;
    for (const name of forward) {
      const value = h[name];
      if (typeof value === "string") out[name] = value;
    }
    return out;
  };

  const streaming: StreamingServer = createStreamingServer({
    limits,
    registry,
    transportFor: (binding) => transportFor.get(binding.service)!,
    responseJson,
    statusJson: (error) => statusJson(publicError(error), registry),
    onError: (error, binding, request) => hooks.onError?.(error, { binding, request }),
  });

  const route = (req: HttpRequest) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);
    const query = q === -1 ? "" : url.slice(q + 1);
    return { match: matcher.match(req.method ?? "GET", path), query, path };
  };

  async function handle(
    req: HttpRequest,
    res: HttpResponse,
    baseHeaders?: Record<string, string>,
  ): Promise<void> {
    const { match, query, path } = route(req);
    if (match.kind === "not-found") {
      return fail(res, notFound(req.method, path), baseHeaders, req, undefined);
    }
    if (match.kind === "method-not-allowed") {
      return fail(res, methodNotAllowed(req.method, match.allow), baseHeaders, req, undefined);
    }
    const binding = match.route;
    let call: TranscodedCall | undefined;
    try {
      const upstreamHeaders = headersFor(req);
      let responseHeaders = baseHeaders;
      if (hooks.beforeCall) {
        call = { binding, request: req, upstreamHeaders, responseHeaders: baseHeaders ?? {} };
        responseHeaders = call.responseHeaders;
        // A hook that decides synchronously costs no tick.
        const pending = hooks.beforeCall(call);
        if (pending !== undefined) await pending;
      }
      let input = buildInput(binding, req, match.segments, query);
      if (input instanceof Promise) input = await input;
      if (binding.streaming) {
        await streaming.serveSse(binding, req, res, input, upstreamHeaders, responseHeaders);
        return;
      }
      const timeoutMs = requestTimeout(req.headers, limits);
      const response = await transportFor
        .get(binding.service)!
        .unary(
          binding.method as DescMethodUnary,
          undefined,
          timeoutMs,
          upstreamHeaders,
          input as never,
        );
      const encoded = binding.responseField ? undefined : encodedMessageOf(response);
      const text =
        encoded === undefined
          ? JSON.stringify(responseJson(binding, response.message))
          : binaryJson(binding.method.output, encoded);
      if (res.writableEnded || res.destroyed) return;
      // One writeHead with every header: cheaper than a setHeader per header.
      res.writeHead(200, jsonHeaders(responseHeaders ?? {}, text));
      res.end(text);
    } catch (error) {
      fail(res, error, call?.responseHeaders ?? baseHeaders, req, binding);
    }
  }

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    adoptWebSocketBearer(req.headers);
    const { match, query, path } = route(req);
    const reject = (error: ConnectError, headers?: Record<string, string>) => {
      const publicErr = publicError(error);
      hooks.onError?.(publicErr, {
        binding: match.kind === "found" ? match.route : undefined,
        request: req,
      });
      streaming.rejectUpgrade(socket, publicErr, headers);
    };
    if (match.kind === "not-found") {
      reject(notFound(req.method, path));
      return;
    }
    if (match.kind === "method-not-allowed") {
      reject(methodNotAllowed(req.method, match.allow));
      return;
    }
    const binding = match.route;
    if (!binding.streaming) {
      reject(badRequest("WebSocket is only offered on server-streaming routes"));
      return;
    }
    const upstreamHeaders = headersFor(req);
    const call: TranscodedCall = {
      binding,
      request: req,
      upstreamHeaders,
      responseHeaders: {},
    };
    void (async () => {
      try {
        await hooks.beforeCall?.(call);
        const input = await buildInput(binding, req, match.segments, query);
        streaming.serveWebSocket(binding, req, socket, head, input, upstreamHeaders);
      } catch (error) {
        reject(asConnectError(error), call.responseHeaders);
      }
    })();
  }

  return {
    bindings,
    registry,
    handle,
    handleUpgrade,
    close: () => streaming.close(),
  };
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  const length = headers["content-length"];
  if (length !== undefined && length !== "0") return true;
  return headers["transfer-encoding"] !== undefined;
}

function notFound(method: string | undefined, path: string): HttpError {
  return new HttpError(404, Code.NotFound, `no route for ${method ?? "GET"} ${truncatePath(path)}`);
}

function methodNotAllowed(method: string | undefined, allow: string[]): HttpError {
  return new HttpError(405, Code.Unimplemented, `method ${method} not allowed on this path`, {
    headers: { allow: allow.join(", ") },
  });
}

function truncatePath(path: string): string {
  return path.length > 200 ? `${path.slice(0, 200)}…` : path;
}

/**
 * Upstream and transport errors are passed on with their code and details;
 * messages that could carry internal detail (transport failures, internal
 * errors) are replaced by fixed text. The original stays in `cause`.
 */
export function publicError(error: ConnectError): ConnectError {
  if (isHttpError(error)) return error;
  switch (error.code) {
    case Code.Internal:
    case Code.Unknown:
    case Code.DataLoss:
      return error.rawMessage === "internal error"
        ? error
        : new ConnectError("internal error", error.code, undefined, undefined, error);
    case Code.Unavailable:
      // A failure of the hop itself (connection refused, reset) names hosts.
      if (error.cause !== undefined && !(error.cause instanceof ConnectError)) {
        return new ConnectError(
          "service unavailable",
          Code.Unavailable,
          undefined,
          undefined,
          error,
        );
      }
      return error;
    default:
      return error;
  }
}

/** `grpc-timeout` or `connect-timeout-ms` (as on the RPC paths), else the default; capped. */
export function requestTimeout(
  headers: IncomingHttpHeaders,
  limits: Pick<TranscoderLimits, "defaultTimeoutMs" | "maxTimeoutMs">,
): number {
  let ms = limits.defaultTimeoutMs;
  const connect = headers["connect-timeout-ms"];
  const grpc = headers["grpc-timeout"];
  if (typeof connect === "string" && /^\d{1,10}$/.test(connect)) ms = Number(connect);
  else ms = parseGrpcTimeout(grpc) ?? ms;
  return Math.max(1, Math.min(ms, limits.maxTimeoutMs));
}

async function readJson(req: HttpRequest, limits: TranscoderLimits): Promise<unknown> {
  const type = req.headers["content-type"];
  if (type !== undefined && !/json/i.test(type)) {
    throw new HttpError(
      415,
      Code.InvalidArgument,
      `unsupported content type "${type.slice(0, 100)}"; send application/json`,
    );
  }
  const bytes = await readBody(req, limits.maxBodyBytes);
  return parseJsonBody(bytes, limits.maxJsonDepth);
}

function tooLarge(max: number): HttpError {
  return new HttpError(413, Code.ResourceExhausted, `request body larger than ${max} bytes`);
}

function readBody(req: HttpRequest, max: number): Promise<Uint8Array> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > max) return Promise.reject(tooLarge(max));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        done = true;
        cleanup();
        reject(tooLarge(max));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      if (done) return;
      done = true;
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    const onError = (error: unknown) => {
      if (done) return;
      done = true;
      cleanup();
      reject(
        new ConnectError(
          "request body was not received",
          Code.Canceled,
          undefined,
          undefined,
          error,
        ),
      );
    };
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("aborted", onError);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("aborted", onError);
  });
}

export function writeStatus(
  res: HttpResponse,
  error: ConnectError,
  registry: Registry,
  extraHeaders: Record<string, string> | undefined,
  request: HttpRequest,
): void {
  if (res.headersSent || res.writableEnded || res.destroyed) {
    if (!res.writableEnded) res.end("");
    return;
  }
  const status = httpStatusOf(error);
  const body = JSON.stringify(statusJson(error, registry));
  const headers = jsonHeaders(
    { ...extraHeaders, ...(isHttpError(error) ? error.headers : undefined) },
    body,
  );
  // A body we stopped reading must not be parsed as the next request.
  if (status === 413 && "httpVersionMajor" in request && request.httpVersionMajor === 1) {
    headers.connection = "close";
  }
  res.writeHead(status, headers);
  res.end(body);
}

export type { Binding, DescMessage, DescMethodServerStreaming };
