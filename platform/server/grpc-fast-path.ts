import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { parseGrpcTimeout } from "../rpc/grpc-timeout.js";
import {
  decodeBinaryInput,
  runUnaryCall,
  toFetchHeaders,
  type UnaryFastPathOptions,
  type UnaryRoute,
  unaryRoutes,
} from "./unary-call.js";

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

export type FastPathHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => boolean;

export function createGrpcFastPath(options: UnaryFastPathOptions): FastPathHandler {
  const routes = unaryRoutes(options.services);

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
  route: UnaryRoute,
  path: string,
  options: UnaryFastPathOptions,
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
      input = decodeBinaryInput(route, body.subarray(5));
    } catch (error) {
      fail(error as ConnectError);
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
  route: UnaryRoute,
  path: string,
  input: unknown,
  options: UnaryFastPathOptions,
  fail: (error: ConnectError) => void,
  markFinished: () => void,
): Promise<void> {
  try {
    const result = await runUnaryCall({
      route,
      path,
      protocolName: "grpc",
      requestHeader: toFetchHeaders(headers),
      timeoutMs: parseGrpcTimeout(headers["grpc-timeout"]),
      input,
      options,
      onClientGone(cancel) {
        stream.once("aborted", cancel);
        return () => stream.removeListener("aborted", cancel);
      },
      onDeadline: fail,
    });
    if (stream.destroyed || stream.closed) return;
    markFinished();
    const responseHeaders: Record<string, string | number> = {
      ":status": 200,
      "content-type": "application/grpc+proto",
    };
    result.responseHeader.forEach((value, key) => {
      responseHeaders[key] = value;
    });
    const trailers: Record<string, string> = { "grpc-status": "0" };
    result.responseTrailer.forEach((value, key) => {
      trailers[key] = value;
    });
    stream.respond(responseHeaders, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers(trailers));
    const frame = Buffer.allocUnsafe(5 + result.bytes.length);
    frame[0] = 0;
    frame.writeUInt32BE(result.bytes.length, 1);
    frame.set(result.bytes, 5);
    stream.end(frame);
  } catch (error) {
    fail(ConnectError.from(error));
  }
}
