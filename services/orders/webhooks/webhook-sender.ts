import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { guardedLookup, isPublicAddress, type TargetPolicy } from "./ssrf-guard.js";

export interface WebhookRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

export interface WebhookResult {
  /** HTTP status; 0 when no response arrived. */
  status: number;
  latencyUs: number;
  /** Why there was no usable response ("timeout", "connection refused", ...); "" otherwise. */
  error: string;
}

export interface SenderOptions extends TargetPolicy {
  timeoutMs: number;
  maxResponseBytes: number;
}

function describe(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case "ECONNREFUSED":
      return "connection refused";
    case "ECONNRESET":
      return "connection reset";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "host not found";
    case "CERT_HAS_EXPIRED":
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "ERR_TLS_CERT_ALTNAME_INVALID":
      return "tls error";
  }
  if (error.name === "WebhookTargetError") return "target not allowed";
  return "request failed";
}

/**
 * One POST to a partner endpoint: redirects are not followed (a 3xx is a
 * failed attempt), the whole exchange is bounded in time, at most
 * `maxResponseBytes` of the response are read, and the connection only goes
 * to addresses the SSRF policy allows.
 */
export function sendWebhook(
  request: WebhookRequest,
  options: SenderOptions,
): Promise<WebhookResult> {
  const started = performance.now();
  const elapsedUs = () => Math.round((performance.now() - started) * 1000);
  return new Promise((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (status: number, error: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ status, latencyUs: elapsedUs(), error });
    };
    const url = new URL(request.url);
    const host = url.hostname.replace(/^\[|\]$/g, "");
    // Literal addresses skip DNS (and so the guarded lookup): check them here.
    if (isIP(host) && !isPublicAddress(host) && !options.allowedHosts.includes(host)) {
      finish(0, "target not allowed");
      return;
    }
    const transport = url.protocol === "https:" ? https : http;
    const req = transport.request(url, {
      method: "POST",
      headers: {
        ...request.headers,
        "content-type": "application/json",
        "content-length": Buffer.byteLength(request.body).toString(),
        "user-agent": "commerce-mesh-webhooks/1",
      },
      lookup: guardedLookup(options),
      agent: false,
    });
    timer = setTimeout(() => {
      finish(0, "timeout");
      req.destroy();
    }, options.timeoutMs);
    req.on("error", (error) => finish(0, describe(error)));
    req.on("response", (res) => {
      const status = res.statusCode ?? 0;
      let received = 0;
      res.on("data", (chunk: Buffer) => {
        received += chunk.length;
        // The body is not needed; reading a bounded amount keeps the connection polite.
        if (received > options.maxResponseBytes) {
          finish(status, "");
          res.destroy();
        }
      });
      res.on("end", () => finish(status, ""));
      res.on("error", () => finish(status, ""));
      res.on("close", () => finish(status, ""));
    });
    req.end(request.body);
  });
}
