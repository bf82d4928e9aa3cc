import { readFileSync } from "node:fs";
import type { DescService } from "@bufbuild/protobuf";
import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { loadAuthConfig } from "../../platform/auth/auth-config.js";
import { createMeshTokenVerifier } from "../../platform/auth/mesh-verifier.js";
import type { TokenVerifier } from "../../platform/auth/token-verifier.js";
import { createConnectHttp1Transport } from "../../platform/clients/connect-http1-transport.js";
import type { Env } from "../../platform/config/env.js";
import type { ServiceDefinition } from "../../platform/service/run-service.js";
import { createEdge } from "./edge.js";
import { loadEdgeConfig } from "./edge-config.js";
import { MESH_SERVICES, ownerOf } from "./mesh-services.js";

export interface EdgeOptions {
  /** Edge and auth settings (default: process.env). */
  env?: Env;
  /** Contracts to expose (default: every mesh service). */
  services?: readonly DescService[];
  /** Base URL per service type name, overriding the owner's configured URL. */
  upstreams?: Record<string, string>;
  tokenVerifier?: TokenVerifier;
}

/**
 * Doc comments of the contracts, extracted at build time (`npm run
 * edge:comments`): the descriptors in gen/ carry none.
 */
function loadComments(): Record<string, string> {
  try {
    return JSON.parse(readFileSync(new URL("./api-comments.json", import.meta.url), "utf8"));
  } catch {
    return {};
  }
}

export function createEdgeDefinition(options: EdgeOptions = {}): ServiceDefinition {
  return {
    name: "edge",
    build(runtime) {
      const env = options.env ?? process.env;
      const config = loadEdgeConfig(env);
      const { limits } = runtime.config;
      const verifier =
        options.tokenVerifier ??
        createMeshTokenVerifier(loadAuthConfig(env), () => runtime.upstream("identity"));
      // Redis is optional for the edge (rate limits fall back to a local
      // limiter), so it is not a declared dependency: the edge is ready and
      // serving while Redis is down.
      const redis = new Redis(runtime.config.redisUrl, {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        connectTimeout: 2000,
        enableAutoPipelining: true,
        // A Redis that hangs must not hang requests: the limiter falls back.
        commandTimeout: 250,
      });
      redis.on("error", (error) => runtime.logger.debug({ err: error }, "redis error"));
      const upstreamUrl = (service: DescService) =>
        options.upstreams?.[service.typeName] ?? runtime.config.upstreams[ownerOf(service)];
      const transports = new Map<string, Transport>();
      const transportFor = (service: DescService) => {
        const baseUrl = upstreamUrl(service);
        let transport = transports.get(baseUrl);
        if (!transport) {
          // REST makes one unary call per request: Connect over pooled
          // HTTP/1.1 is the cheapest hop measured (see the transport's note).
          transport = createConnectHttp1Transport({
            baseUrl,
            maxMessageBytes: limits.maxMessageBytes,
            connections: config.upstreamConnections,
            maxPipeline: config.upstreamPipeline,
            fallback: createGrpcTransport({
              baseUrl,
              readMaxBytes: limits.maxMessageBytes,
              writeMaxBytes: limits.maxMessageBytes,
            }),
          });
          transports.set(baseUrl, transport);
        }
        return transport;
      };
      const edge = createEdge({
        services: options.services ?? MESH_SERVICES,
        upstreamUrl,
        transportFor,
        verifier,
        redis,
        config,
        limits: {
          defaultDeadlineMs: limits.defaultDeadlineMs,
          maxDeadlineMs: limits.maxDeadlineMs,
          maxMessageBytes: limits.maxMessageBytes,
        },
        logger: runtime.logger,
        registry: runtime.metrics.registry,
        comments: loadComments(),
      });
      return {
        services: [],
        tokenVerifier: verifier,
        http: {
          httpHandler: edge.httpHandler,
          streamHandler: edge.streamHandler,
          upgradeHandler: edge.upgradeHandler,
        },
        background: [
          {
            name: "edge",
            start() {},
            stop() {
              edge.close();
              redis.disconnect();
            },
          },
        ],
      };
    },
  };
}
