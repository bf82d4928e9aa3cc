import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import {
  connectTimeoutMs,
  decodeBinaryInput,
  runUnaryCall,
  toFetchHeaders,
  type UnaryFastPathOptions,
  type UnaryRoute,
  unaryRoutes,
} from "./unary-call.js";

/**
 * Unary binary Connect served straight off an HTTP/1.1 connection, for the
 * connections that carry nothing else: the edge's pooled, pipelined upstream
 * calls (platform/clients/connect-http1-transport.ts).
 *
 * Why: node:http builds an IncomingMessage, a ServerResponse and their
 * streams per request and writes each answer on its own; measured with the
 * edge's client at 50 calls in flight (2 connections × 32 pipelined), that is
 * 16–19 µs of server CPU per call against 3 µs here, and the client spends
 * ~40% less too because answers finished together leave in one write.
 * Answers are flushed once per pass of the event loop (setImmediate), not per
 * answer: every cache hit of one Redis reply then leaves in one write. On
 * these VMs a send costs tens of µs (loopback delivery runs in the sender's
 * syscall); in the REST bench the catalog went from ~1.2 writes and 0.4 reads
 * per call to ~0.1 of each, and from 50–86 to 40–56 µs of CPU per call.
 *
 * Safety: this parser accepts one narrow, unambiguous shape — `POST <route>
 * HTTP/1.1` with a Host, `content-type: application/proto`, exactly one decimal
 * content-length within the message limit, no transfer-encoding, no expect,
 * no upgrade, no `connection: close`, no duplicate or folded header lines,
 * only CRLF line ends. The first request that is anything else (or a head
 * longer than the header limit) ends this mode: once the answers already
 * accepted are written, the socket and its unread bytes go to node:http for
 * good, which answers it exactly as if it had owned the connection from the
 * start. So a malformed or unusual request always meets node's own parser.
 */

export interface PipelinedConnectOptions extends UnaryFastPathOptions {
  maxHeaderBytes: number;
  /** Idle keep-alive connections close after this. */
  keepAliveMs: number;
  /** A request still incomplete this long after its first byte closes the connection. */
  requestTimeoutMs: number;
  /** Rewrites the deadline headers as the server does for every other path. */
  capDeadline(headers: Record<string, string>): void;
  /** Calls in flight count towards the server's graceful shutdown. */
  callStarted(): void;
  callEnded(): void;
  /** Gives the socket, with `unread` put back in front, to node:http. */
  handOver(socket: Socket, unread: Buffer | undefined): void;
}

export interface PipelinedConnectServer {
  /** True when the connection was taken (its first request fits this path). */
  accept(socket: Socket, first: Buffer): boolean;
  /** Closes idle connections now and busy ones once their answers are out. */
  drain(): void;
}

/** Most requests accepted on one connection before the rest wait in the socket. */
const MAX_PIPELINED = 128;
const HEAD_END = Buffer.from("\r\n\r\n");
const BARE_LF_END = Buffer.from("\n\n");
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const DIGITS = /^[0-9]{1,15}$/;
/** A field value may carry no control character but tab (RFC 9110 §5.5). */
function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}

interface ParsedHead {
  route: UnaryRoute;
  path: string;
  headers: Record<string, string>;
  bodyLength: number;
}

interface Exchange {
  answer: Buffer | undefined;
  /** Cancels the call when the client goes away. */
  cancel: (() => void) | undefined;
}

let dateText = "";
let dateSecond = 0;
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

