import type { IncomingMessage, ServerResponse } from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import { createMethodSerializationLookup } from "@connectrpc/connect/protocol";
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
 * Unary Connect with binary (`application/proto`) or JSON
 * (`application/json`, what Connect-Web sends) messages over HTTP/1.1,
 * outside connect-node's generic pipeline — the mesh's cheapest hop. JSON
 * goes through connect's own serialization (the same parser, options and
 * error messages connect-node uses).
 *
 * node:http answers a keep-alive POST for less CPU than a node:http2 stream
 * (bench/http1-clients.ts), and connect-node's universal handler adds more
 * than either on top (bench/rpc-overhead.ts). The edge calls its upstreams
 * with this protocol (platform/clients/connect-http1-transport.ts), so this
 * path serves exactly that shape: POST, identity encoding, a unary method.
 * Everything else — GET requests, compression, streaming — goes to
 * connect-node, and handlers and interceptors are the same on both paths.
 */

export type ConnectFastPathHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

const ERROR_HEADERS = { "content-type": "application/json" } as const;

/** What connect-node accepts for unary JSON (the charset may only be UTF-8). */
const JSON_TYPES = new Set([
  "application/json",
  "application/json; charset=utf-8",
  "application/json;charset=utf-8",
]);

interface JsonCodec {
  parse(bytes: Uint8Array): unknown;
  serialize(message: unknown): Uint8Array;
}

export function createConnectFastPath(options: UnaryFastPathOptions): ConnectFastPathHandler {
  const routes = unaryRoutes(options.services);
  // Built on a route's first JSON call: most upstream traffic is binary.
  const jsonCodecs = new Map<UnaryRoute, JsonCodec>();
  const jsonCodecOf = (route: UnaryRoute): JsonCodec => {
    let codec = jsonCodecs.get(route);
    if (codec === undefined) {
      const lookup = createMethodSerializationLookup(route.method, undefined, undefined, {
        readMaxBytes: options.readMaxBytes,
        writeMaxBytes: options.writeMaxBytes,
      });
      codec = {
        parse: (bytes) => lookup.getI(false).parse(bytes),
        serialize: (message) => lookup.getO(false).serialize(message as never),
      };
      jsonCodecs.set(route, codec);
    }
    return codec;
  };
  /** Returns false when the request is not for this path (caller falls back). */
  return function handle(req, res) {
    if (req.method !== "POST") return false;
    const headers = req.headers;
    const contentType = headers["content-type"];
    const isJson =
      contentType !== "application/proto" &&
      contentType !== undefined &&
      JSON_TYPES.has(contentType.toLowerCase());
    if (contentType !== "application/proto" && !isJson) return false;
    const version = headers["connect-protocol-version"];
    if (version !== undefined && version !== "1") return false;
    const encoding = headers["content-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    const route = routes.get(req.url ?? "");
    if (route === undefined) return false;
    serve(req, res, route, options, isJson ? jsonCodecOf(route) : undefined);
    return true;
  };
}

function writeError(res: ServerResponse, error: ConnectError): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = errorToJsonBytes(error, {});
  const headers: Record<string, string | number> = {
    ...ERROR_HEADERS,
    "content-length": body.length,
  };
  error.metadata.forEach((value, key) => {
    headers[key] = value;
  });
  res.writeHead(codeToHttpStatus(error.code), headers);
  res.end(body);
}

function serve(
  req: IncomingMessage,
  res: ServerResponse,
  route: UnaryRoute,
  options: UnaryFastPathOptions,
  json: JsonCodec | undefined,
): void {
  let finished = false;
  const fail = (error: ConnectError) => {
    if (finished) return;
    finished = true;
    writeError(res, error);
    // Drain what is left of an oversized body so the connection stays usable.
    req.resume();
  };
  const tooLarge = () =>
    new ConnectError(
      `message larger than configured limit of ${options.readMaxBytes} bytes`,
      Code.ResourceExhausted,
    );
  const declared = Number(req.headers["content-length"] ?? Number.NaN);
  if (declared > options.readMaxBytes) {
    fail(tooLarge());
    return;
  }
  const chunks: Buffer[] = [];
  let received = 0;
  req.on("data", (chunk: Buffer) => {
    if (finished) return;
    received += chunk.length;
    if (received > options.readMaxBytes) {
      fail(tooLarge());
      return;
    }
    chunks.push(chunk);
  });
  req.on("error", () => {
    finished = true;
  });
  req.on("end", () => {
    if (finished) return;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    let input: unknown;
    try {
      input = json ? json.parse(body) : decodeBinaryInput(route, body);
    } catch (cause) {
      fail(ConnectError.from(cause, Code.InvalidArgument));
      return;
    }
    void run(req, res, route, input, options, json, fail, () => {
      finished = true;
    });
  });
}

async function run(
  req: IncomingMessage,
  res: ServerResponse,
  route: UnaryRoute,
  input: unknown,
  options: UnaryFastPathOptions,
  json: JsonCodec | undefined,
  fail: (error: ConnectError) => void,
  markFinished: () => void,
): Promise<void> {
  try {
    const result = await runUnaryCall({
      route,
      path: req.url!,
      protocolName: "connect",
      requestHeader: toFetchHeaders(req.headers),
      timeoutMs: connectTimeoutMs(req.headers["connect-timeout-ms"]),
      input,
      options,
      ...(json ? { serialize: json.serialize } : {}),
      onClientGone(cancel) {
        // "close" on the response before it finished: the client hung up.
        const onClose = () => {
          if (!res.writableFinished) cancel();
        };
        res.once("close", onClose);
        return () => res.removeListener("close", onClose);
      },
      onDeadline: fail,
    });
    if (res.destroyed) return;
    markFinished();
    const headers: Record<string, string | number> = {
      "content-type": json ? "application/json" : "application/proto",
      "content-length": result.bytes.length,
    };
    result.responseHeader.forEach((value, key) => {
      headers[key] = value;
    });
    // Connect unary sends trailers as prefixed headers.
    result.responseTrailer.forEach((value, key) => {
      headers[`trailer-${key}`] = value;
    });
    res.writeHead(200, headers);
    res.end(result.bytes);
  } catch (error) {
    fail(ConnectError.from(error));
  }
}
