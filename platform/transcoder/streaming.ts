import type { IncomingMessage } from "node:http";
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { DescMethodServerStreaming, Registry } from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { type WebSocket, WebSocketServer } from "ws";
import type { Binding } from "./bindings.js";
import { asConnectError, httpStatusOf, type StatusJson } from "./status.js";
import type { HttpRequest, HttpResponse, TranscoderLimits } from "./transcoder.js";

/**
 * Server-streaming RPCs for REST clients, on the same route:
 *
 * - Server-Sent Events (plain GET): each message is one event whose `id:` is
 *   the message's sequence when the RPC has a resume mapping, so a browser
 *   EventSource reconnects with `Last-Event-ID` and continues after it. An
 *   error after the stream started is a final `event: error` carrying a
 *   google.rpc.Status; a normal end is a final `event: end`. An error before
 *   the first message (within a short wait) is a plain HTTP error instead.
 * - WebSocket (Upgrade: websocket): each message is a text frame
 *   `{"result": …}`; an error is `{"error": Status}` followed by close code
 *   4000 + gRPC code; a normal end closes with 1000. Browsers cannot set an
 *   Authorization header on a WebSocket, so a bearer token may come as a
 *   subprotocol instead (see adoptWebSocketBearer).
 */

/** The subprotocol a WebSocket client offers next to its `bearer.<token>` entry. */
export const WEBSOCKET_SUBPROTOCOL = "commerce-mesh.v1";
const BEARER_PREFIX = "bearer.";

/**
 * `new WebSocket(url, ["commerce-mesh.v1", "bearer." + token])`: the token
 * entry becomes `Authorization: Bearer <token>` (an explicit Authorization
 * header wins) and is removed from the offered list, so the handshake selects
 * `commerce-mesh.v1` and never echoes the token. JWTs are base64url with dots,
 * all valid in a subprotocol token.
 */
export function adoptWebSocketBearer(headers: IncomingMessage["headers"]): void {
  const offered = headers["sec-websocket-protocol"];
  if (typeof offered !== "string" || !offered.includes(BEARER_PREFIX)) return;
  const kept: string[] = [];
  let token: string | undefined;
  for (const entry of offered.split(",")) {
    const name = entry.trim();
    if (name.startsWith(BEARER_PREFIX)) token ??= name.slice(BEARER_PREFIX.length);
    else if (name !== "") kept.push(name);
  }
  if (kept.length > 0) headers["sec-websocket-protocol"] = kept.join(", ");
  else delete headers["sec-websocket-protocol"];
  if (token && headers.authorization === undefined) headers.authorization = `Bearer ${token}`;
}

export interface StreamingDeps {
  limits: TranscoderLimits;
  registry: Registry;
  transportFor(binding: Binding): Transport;
  responseJson(binding: Binding, message: unknown): unknown;
  statusJson(error: ConnectError): StatusJson;
  onError(error: ConnectError, binding: Binding, request: HttpRequest): void;
}

export interface StreamingServer {
  serveSse(
    binding: Binding,
    req: HttpRequest,
    res: HttpResponse,
    input: unknown,
    upstreamHeaders: Record<string, string>,
    responseHeaders: Record<string, string> | undefined,
  ): Promise<void>;
  serveWebSocket(
    binding: Binding,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    input: unknown,
    upstreamHeaders: Record<string, string>,
  ): void;
  rejectUpgrade(socket: Duplex, error: ConnectError, headers?: Record<string, string>): void;
  close(): void;
}

async function* once<T>(value: T): AsyncIterable<T> {
  yield value;
}

function sequenceOf(binding: Binding, message: unknown): string | undefined {
  const resume = binding.resume;
  if (!resume) return undefined;
  let value = message as Record<string, unknown> | undefined;
  for (const field of resume.response) {
    if (value === undefined || value === null) return undefined;
    value = value[field.localName] as Record<string, unknown> | undefined;
  }
  return value === undefined || value === null ? undefined : String(value);
}

