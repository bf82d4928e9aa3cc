import type http from "node:http";
import type http2 from "node:http2";
import type { Duplex } from "node:stream";
import type { DescService } from "@bufbuild/protobuf";
import { Code, type Transport } from "@connectrpc/connect";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { Histogram, type Registry } from "prom-client";
import type { TokenVerifier } from "../../platform/auth/token-verifier.js";
import { perKey } from "../../platform/telemetry/metrics.js";
import { generateOpenApi } from "../../platform/transcoder/openapi.js";
import { HttpError } from "../../platform/transcoder/status.js";
import {
  createTranscoder,
  jsonHeaders,
  type TranscodedCall,
  type Transcoder,
  writeStatus,
} from "../../platform/transcoder/transcoder.js";
import { type AdmissionResult, createAdmission } from "./admission.js";
import type { EdgeConfig } from "./edge-config.js";
import { createHttpPolicy, ensureRequestId } from "./http-policy.js";
import { createRateLimiter } from "./rate-limiter.js";
import { createRpcProxy } from "./rpc-proxy.js";

export interface EdgeDeps {
  services: readonly DescService[];
  /** Base URL of the service that owns `service`. */
  upstreamUrl(service: DescService): string;
  /** Transport for REST calls to `service` (gRPC over HTTP/2). */
  transportFor(service: DescService): Transport;
  verifier: TokenVerifier;
  redis: Redis | undefined;
  config: EdgeConfig;
  limits: { defaultDeadlineMs: number; maxDeadlineMs: number; maxMessageBytes: number };
  logger: Logger;
  registry: Registry;
  /** Doc comments for the OpenAPI document (see api-comments.json). */
  comments?: Record<string, string>;
  version?: string;
}

