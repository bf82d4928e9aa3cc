import http from "node:http";
import http2 from "node:http2";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import {
  type ProtocolErrorResponse,
  protocolError,
  type RpcProtocol,
  rpcProtocolOf,
} from "./rpc-protocol.js";

/**
 * Connect, gRPC and gRPC-Web pass-through: the request is routed by its path
 * ("/package.Service/Method") to the service that owns it and forwarded as
 * bytes — headers, body frames and trailers — never decoded or re-encoded.
 * HTTP/2 streams go upstream over one multiplexed HTTP/2 session per
 * upstream; HTTP/1.1 requests (Connect-Web, gRPC-Web from browsers) over a
 * keep-alive HTTP/1.1 pool. Streaming works because nothing is buffered.
 */

export interface ProxyRoute {
  method: DescMethod;
  upstream: Upstream;
}

/** Decides before anything is forwarded; returns extra response headers or an error. */
export type ProxyGate = (
  route: ProxyRoute,
  headers: http.IncomingHttpHeaders,
  clientAddress: string,
) => Promise<
  | { ok: true; headers: Record<string, string> }
  | { ok: false; error: ConnectError; headers: Record<string, string> }
>;

export interface RpcProxyOptions {
  services: readonly DescService[];
  upstreamUrl(service: DescService): string;
  gate: ProxyGate;
  /** Largest request body forwarded (all frames together). */
  maxRequestBytes: number;
  /** Headers added to every response (security, CORS, request id). */
  responseHeaders(headers: http.IncomingHttpHeaders): Record<string, string>;
  clientAddress(remote: string | undefined, headers: http.IncomingHttpHeaders): string;
  logger: Pick<Logger, "debug" | "warn">;
}

export interface RpcProxy {
  /** The route for a request path, or undefined when it is not a mesh RPC. */
  routeOf(path: string): ProxyRoute | "unknown-method" | undefined;
  handleHttp1(req: http.IncomingMessage, res: http.ServerResponse): boolean;
  handleStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
  close(): void;
}

class Upstream {
  readonly url: URL;
  readonly agent: http.Agent;
  private session: http2.ClientHttp2Session | undefined;
  constructor(baseUrl: string) {
    this.url = new URL(baseUrl);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 });
  }
  h2(): http2.ClientHttp2Session {
    const current = this.session;
    if (current && !current.closed && !current.destroyed) return current;
    const session = http2.connect(this.url.origin);
    session.on("error", () => {});
    session.on("goaway", () => session.close());
    session.once("close", () => {
      if (this.session === session) this.session = undefined;
    });
    session.unref();
    this.session = session;
    return session;
  }
  close(): void {
    this.session?.close();
    this.agent.destroy();
  }
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "host",
  "http2-settings",
]);

function forwardableHttp1(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const key in headers) {
    if (HOP_BY_HOP.has(key) || key === "te") continue;
    out[key] = headers[key];
  }
  return out;
}

function forwardableHttp2(headers: http2.IncomingHttpHeaders): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const key in headers) {
    if (key.charCodeAt(0) === 58 /* ":" */ || HOP_BY_HOP.has(key)) continue;
    // HTTP/2 allows only "te: trailers" (gRPC requires it).
    if (key === "te" && headers[key] !== "trailers") continue;
    out[key] = headers[key];
  }
  return out;
}

function responseHeadersOf(headers: http.IncomingHttpHeaders | http2.IncomingHttpHeaders) {
  const out: http2.OutgoingHttpHeaders = {};
  for (const key in headers) {
    if (key.charCodeAt(0) === 58 || HOP_BY_HOP.has(key)) continue;
    out[key] = headers[key];
  }
  return out;
}

const unavailable = (cause: unknown) =>
  new ConnectError("service unavailable", Code.Unavailable, undefined, undefined, cause);

