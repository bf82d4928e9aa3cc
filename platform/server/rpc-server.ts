import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { Duplex } from "node:stream";
import type { DescService } from "@bufbuild/protobuf";
import type { Interceptor, ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import { createHealthService } from "../health/health-service.js";
import type { ReadinessMonitor } from "../health/readiness.js";
import { createServerInterceptor } from "../rpc/server-interceptors.js";
import type { Metrics } from "../telemetry/metrics.js";
import { createConnectFastPath } from "./connect-fast-path.js";
import { createPipelinedConnectServer } from "./connect-pipelined-connection.js";
import { capDeadlineHeaders } from "./deadline-headers.js";
import { createGrpcFastPath } from "./grpc-fast-path.js";
import { createReflectionService } from "./reflection-service.js";

export interface ServiceRegistration {
  service: DescService;
  impl: Partial<ServiceImpl<DescService>>;
}

/** Pairs a service with its implementation, checked against the contract. */
export function registerService<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
): ServiceRegistration {
  return { service, impl: impl as unknown as ServiceRegistration["impl"] };
}

/** Explicit limits; the library defaults (~4 GiB messages, no deadline cap) are unsafe. */
export interface ServerLimits {
  maxMessageBytes: number;
  maxDeadlineMs: number;
  defaultDeadlineMs: number;
  maxConcurrentStreams: number;
  maxHeaderBytes: number;
  shutdownGraceMs: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxMessageBytes: 4 * 1024 * 1024,
  maxDeadlineMs: 60_000,
  defaultDeadlineMs: 15_000,
  maxConcurrentStreams: 256,
  maxHeaderBytes: 16 * 1024,
  shutdownGraceMs: 10_000,
};

export interface RpcServerOptions {
  name: string;
  host: string;
  port: number;
  services: ServiceRegistration[];
  logger: Logger;
  metrics: Metrics;
  readiness: ReadinessMonitor;
  limits?: Partial<ServerLimits>;
  /** Run after the platform interceptor (e.g. access policy). */
  interceptors?: Interceptor[];
  /** Serve unary gRPC outside connect-node's generic pipeline (default on). */
  grpcFastPath?: boolean;
  /** Serve unary binary Connect over HTTP/1.1 outside connect-node's pipeline (default on). */
  connectFastPath?: boolean;
  /**
   * An extra front door (the edge): tried for HTTP/1.1 and HTTP/2 requests
   * after /healthz, /readyz, /metrics and deadline capping, before Connect
   * routing. Returns true when it answered the request.
   */
  httpHandler?: (
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ) => boolean;
  /** Tried for every HTTP/2 stream before the gRPC fast path; true when it took the stream. */
  streamHandler?: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean;
  /** HTTP/1.1 Upgrade requests (WebSocket); without it upgrades are refused. */
  upgradeHandler?: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;
}

export interface RpcServer {
  /** Resolves with the bound port (useful with port 0). */
  listen(): Promise<number>;
  /** Graceful: not ready, stop accepting, let in-flight calls finish (bounded). */
  close(): Promise<void>;
  readonly inFlight: number;
}

const HTTP2_PREFACE_START = Buffer.from("PRI * HTTP/2.0");
const KEEP_ALIVE_MS = 65_000;
/** The longest a request may take to arrive (node:http's requestTimeout). */
const requestTimeoutFor = (limits: ServerLimits) => limits.maxDeadlineMs + 5_000;

/**
 * One plaintext port for HTTP/1.1 (curl, browsers, Connect, gRPC-Web) and h2c
 * (gRPC, Connect over HTTP/2). Node's cleartext http2 server cannot answer
 * HTTP/1.1, so a net.Server reads the first bytes and hands the socket to the
 * server that speaks its protocol.
 */
