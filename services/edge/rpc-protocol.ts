import type { ConnectError } from "@connectrpc/connect";
import {
  codeToHttpStatus,
  endStreamFlag,
  endStreamToJson,
  errorToJson,
} from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";

/** The RPC protocol of a request, from its content type (and Connect GET). */
export type RpcProtocol = "grpc" | "grpc-web" | "connect-unary" | "connect-stream";

export function rpcProtocolOf(
  method: string | undefined,
  contentType: string | undefined,
): RpcProtocol | undefined {
  if (method === "GET") return "connect-unary";
  if (contentType === undefined) return undefined;
  if (contentType.startsWith("application/grpc-web")) return "grpc-web";
  if (contentType.startsWith("application/grpc")) return "grpc";
  if (contentType.startsWith("application/connect+")) return "connect-stream";
  if (contentType.startsWith("application/json") || contentType.startsWith("application/proto")) {
    return "connect-unary";
  }
  return undefined;
}

export interface ProtocolErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array | undefined;
}

/**
 * An error the edge raises itself on an RPC path (auth, rate limit, limits,
 * upstream unreachable), written the way the client's protocol expects:
 * gRPC and gRPC-Web as a trailers-only response (HTTP 200 + grpc-status),
 * Connect unary as HTTP status + JSON error, Connect streaming as HTTP 200 +
 * an end-of-stream envelope.
 */
export function protocolError(
  protocol: RpcProtocol,
  error: ConnectError,
  requestContentType: string | undefined,
): ProtocolErrorResponse {
  switch (protocol) {
    case "grpc":
    case "grpc-web": {
      const headers: Record<string, string> = {
        "content-type":
          protocol === "grpc"
            ? "application/grpc"
            : (requestContentType ?? "application/grpc-web+proto"),
      };
      setTrailerStatus(new Headers(), error).forEach((value, key) => {
        headers[key] = value;
      });
      return { status: 200, headers, body: undefined };
    }
    case "connect-unary": {
      const body = new TextEncoder().encode(JSON.stringify(errorToJson(error, undefined)));
      return {
        status: codeToHttpStatus(error.code),
        headers: { "content-type": "application/json" },
        body,
      };
    }
    case "connect-stream": {
      const json = new TextEncoder().encode(
        JSON.stringify(endStreamToJson(new Headers(), error, undefined)),
      );
      const body = new Uint8Array(5 + json.length);
      body[0] = endStreamFlag;
      new DataView(body.buffer).setUint32(1, json.length);
      body.set(json, 5);
      return {
        status: 200,
        headers: { "content-type": requestContentType ?? "application/connect+json" },
        body,
      };
    }
  }
}