export function createRpcProxy(options: RpcProxyOptions): RpcProxy {
  const upstreams = new Map<string, Upstream>();
  const routes = new Map<string, ProxyRoute>();
  const servicePaths = new Set<string>();
  for (const service of options.services) {
    const url = options.upstreamUrl(service);
    let upstream = upstreams.get(url);
    if (!upstream) {
      upstream = new Upstream(url);
      upstreams.set(url, upstream);
    }
    servicePaths.add(`/${service.typeName}/`);
    for (const method of service.methods) {
      routes.set(`/${service.typeName}/${method.name}`, { method, upstream });
    }
  }

  const routeOf = (path: string): ProxyRoute | "unknown-method" | undefined => {
    const route = routes.get(path);
    if (route) return route;
    const slash = path.indexOf("/", 1);
    if (slash > 0 && servicePaths.has(path.slice(0, slash + 1))) return "unknown-method";
    return undefined;
  };

  const pathOf = (url: string) => {
    const q = url.indexOf("?");
    return q === -1 ? url : url.slice(0, q);
  };

  function writeHttp1Error(
    res: http.ServerResponse,
    protocol: RpcProtocol,
    error: ConnectError,
    contentType: string | undefined,
    extra: Record<string, string>,
  ) {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const reply: ProtocolErrorResponse = protocolError(protocol, error, contentType);
    res.writeHead(reply.status, { ...extra, ...reply.headers });
    res.end(reply.body);
  }

  function handleHttp1(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const url = req.url ?? "/";
    const route = routeOf(pathOf(url));
    if (route === undefined) return false;
    const contentType = req.headers["content-type"];
    const protocol = rpcProtocolOf(req.method, contentType);
    if (protocol === undefined) return false;
    const base = options.responseHeaders(req.headers);
    if (route === "unknown-method") {
      writeHttp1Error(
        res,
        protocol,
        new ConnectError(`${pathOf(url)} is not implemented`, Code.Unimplemented),
        contentType,
        base,
      );
      return true;
    }
    const client = options.clientAddress(req.socket.remoteAddress, req.headers);
    req.pause();
    void options.gate(route, req.headers, client).then(
      (verdict) => {
        const headers = { ...base, ...verdict.headers };
        if (!verdict.ok) {
          writeHttp1Error(res, protocol, verdict.error, contentType, headers);
          req.resume();
          return;
        }
        forwardHttp1(req, res, route, protocol, headers);
      },
      (error) => writeHttp1Error(res, protocol, ConnectError.from(error), contentType, base),
    );
    return true;
  }

  function forwardHttp1(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    route: ProxyRoute,
    protocol: RpcProtocol,
    extra: Record<string, string>,
  ) {
    const { upstream } = route;
    const contentType = req.headers["content-type"];
    const out = http.request({
      agent: upstream.agent,
      protocol: upstream.url.protocol,
      hostname: upstream.url.hostname,
      port: upstream.url.port,
      method: req.method,
      path: req.url,
      headers: forwardableHttp1(req.headers),
    });
    let received = 0;
    req.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received > options.maxRequestBytes) {
        out.destroy();
        writeHttp1Error(
          res,
          protocol,
          new ConnectError(
            `request larger than ${options.maxRequestBytes} bytes`,
            Code.ResourceExhausted,
          ),
          contentType,
          extra,
        );
        req.destroy();
        return;
      }
      if (!out.write(chunk)) {
        req.pause();
        out.once("drain", () => req.resume());
      }
    });
    req.on("end", () => out.end());
    req.resume();
    out.on("response", (up) => {
      if (res.destroyed) {
        up.destroy();
        return;
      }
      res.writeHead(up.statusCode ?? 502, { ...extra, ...responseHeadersOf(up.headers) });
      up.on("data", (chunk: Buffer) => {
        if (!res.write(chunk)) {
          up.pause();
          res.once("drain", () => up.resume());
        }
      });
      up.on("end", () => {
        if (up.rawTrailers.length > 0) res.addTrailers(up.trailers as Record<string, string>);
        res.end();
      });
      up.on("error", () => res.destroy());
    });
    out.on("error", (error) => {
      options.logger.debug({ err: error }, "upstream request failed");
      writeHttp1Error(res, protocol, unavailable(error), contentType, extra);
    });
    res.on("close", () => {
      if (!res.writableFinished) out.destroy();
    });
  }

  function respondStreamError(
    stream: http2.ServerHttp2Stream,
    protocol: RpcProtocol,
    error: ConnectError,
    contentType: string | undefined,
    extra: Record<string, string>,
  ) {
    if (stream.destroyed || stream.closed) return;
    if (stream.headersSent) {
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const reply = protocolError(protocol, error, contentType);
    stream.respond(
      { ":status": reply.status, ...extra, ...reply.headers },
      { endStream: reply.body === undefined },
    );
    if (reply.body !== undefined) stream.end(reply.body);
    stream.resume();
  }

  function handleStream(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
  ): boolean {
    const path = headers[":path"] ?? "/";
    const route = routeOf(pathOf(path));
    if (route === undefined) return false;
    const contentType = headers["content-type"];
    const protocol = rpcProtocolOf(headers[":method"], contentType);
    if (protocol === undefined) return false;
    const base = options.responseHeaders(headers);
    if (route === "unknown-method") {
      respondStreamError(
        stream,
        protocol,
        new ConnectError(`${pathOf(path)} is not implemented`, Code.Unimplemented),
        contentType,
        base,
      );
      return true;
    }
    const client = options.clientAddress(stream.session?.socket?.remoteAddress, headers);
    stream.pause();
    void options.gate(route, headers, client).then(
      (verdict) => {
        const extra = { ...base, ...verdict.headers };
        if (!verdict.ok) {
          respondStreamError(stream, protocol, verdict.error, contentType, extra);
          return;
        }
        forwardStream(stream, headers, route, protocol, extra);
      },
      (error) => respondStreamError(stream, protocol, ConnectError.from(error), contentType, base),
    );
    return true;
  }

  function forwardStream(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    route: ProxyRoute,
    protocol: RpcProtocol,
    extra: Record<string, string>,
  ) {
    const contentType = headers["content-type"];
    let session: http2.ClientHttp2Session;
    try {
      session = route.upstream.h2();
    } catch (error) {
      respondStreamError(stream, protocol, unavailable(error), contentType, extra);
      return;
    }
    const out = session.request(
      {
        ...forwardableHttp2(headers),
        ":method": headers[":method"] ?? "POST",
        ":path": headers[":path"] ?? "/",
        ":authority": route.upstream.url.host,
      },
      { endStream: false },
    );
    let received = 0;
    let trailers: http2.OutgoingHttpHeaders | undefined;
    let responded = false;
    stream.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received > options.maxRequestBytes) {
        out.close(http2.constants.NGHTTP2_CANCEL);
        respondStreamError(
          stream,
          protocol,
          new ConnectError(
            `request larger than ${options.maxRequestBytes} bytes`,
            Code.ResourceExhausted,
          ),
          contentType,
          extra,
        );
        return;
      }
      if (!out.write(chunk)) {
        stream.pause();
        out.once("drain", () => stream.resume());
      }
    });
    stream.on("end", () => out.end());
    stream.resume();
    out.on("response", (upHeaders, flags) => {
      if (stream.destroyed || stream.closed) return;
      responded = true;
      const status = upHeaders[":status"] ?? 502;
      const responseHeaders = { ":status": status, ...extra, ...responseHeadersOf(upHeaders) };
      // Trailers-only (a gRPC error without a body): nothing else will follow.
      if (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) {
        stream.respond(responseHeaders, { endStream: true });
        return;
      }
      const isGrpc = protocol === "grpc";
      stream.respond(responseHeaders, { waitForTrailers: isGrpc });
      if (isGrpc) {
        stream.once("wantTrailers", () => {
          stream.sendTrailers(
            trailers ?? {
              "grpc-status": String(Code.Internal),
              "grpc-message": "upstream sent no trailers",
            },
          );
        });
      }
      out.on("data", (chunk: Buffer) => {
        if (!stream.write(chunk)) {
          out.pause();
          stream.once("drain", () => out.resume());
        }
      });
      out.on("end", () => stream.end());
    });
    out.on("trailers", (upTrailers) => {
      trailers = responseHeadersOf(upTrailers);
    });
    out.on("error", (error) => {
      options.logger.debug({ err: error }, "upstream stream failed");
      if (!responded) respondStreamError(stream, protocol, unavailable(error), contentType, extra);
      else if (!stream.closed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    });
    out.on("close", () => {
      if (!responded && !stream.closed) {
        respondStreamError(
          stream,
          protocol,
          unavailable(new Error(`upstream stream closed (code ${out.rstCode})`)),
          contentType,
          extra,
        );
      }
    });
    stream.on("close", () => {
      if (!out.closed) out.close(http2.constants.NGHTTP2_CANCEL);
    });
  }

  return {
    routeOf,
    handleHttp1,
    handleStream,
    close() {
      for (const upstream of upstreams.values()) upstream.close();
    },
  };
}
