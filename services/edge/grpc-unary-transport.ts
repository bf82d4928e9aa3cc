import http2 from "node:http2";
import {
  create,
  type DescMessage,
  type DescMethodStreaming,
  type DescMethodUnary,
  fromBinary,
  isMessage,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type StreamResponse,
  type Transport,
  type UnaryResponse,
} from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";

/**
 * A Connect `Transport` whose unary calls are gRPC over one pooled HTTP/2
 * session per upstream, written directly on node:http2: one stream, one
 * length-prefixed frame each way, no interceptor chain, async iterables,
 * web streams or AbortSignal per call. connect-node's client spends several
 * times the CPU per call (bench/edge-rest.ts, DESIGN.md "Facts"), and the
 * REST edge makes one unary call per request. Streaming calls — rare and
 * long — go to the fallback transport (connect-node) unchanged.
 *
 * Response headers and trailers are not surfaced (the transcoder only needs
 * the message or the error, details included).
 */
export interface GrpcUnaryTransportOptions {
  baseUrl: string;
  maxMessageBytes: number;
  /** Used for streaming calls. */
  fallback: Transport;
  /** HTTP/2 connections kept to the upstream (calls are spread over them). */
  sessions?: number;
}

type HeadersInit = NonNullable<ConstructorParameters<typeof Headers>[0]>;

const EMPTY_HEADERS = new Headers();
const CANCEL = http2.constants.NGHTTP2_CANCEL;

export function createGrpcUnaryTransport(options: GrpcUnaryTransportOptions): Transport & {
  close(): void;
} {
  const origin = new URL(options.baseUrl).origin;
  const authority = new URL(options.baseUrl).host;
  const pool: (http2.ClientHttp2Session | undefined)[] = new Array(options.sessions ?? 2);
  let next = 0;

  const session = (): http2.ClientHttp2Session => {
    const index = next;
    next = (next + 1) % pool.length;
    const current = pool[index];
    if (current && !current.closed && !current.destroyed) return current;
    const created = http2.connect(origin);
    created.on("error", () => {});
    created.on("goaway", () => created.close());
    created.once("close", () => {
      if (pool[index] === created) pool[index] = undefined;
    });
    created.unref();
    pool[index] = created;
    return created;
  };

  function unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: HeadersInit | undefined,
    input: MessageInitShape<I>,
  ): Promise<UnaryResponse<I, O>> {
    return new Promise((resolve, reject) => {
      const message = isMessage(input, method.input) ? input : create(method.input, input);
      const bytes = toBinary(method.input, message);
      const frame = Buffer.allocUnsafe(5 + bytes.length);
      frame[0] = 0;
      frame.writeUInt32BE(bytes.length, 1);
      frame.set(bytes, 5);
      const headers: http2.OutgoingHttpHeaders = {
        ":method": "POST",
        ":path": `/${method.parent.typeName}/${method.name}`,
        ":authority": authority,
        "content-type": "application/grpc+proto",
        te: "trailers",
      };
      if (header !== undefined) copyHeaders(header, headers);
      if (timeoutMs !== undefined)
        headers["grpc-timeout"] = `${Math.max(1, Math.ceil(timeoutMs))}m`;

      let stream: http2.ClientHttp2Stream;
      try {
        stream = session().request(headers, { endStream: false });
      } catch (cause) {
        reject(
          new ConnectError("upstream unavailable", Code.Unavailable, undefined, undefined, cause),
        );
        return;
      }
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const fail = (error: ConnectError) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (!stream.closed) stream.close(CANCEL);
        reject(error);
      };
      const onAbort = () => fail(new ConnectError("operation was aborted", Code.Canceled));
      if (signal) {
        if (signal.aborted) return onAbort();
        signal.addEventListener("abort", onAbort, { once: true });
      }
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () => fail(new ConnectError("the operation timed out", Code.DeadlineExceeded)),
          timeoutMs,
        );
      }
      let first: Buffer | undefined;
      let chunks: Buffer[] | undefined;
      let size = 0;
      let status: http2.IncomingHttpHeaders | undefined;
      stream.on("response", (h) => {
        // Trailers-only responses carry grpc-status in the headers.
        if (h["grpc-status"] !== undefined) status = h;
        else if (h[":status"] !== 200) {
          fail(new ConnectError(`upstream answered HTTP ${h[":status"]}`, Code.Unavailable));
        }
      });
      stream.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > options.maxMessageBytes + 5) {
          fail(new ConnectError("response message too large", Code.ResourceExhausted));
          return;
        }
        if (first === undefined) first = chunk;
        else {
          chunks ??= [first];
          chunks.push(chunk);
        }
      });
      stream.on("trailers", (t) => {
        status = t;
      });
      stream.on("error", (cause) => {
        fail(
          new ConnectError("upstream unavailable", Code.Unavailable, undefined, undefined, cause),
        );
      });
      stream.on("close", () => {
        if (settled) return;
        if (status === undefined) {
          fail(
            new ConnectError(
              `upstream closed the stream (code ${stream.rstCode})`,
              Code.Unavailable,
            ),
          );
          return;
        }
        if (status["grpc-status"] !== "0") {
          fail(trailerError(status));
          return;
        }
        const body = chunks ? Buffer.concat(chunks) : first;
        if (
          body === undefined ||
          body.length < 5 ||
          body[0] !== 0 ||
          body.readUInt32BE(1) !== body.length - 5
        ) {
          fail(
            new ConnectError("protocol error: expected one uncompressed message", Code.Internal),
          );
          return;
        }
        let output: ReturnType<typeof fromBinary<O>>;
        try {
          output = fromBinary(method.output, body.subarray(5));
        } catch (cause) {
          fail(
            new ConnectError(
              "protocol error: undecodable response",
              Code.Internal,
              undefined,
              undefined,
              cause,
            ),
          );
          return;
        }
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        resolve({
          stream: false,
          service: method.parent,
          method,
          header: EMPTY_HEADERS,
          trailer: EMPTY_HEADERS,
          message: output,
        } as UnaryResponse<I, O>);
      });
      stream.end(frame);
    });
  }

  return {
    unary,
    stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      return options.fallback.stream(method, signal, timeoutMs, header, input, contextValues);
    },
    close() {
      for (const s of pool) s?.close();
    },
  };
}

function copyHeaders(from: HeadersInit, to: http2.OutgoingHttpHeaders): void {
  if (from instanceof Headers) {
    from.forEach((value, key) => {
      to[key] = value;
    });
  } else if (Array.isArray(from)) {
    for (const [key, value] of from) to[key.toLowerCase()] = value;
  } else {
    for (const key in from) to[key.toLowerCase()] = (from as Record<string, string>)[key];
  }
}

function trailerError(h: http2.IncomingHttpHeaders): ConnectError {
  const headers = new Headers();
  for (const key in h) {
    const value = h[key];
    if (key.charCodeAt(0) !== 58 && typeof value === "string") headers.set(key, value);
  }
  return (
    findTrailerError(headers) ?? new ConnectError("upstream sent an invalid status", Code.Internal)
  );
}