export interface Edge {
  httpHandler(
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ): boolean;
  streamHandler(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
  upgradeHandler(req: http.IncomingMessage, socket: Duplex, head: Buffer): void;
  readonly transcoder: Transcoder;
  readonly openApi: ReturnType<typeof generateOpenApi>;
  close(): void;
}

// "/package.Service/Method": an RPC path. Those the edge does not route
// (its own health and reflection) go to the platform's Connect handler.
const RPC_PATH = /^\/[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+\/[A-Za-z_]\w*(\?|$)/;

/**
 * The public door, composed: one policy layer (request ids, limits, CORS,
 * security headers), then either the byte-level RPC pass-through (Connect,
 * gRPC, gRPC-Web) or the REST transcoder, both admitted by the same access
 * and rate-limit checks.
 */
export function createEdge(deps: EdgeDeps): Edge {
  const { config, logger } = deps;
  const policy = createHttpPolicy(config);
  const admission = createAdmission({
    verifier: deps.verifier,
    rateLimiter: createRateLimiter({
      redis: deps.redis,
      prefix: config.rateLimitPrefix,
      logger,
      registry: deps.registry,
    }),
    rateLimits: config.rateLimits,
    registry: deps.registry,
  });
  const duration = new Histogram({
    name: "edge_http_request_duration_seconds",
    help: "Edge requests by kind (rest, rpc, other) and HTTP status class.",
    labelNames: ["kind", "status_class"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [deps.registry],
  });

  // Label children resolved once (see perKey).
  const durationFor = perKey(
    (kind: string, status: number) => `${kind}:${Math.floor(status / 100)}`,
    (kind, status) => duration.labels({ kind, status_class: `${Math.floor(status / 100)}xx` }),
  );

  const apply = (call: TranscodedCall, verdict: AdmissionResult): void => {
    Object.assign(call.responseHeaders, verdict.headers);
    if (!verdict.ok) {
      if (verdict.error.code === Code.Unauthenticated) {
        call.responseHeaders["www-authenticate"] = 'Bearer realm="commerce-mesh"';
      }
      throw verdict.error;
    }
  };

  const transcoder = createTranscoder({
    services: deps.services,
    transport: (service) => deps.transportFor(service),
    limits: {
      maxBodyBytes: config.maxBodyBytes,
      maxJsonDepth: config.maxJsonDepth,
      defaultTimeoutMs: deps.limits.defaultDeadlineMs,
      maxTimeoutMs: deps.limits.maxDeadlineMs,
    },
    hooks: {
      beforeCall(call) {
        const req = call.request;
        const pending = admission.admit(
          call.binding.method,
          req.headers,
          policy.clientAddress(req.socket?.remoteAddress, req.headers),
        );
        // Public routes decided from leased tokens answer synchronously: no tick.
        if (pending instanceof Promise) return pending.then((verdict) => apply(call, verdict));
        apply(call, pending);
      },
      onError(error, call) {
        if (error.code === Code.Internal || error.code === Code.Unknown) {
          logger.error(
            { err: error.cause ?? error, requestId: call.request.headers["x-request-id"] },
            "REST call failed",
          );
        }
      },
    },
  });

  const proxy = createRpcProxy({
    services: deps.services,
    upstreamUrl: deps.upstreamUrl,
    maxRequestBytes: deps.limits.maxMessageBytes + 5,
    gate: async (route, headers, client) => admission.admit(route.method, headers, client),
    responseHeaders: (headers) => policy.responseHeaders(headers),
    clientAddress: (remote, headers) => policy.clientAddress(remote, headers),
    logger,
  });

  const openApi = generateOpenApi(transcoder.bindings, {
    title: "commerce-mesh public API",
    version: deps.version ?? "v1",
    description:
      "REST mapping of the gRPC contracts (google.api.http). Bodies are proto3 JSON; errors are google.rpc.Status.",
    ...(deps.comments ? { comments: (name: string) => deps.comments?.[name] } : {}),
  });
  const openApiText = JSON.stringify(openApi);

  const record = (
    kind: "rest" | "rpc" | "other",
    req: {
      method?: string | undefined;
      url?: string | undefined;
      headers: http.IncomingHttpHeaders;
    },
    status: number,
    started: number,
  ) => {
    const seconds = (performance.now() - started) / 1000;
    durationFor(kind, status).observe(seconds);
    if (logger.isLevelEnabled("info")) {
      logger.info(
        {
          requestId: req.headers["x-request-id"],
          method: req.method,
          path: req.url?.split("?")[0]?.slice(0, 200),
          status,
          durationMs: Math.round(seconds * 1e6) / 1e3,
          kind,
        },
        "request",
      );
    }
  };
  const accessLog = (
    kind: "rest" | "rpc" | "other",
    req: Parameters<typeof record>[1],
    res: { statusCode: number; once(event: "finish", fn: () => void): unknown },
    started: number,
  ) => {
    res.once("finish", () => record(kind, req, res.statusCode, started));
  };

  function httpHandler(
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ): boolean {
    const started = performance.now();
    ensureRequestId(req.headers);
    const url = req.url ?? "/";
    if (url.length > config.maxUrlLength) {
      accessLog("other", req, res, started);
      writeStatus(
        res,
        new HttpError(414, Code.InvalidArgument, `URL longer than ${config.maxUrlLength} bytes`),
        transcoder.registry,
        policy.responseHeaders(req.headers),
        req,
      );
      return true;
    }
    const preflight = policy.preflight(req.method, req.headers);
    if (preflight) {
      (res as http.ServerResponse).writeHead(preflight.status, preflight.headers);
      res.end();
      return true;
    }
    if (req.method === "GET" && (url === "/openapi.json" || url.startsWith("/openapi.json?"))) {
      (res as http.ServerResponse).writeHead(
        200,
        jsonHeaders(
          { ...policy.responseHeaders(req.headers), "cache-control": "public, max-age=300" },
          openApiText,
        ),
      );
      res.end(openApiText);
      return true;
    }
    if (RPC_PATH.test(url)) {
      if ("httpVersionMajor" in req && req.httpVersionMajor === 1) {
        if (proxy.handleHttp1(req as http.IncomingMessage, res as http.ServerResponse)) {
          accessLog("rpc", req, res, started);
          return true;
        }
      }
      // The edge's own health and reflection services, or a 404 from Connect.
      return false;
    }
    // Recorded when the transcoder is done (its answer written, or the
    // client gone): no per-request "finish" listener.
    void transcoder.handle(req, res, policy.responseHeaders(req.headers)).then(
      () => record("rest", req, res.statusCode, started),
      (error: unknown) => {
        logger.error({ err: error }, "REST handler crashed");
        if (!res.headersSent) {
          writeStatus(
            res,
            new HttpError(500, Code.Internal, "internal error"),
            transcoder.registry,
            {},
            req,
          );
        } else res.destroy();
        record("rest", req, res.statusCode, started);
      },
    );
    return true;
  }

  function streamHandler(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
  ): boolean {
    const path = headers[":path"] ?? "/";
    if (!RPC_PATH.test(path)) return false;
    ensureRequestId(headers);
    return proxy.handleStream(stream, headers);
  }

  function upgradeHandler(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    ensureRequestId(req.headers);
    const origin = req.headers.origin;
    if (
      config.corsOrigins.size > 0 &&
      typeof origin === "string" &&
      !config.corsOrigins.has(origin)
    ) {
      socket.end("HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
      return;
    }
    transcoder.handleUpgrade(req, socket, head);
  }

  return {
    httpHandler,
    streamHandler,
    upgradeHandler,
    transcoder,
    openApi,
    close() {
      transcoder.close();
      proxy.close();
    },
  };
}