export function createStreamingServer(deps: StreamingDeps): StreamingServer {
  const { limits } = deps;
  const open = new Set<AbortController>();
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });

  const start = async (
    binding: Binding,
    input: unknown,
    upstreamHeaders: Record<string, string>,
    controller: AbortController,
  ) => {
    const response = await deps
      .transportFor(binding)
      .stream(
        binding.method as DescMethodServerStreaming,
        controller.signal,
        limits.streamTimeoutMs,
        upstreamHeaders,
        once(input as never),
      );
    return response.message[Symbol.asyncIterator]();
  };

  async function serveSse(
    binding: Binding,
    req: HttpRequest,
    res: HttpResponse,
    input: unknown,
    upstreamHeaders: Record<string, string>,
    responseHeaders: Record<string, string> | undefined,
  ): Promise<void> {
    const controller = new AbortController();
    open.add(controller);
    const onClose = () => controller.abort(new ConnectError("client went away", Code.Canceled));
    res.once("close", onClose);
    let keepAlive: NodeJS.Timeout | undefined;
    let started = false;
    const startEvents = () => {
      if (started) return;
      started = true;
      res.writeHead(200, {
        ...responseHeaders,
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      });
      // Flush the headers now: a client may wait long for the first event.
      res.write(": stream open\n\n");
      keepAlive = setInterval(() => res.write(": keep-alive\n\n"), limits.sseKeepAliveMs);
      keepAlive.unref();
    };
    const event = (message: unknown) => {
      const id = sequenceOf(binding, message);
      const data = JSON.stringify(deps.responseJson(binding, message));
      res.write(id === undefined ? `data: ${data}\n\n` : `id: ${id}\ndata: ${data}\n\n`);
    };
    try {
      const iterator = await start(binding, input, upstreamHeaders, controller);
      // Wait briefly for the first result so an immediate failure (not
      // found, denied) is an HTTP status rather than an event.
      const first = iterator.next();
      let timer: NodeJS.Timeout | undefined;
      const waited = await Promise.race([
        first.then((r) => ({ r })),
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), limits.streamFirstMessageWaitMs);
        }),
      ]);
      clearTimeout(timer);
      startEvents();
      let result = waited ? waited.r : await first;
      while (!result.done) {
        event(result.value);
        result = await iterator.next();
      }
      if (!res.writableEnded) res.end("event: end\ndata: {}\n\n");
    } catch (error) {
      const connectError = asConnectError(error);
      if (controller.signal.aborted && res.destroyed) return;
      if (!started) throw connectError;
      deps.onError(connectError, binding, req);
      if (!res.writableEnded) {
        res.end(`event: error\ndata: ${JSON.stringify(deps.statusJson(connectError))}\n\n`);
      }
    } finally {
      clearInterval(keepAlive);
      res.off("close", onClose);
      open.delete(controller);
    }
  }

  function serveWebSocket(
    binding: Binding,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    input: unknown,
    upstreamHeaders: Record<string, string>,
  ): void {
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const controller = new AbortController();
      open.add(controller);
      ws.on("close", () => {
        controller.abort(new ConnectError("client went away", Code.Canceled));
        open.delete(controller);
      });
      ws.on("error", () => ws.terminate());
      // Clients only listen; anything they send is ignored.
      ws.on("message", () => {});
      void (async () => {
        try {
          const iterator = await start(binding, input, upstreamHeaders, controller);
          for (let r = await iterator.next(); !r.done; r = await iterator.next()) {
            if (ws.readyState !== ws.OPEN) return;
            ws.send(`{"result":${JSON.stringify(deps.responseJson(binding, r.value))}}`);
          }
          ws.close(1000, "end of stream");
        } catch (error) {
          const connectError = asConnectError(error);
          if (ws.readyState !== ws.OPEN) return;
          deps.onError(connectError, binding, req);
          ws.send(`{"error":${JSON.stringify(deps.statusJson(connectError))}}`);
          ws.close(4000 + connectError.code, Code[connectError.code]?.slice(0, 100));
        } finally {
          open.delete(controller);
        }
      })();
    });
  }

  function rejectUpgrade(socket: Duplex, error: ConnectError, headers?: Record<string, string>) {
    if (socket.destroyed) return;
    const status = httpStatusOf(error);
    const body = JSON.stringify(deps.statusJson(error));
    const lines = [
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}`,
      "content-type: application/json",
      `content-length: ${Buffer.byteLength(body)}`,
      "connection: close",
    ];
    for (const [k, v] of Object.entries({
      ...headers,
      ...(error as { headers?: Record<string, string> }).headers,
    })) {
      if (!/[\r\n]/.test(k + v)) lines.push(`${k}: ${v}`);
    }
    socket.end(`${lines.join("\r\n")}\r\n\r\n${body}`);
  }

  return {
    serveSse,
    serveWebSocket,
    rejectUpgrade,
    close() {
      for (const controller of open) {
        controller.abort(new ConnectError("server is shutting down", Code.Unavailable));
      }
      for (const client of wss.clients) client.close(1001, "server shutting down");
      wss.close();
    },
  };
}
