import { randomUUID } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { EdgeConfig } from "./edge-config.js";

/**
 * Headers every edge response carries — security headers, CORS for allowed
 * origins, the request id — and the CORS preflight answer.
 */

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Accepts a sane incoming x-request-id, else makes one; writes it back into the headers. */
export function ensureRequestId(headers: IncomingHttpHeaders): string {
  const given = headers["x-request-id"];
  if (typeof given === "string" && REQUEST_ID.test(given)) return given;
  const id = randomUUID();
  headers["x-request-id"] = id;
  return id;
}

// What Connect-Web, gRPC-Web and REST clients send (connectrpc.com/docs/cors).
const ALLOWED_HEADERS = [
  "content-type",
  "connect-protocol-version",
  "connect-timeout-ms",
  "connect-accept-encoding",
  "connect-content-encoding",
  "grpc-timeout",
  "grpc-accept-encoding",
  "grpc-encoding",
  "x-grpc-web",
  "x-user-agent",
  "authorization",
  "x-request-id",
  "last-event-id",
  "traceparent",
  "tracestate",
].join(", ");

const EXPOSED_HEADERS = [
  "grpc-status",
  "grpc-message",
  "grpc-status-details-bin",
  "grpc-encoding",
  "connect-content-encoding",
  "x-request-id",
  "ratelimit-limit",
  "ratelimit-remaining",
  "ratelimit-reset",
  "ratelimit-policy",
  "retry-after",
  "allow",
].join(", ");

const ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS";

export interface HttpPolicy {
  /** Headers for a response to this request (security + CORS + request id). */
  responseHeaders(headers: IncomingHttpHeaders): Record<string, string>;
  /** The preflight answer, or undefined when the request is not a CORS preflight. */
  preflight(
    method: string | undefined,
    headers: IncomingHttpHeaders,
  ): { status: number; headers: Record<string, string> } | undefined;
  clientAddress(remote: string | undefined, headers: IncomingHttpHeaders): string;
}

export function createHttpPolicy(config: EdgeConfig): HttpPolicy {
  const security: Record<string, string> = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    // The edge serves JSON and event streams only; nothing may run or embed it.
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cross-origin-resource-policy": config.corsOrigins.size > 0 ? "cross-origin" : "same-site",
  };
  if (config.hstsMaxAgeSeconds > 0) {
    security["strict-transport-security"] =
      `max-age=${config.hstsMaxAgeSeconds}; includeSubDomains`;
  }

  const allowedOrigin = (headers: IncomingHttpHeaders): string | undefined => {
    const origin = headers.origin;
    return typeof origin === "string" && config.corsOrigins.has(origin) ? origin : undefined;
  };

  return {
    responseHeaders(headers) {
      const out: Record<string, string> = { ...security };
      const id = headers["x-request-id"];
      if (typeof id === "string") out["x-request-id"] = id;
      if (config.corsOrigins.size > 0) {
        out.vary = "Origin";
        const origin = allowedOrigin(headers);
        if (origin) {
          out["access-control-allow-origin"] = origin;
          out["access-control-expose-headers"] = EXPOSED_HEADERS;
        }
      }
      return out;
    },
    preflight(method, headers) {
      if (method !== "OPTIONS" || headers["access-control-request-method"] === undefined) {
        return undefined;
      }
      const origin = allowedOrigin(headers);
      const out: Record<string, string> = { ...security, vary: "Origin" };
      if (!origin) return { status: 403, headers: out };
      return {
        status: 204,
        headers: {
          ...out,
          "access-control-allow-origin": origin,
          "access-control-allow-methods": ALLOWED_METHODS,
          "access-control-allow-headers": ALLOWED_HEADERS,
          "access-control-max-age": "7200",
        },
      };
    },
    clientAddress(remote, headers) {
      if (config.trustedProxyHops > 0) {
        const forwarded = headers["x-forwarded-for"];
        if (typeof forwarded === "string") {
          const hops = forwarded.split(",").map((h) => h.trim());
          const index = hops.length - config.trustedProxyHops;
          const candidate = hops[Math.max(0, index)];
          if (candidate) return candidate;
        }
      }
      return remote ?? "unknown";
    },
  };
}
