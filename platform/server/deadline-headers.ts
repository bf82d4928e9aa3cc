import type { IncomingHttpHeaders } from "node:http";
import { parseGrpcTimeout } from "../rpc/grpc-timeout.js";

/**
 * Every call gets a deadline: the caller's, capped at `maxMs`, or `defaultMs`
 * when it sent none. Rewriting the header before any protocol handler reads it
 * means Connect, gRPC, gRPC-Web and the fast path all see the same value.
 */
export function capDeadlineHeaders(
  headers: IncomingHttpHeaders,
  limits: { maxMs: number; defaultMs: number },
): void {
  const connect = headers["connect-timeout-ms"];
  if (typeof connect === "string") {
    const ms = Number(connect);
    if (!Number.isFinite(ms) || ms > limits.maxMs)
      headers["connect-timeout-ms"] = String(limits.maxMs);
    return;
  }
  const grpc = headers["grpc-timeout"];
  if (typeof grpc === "string") {
    const ms = parseGrpcTimeout(grpc);
    if (ms === undefined || ms > limits.maxMs) headers["grpc-timeout"] = `${limits.maxMs}m`;
    return;
  }
  const fallback = Math.min(limits.defaultMs, limits.maxMs);
  const contentType = headers["content-type"] ?? "";
  if (contentType.startsWith("application/grpc")) {
    headers["grpc-timeout"] = `${fallback}m`;
  } else if (
    headers["connect-protocol-version"] !== undefined ||
    contentType.startsWith("application/connect")
  ) {
    headers["connect-timeout-ms"] = String(fallback);
  }
}