export function createPipelinedConnectServer(
  options: PipelinedConnectOptions,
): PipelinedConnectServer {
  const routes = unaryRoutes(options.services);
  const connections = new Set<{ drain(): void }>();

  /** The head of a request this path serves, or undefined for anything else. */
  function parseHead(text: string): ParsedHead | undefined {
    const lines = text.split("\r\n");
    const requestLine = lines[0]!;
    if (!requestLine.startsWith("POST ") || !requestLine.endsWith(" HTTP/1.1")) return undefined;
    const path = requestLine.slice(5, -9);
    const route = routes.get(path);
    if (route === undefined) return undefined;
    const headers: Record<string, string> = {};
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(":");
      if (colon <= 0) return undefined;
      const name = line.slice(0, colon).toLowerCase();
      if (!TOKEN.test(name) || name in headers) return undefined;
      const value = line.slice(colon + 1).trim();
      if (hasControlCharacter(value)) return undefined;
      headers[name] = value;
    }
    // HTTP/1.1 requires Host; node:http answers its absence with 400.
    if (headers.host === undefined) return undefined;
    if (headers["content-type"] !== "application/proto") return undefined;
    const version = headers["connect-protocol-version"];
    if (version !== undefined && version !== "1") return undefined;
    const encoding = headers["content-encoding"];
    if (encoding !== undefined && encoding !== "identity") return undefined;
    if (
      headers["transfer-encoding"] !== undefined ||
      headers.expect !== undefined ||
      headers.upgrade !== undefined
    ) {
      return undefined;
    }
    const connection = headers.connection;
    if (connection !== undefined && connection.toLowerCase() !== "keep-alive") return undefined;
    const length = headers["content-length"];
    if (length === undefined || !DIGITS.test(length)) return undefined;
    const bodyLength = Number(length);
    // Oversized: node:http and connect-node answer it (and drain the body).
    if (bodyLength > options.readMaxBytes) return undefined;
    return { route, path, headers, bodyLength };
  }

  function answerBytes(
    status: number,
    contentType: string,
    body: Uint8Array,
    headers: Headers,
    trailers: Headers | undefined,
  ): Buffer {
    let head =
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\ncontent-type: ${contentType}\r\n` +
      `content-length: ${body.length}\r\ndate: ${httpDate()}\r\n`;
    // Headers values were validated when they were set.
    headers.forEach((value, key) => {
      head += `${key}: ${value}\r\n`;
    });
    // Connect unary sends trailers as prefixed headers.
    trailers?.forEach((value, key) => {
      head += `trailer-${key}: ${value}\r\n`;
    });
    head += "\r\n";
    const out = Buffer.allocUnsafe(Buffer.byteLength(head, "latin1") + body.length);
    const written = out.write(head, 0, "latin1");
    out.set(body, written);
    return out;
  }

  function errorAnswer(error: ConnectError): Buffer {
    return answerBytes(
      codeToHttpStatus(error.code),
      "application/json",
      errorToJsonBytes(error, {}),
      error.metadata,
      undefined,
    );
  }

  function accept(socket: Socket, first: Buffer): boolean {
    const headEnd = first.indexOf(HEAD_END);
    if (headEnd < 0 || parseHead(first.toString("latin1", 0, headEnd)) === undefined) return false;

    let unread: Buffer | undefined;
    // While a request's body is arriving, chunks wait here and are joined once
    // the `needed` bytes are there (not once per chunk).
    let parked: Buffer[] = [];
    let parkedBytes = 0;
    let needed = 0;
    // When the incomplete request at the front began arriving (0: none).
    let waitingSince = 0;
    const pending: Exchange[] = [];
    let leaving = false;
    let draining = false;
    let closed = false;
    let writeBlocked = false;

    // Reading stops while the pipeline is full, the socket's write buffer is
    // full, or the connection is being handed over; bytes wait in the socket.
    const updateFlow = () => {
      const stop = leaving || writeBlocked || pending.length >= MAX_PIPELINED;
      if (stop && !socket.isPaused()) socket.pause();
      else if (!stop && socket.isPaused()) socket.resume();
    };

    const flush = () => {
      const ready: Buffer[] = [];
      while (pending.length > 0 && pending[0]!.answer !== undefined) {
        ready.push(pending.shift()!.answer!);
        options.callEnded();
      }
      if (closed) return;
      if (ready.length > 0) {
        const flushed = socket.write(ready.length === 1 ? ready[0]! : Buffer.concat(ready));
        if (!flushed && !writeBlocked) {
          writeBlocked = true;
          socket.once("drain", () => {
            writeBlocked = false;
            updateFlow();
            parse();
          });
        }
      }
      if (pending.length === 0) {
        if (leaving) return leave();
        if (draining) {
          socket.end();
          return;
        }
      }
      updateFlow();
      parse();
    };

    // Answers finished in one pass of the event loop (say, every cache hit of
    // one Redis reply) leave in one write.
    let flushScheduled = false;
    const flushSoon = () => {
      if (flushScheduled) return;
      flushScheduled = true;
      setImmediate(() => {
        flushScheduled = false;
        flush();
      });
    };

    const complete = (exchange: Exchange, answer: Buffer) => {
      if (exchange.answer !== undefined) return;
      exchange.answer = answer;
      exchange.cancel = undefined;
      flushSoon();
    };

    const start = (head: ParsedHead, body: Buffer) => {
      const exchange: Exchange = { answer: undefined, cancel: undefined };
      pending.push(exchange);
      options.callStarted();
      let input: unknown;
      try {
        input = decodeBinaryInput(head.route, body);
      } catch (error) {
        complete(exchange, errorAnswer(error as ConnectError));
        return;
      }
      options.capDeadline(head.headers);
      runUnaryCall({
        route: head.route,
        path: head.path,
        protocolName: "connect",
        requestHeader: toFetchHeaders(head.headers),
        timeoutMs: connectTimeoutMs(head.headers["connect-timeout-ms"]),
        input,
        options,
        onClientGone(cancel) {
          exchange.cancel = cancel;
          return () => {
            exchange.cancel = undefined;
          };
        },
        onDeadline: (error) => complete(exchange, errorAnswer(error)),
      }).then(
        (result) =>
          complete(
            exchange,
            answerBytes(
              200,
              "application/proto",
              result.bytes,
              result.responseHeader,
              result.responseTrailer,
            ),
          ),
        (error: unknown) => complete(exchange, errorAnswer(ConnectError.from(error))),
      );
    };

    /** A slow sender (headers or body) may not hold the connection forever. */
    const incomplete = () => {
      const now = Date.now();
      if (waitingSince === 0) waitingSince = now;
      else if (now - waitingSince > options.requestTimeoutMs) socket.destroy();
    };

    /** Takes every complete request out of `unread`, as far as the pipeline limit allows. */
    const parse = () => {
      while (unread !== undefined && !leaving && !closed && !writeBlocked) {
        if (pending.length >= MAX_PIPELINED) {
          updateFlow();
          return;
        }
        const end = unread.indexOf(HEAD_END);
        if (end < 0) {
          // Too long, or ended with bare LFs: node's parser decides.
          if (unread.length > options.maxHeaderBytes || unread.includes(BARE_LF_END)) {
            beginLeaving();
          } else incomplete();
          return;
        }
        const head = parseHead(unread.toString("latin1", 0, end));
        if (head === undefined) {
          beginLeaving();
          return;
        }
        const bodyStart = end + HEAD_END.length;
        if (unread.length < bodyStart + head.bodyLength) {
          needed = bodyStart + head.bodyLength;
          incomplete();
          return;
        }
        waitingSince = 0;
        const body = unread.subarray(bodyStart, bodyStart + head.bodyLength);
        const rest = bodyStart + head.bodyLength;
        unread = rest === unread.length ? undefined : unread.subarray(rest);
        start(head, body);
      }
    };

    const onData = (chunk: Buffer) => {
      if (needed > 0) {
        parked.push(chunk);
        parkedBytes += chunk.length;
        if ((unread?.length ?? 0) + parkedBytes < needed) {
          incomplete();
          return;
        }
        unread = Buffer.concat(unread === undefined ? parked : [unread, ...parked]);
        parked = [];
        parkedBytes = 0;
        needed = 0;
      } else {
        unread = unread === undefined ? chunk : Buffer.concat([unread, chunk]);
      }
      parse();
    };

    const onTimeout = () => {
      if (pending.length === 0) socket.destroy();
    };

    const detach = () => {
      socket.removeListener("data", onData);
      socket.removeListener("timeout", onTimeout);
      socket.removeListener("close", onClose);
      socket.setTimeout(0);
      connections.delete(connection);
    };

    /** A request this path does not serve: finish what was accepted, then hand over. */
    const beginLeaving = () => {
      leaving = true;
      updateFlow();
      if (pending.length === 0) leave();
    };

    const leave = () => {
      detach();
      const rest =
        parked.length === 0
          ? unread
          : Buffer.concat(unread === undefined ? parked : [unread, ...parked]);
      unread = undefined;
      parked = [];
      options.handOver(socket, rest);
    };

    const onClose = () => {
      closed = true;
      detach();
      for (const exchange of pending.splice(0)) {
        exchange.cancel?.();
        options.callEnded();
      }
    };

    const connection = {
      drain() {
        draining = true;
        if (pending.length === 0) socket.end();
      },
    };
    connections.add(connection);
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.setTimeout(options.keepAliveMs);
    socket.on("timeout", onTimeout);
    onData(first);
    return true;
  }

  return {
    accept,
    drain() {
      for (const connection of [...connections]) connection.drain();
    },
  };
}