export function createRpcServer(options: RpcServerOptions): RpcServer {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const { logger, readiness } = options;
  const shutdown = new AbortController();
  const serviceNames = options.services.map((s) => s.service.typeName);
  const allServices: ServiceRegistration[] = [
    ...options.services,
    registerService(Health, createHealthService(readiness, serviceNames)),
    registerService(
      ServerReflection,
      createReflectionService([
        ...options.services.map((s) => s.service),
        Health,
        ServerReflection,
      ]),
    ),
  ];
  const interceptors = [
    createServerInterceptor({ logger, metrics: options.metrics }),
    ...(options.interceptors ?? []),
  ];

  const connectHandler = connectNodeAdapter({
    routes(router) {
      for (const s of allServices) router.service(s.service, s.impl);
    },
    interceptors,
    readMaxBytes: limits.maxMessageBytes,
    writeMaxBytes: limits.maxMessageBytes,
    // Deadlines are capped before routing (capDeadlineHeaders), never refused.
    maxTimeoutMs: limits.maxDeadlineMs,
    shutdownSignal: shutdown.signal,
    fallback(req, res) {
      writeJson(res as unknown as MinimalResponse, 404, {
        code: 5,
        message: `no route for ${req.method} ${req.url}`,
      });
    },
  });

  // The fast paths run the same interceptors and handlers as connect-node.
  const fastPathOptions = {
    services: allServices,
    interceptors,
    readMaxBytes: limits.maxMessageBytes,
    writeMaxBytes: limits.maxMessageBytes,
    shutdownSignal: shutdown.signal,
  };
  const connectFastPath =
    options.connectFastPath === false ? () => false : createConnectFastPath(fastPathOptions);

  let inFlight = 0;
  const track = (done: { once(event: "close", fn: () => void): unknown }) => {
    inFlight++;
    done.once("close", () => {
      inFlight--;
    });
  };

  const handleRequest = (
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: MinimalResponse,
  ) => {
    const path = req.url ?? "/";
    if (req.method === "GET" || req.method === "HEAD") {
      if (path === "/healthz") return writeJson(res, 200, { status: "ok" });
      if (path === "/readyz") {
        const report = readiness.report;
        return writeJson(res, report.ready ? 200 : 503, report);
      }
      if (path === "/metrics") {
        options.metrics.registry.metrics().then(
          (text) => {
            res.writeHead(200, { "content-type": options.metrics.registry.contentType });
            res.end(text);
          },
          () => writeJson(res, 500, { message: "metrics unavailable" }),
        );
        return;
      }
    }
    capDeadlineHeaders(req.headers, {
      maxMs: limits.maxDeadlineMs,
      defaultMs: limits.defaultDeadlineMs,
    });
    if (options.httpHandler?.(req, res as unknown as http.ServerResponse)) return;
    if (
      req.httpVersionMajor === 1 &&
      connectFastPath(req as http.IncomingMessage, res as unknown as http.ServerResponse)
    ) {
      return;
    }
    connectHandler(req as http.IncomingMessage, res as unknown as http.ServerResponse);
  };

  const http1 = http.createServer(
    { maxHeaderSize: limits.maxHeaderBytes, requestTimeout: requestTimeoutFor(limits) },
    (req, res) => {
      track(res);
      handleRequest(req, res as unknown as MinimalResponse);
    },
  );
  http1.keepAliveTimeout = KEEP_ALIVE_MS;
  const toHttp1 = (socket: net.Socket, unread: Buffer | undefined) => {
    if (unread) socket.unshift(unread);
    http1.emit("connection", socket);
    socket.resume();
  };
  // Connections whose first request is unary binary Connect are served off
  // the socket until a request of any other kind arrives. Not behind an extra
  // front door (the edge): its hook must see every request first.
  const pipelined =
    options.connectFastPath === false || options.httpHandler
      ? undefined
      : createPipelinedConnectServer({
          ...fastPathOptions,
          maxHeaderBytes: limits.maxHeaderBytes,
          keepAliveMs: KEEP_ALIVE_MS,
          requestTimeoutMs: requestTimeoutFor(limits),
          capDeadline: (headers) =>
            capDeadlineHeaders(headers, {
              maxMs: limits.maxDeadlineMs,
              defaultMs: limits.defaultDeadlineMs,
            }),
          callStarted: () => {
            inFlight++;
          },
          callEnded: () => {
            inFlight--;
          },
          handOver: toHttp1,
        });
  const upgradeHandler = options.upgradeHandler;
  if (upgradeHandler) http1.on("upgrade", (req, socket, head) => upgradeHandler(req, socket, head));

  // Compat objects (Http2ServerRequest/Response) for everything the fast path
  // does not take: this server never listens; streams are emitted into it.
  const compat = http2.createServer({}, (req, res) =>
    handleRequest(req, res as unknown as MinimalResponse),
  );
  const h2Settings = { maxConcurrentStreams: limits.maxConcurrentStreams };
  const h2 = http2.createServer({
    settings: h2Settings,
    maxHeaderListPairs: 128,
    maxSessionMemory: 32,
  });
  const fastPath =
    options.grpcFastPath === false ? () => false : createGrpcFastPath(fastPathOptions);
  h2.on("stream", (stream, headers, flags, rawHeaders) => {
    track(stream);
    capDeadlineHeaders(headers, {
      maxMs: limits.maxDeadlineMs,
      defaultMs: limits.defaultDeadlineMs,
    });
    if (options.streamHandler?.(stream, headers)) return;
    if (fastPath(stream, headers)) return;
    compat.emit("stream", stream, headers, flags, rawHeaders);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    session.on("error", (error) => logger.debug({ err: error }, "http2 session error"));
  });
  const sockets = new Set<net.Socket>();

  const listener = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    socket.once("data", (chunk: Buffer) => {
      const isHttp2 = chunk.subarray(0, HTTP2_PREFACE_START.length).equals(HTTP2_PREFACE_START);
      if (isHttp2) {
        socket.pause();
        socket.unshift(chunk);
        // The http2 session replays socket.read() on the next tick; resuming
        // here would drain the preface into nowhere.
        h2.emit("connection", socket);
      } else if (!pipelined?.accept(socket, chunk)) {
        socket.pause();
        toHttp1(socket, chunk);
      }
    });
  });

  let boundPort = options.port;
  return {
    get inFlight() {
      return inFlight;
    },
    listen() {
      return new Promise((resolve, reject) => {
        listener.once("error", reject);
        listener.listen(options.port, options.host, () => {
          listener.off("error", reject);
          const address = listener.address();
          boundPort = typeof address === "object" && address ? address.port : options.port;
          logger.info({ port: boundPort, host: options.host }, "listening");
          resolve(boundPort);
        });
      });
    },
    async close() {
      readiness.drain();
      listener.close();
      for (const session of sessions) session.close();
      http1.closeIdleConnections();
      pipelined?.drain();
      const deadline = Date.now() + limits.shutdownGraceMs;
      while (inFlight > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        http1.closeIdleConnections();
      }
      if (inFlight > 0) logger.warn({ inFlight }, "shutdown grace elapsed; cancelling calls");
      shutdown.abort();
      http1.closeAllConnections();
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
    },
  };
}

interface MinimalResponse {
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  end(text: string): unknown;
}

function writeJson(res: MinimalResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(text);
}
