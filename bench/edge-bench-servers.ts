/**
 * The processes bench/edge-rest.ts measures, one per invocation:
 *
 *   tsx bench/edge-bench-servers.ts raw      <port>
 *   tsx bench/edge-bench-servers.ts single   <port> <redisKey>
 *   tsx bench/edge-bench-servers.ts upstream <port> <keyPrefix>
 *   tsx bench/edge-bench-servers.ts edge     <port> <upstreamUrl>
 *
 * Each prints "READY" on stdout when it listens.
 */
import http from "node:http";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { Redis } from "ioredis";
import {
  CatalogService,
  GetProductResponseSchema,
} from "../gen/commerce/catalog/v1/catalog_service_pb.js";
import { ReadinessMonitor } from "../platform/health/readiness.js";
import { createLogger } from "../platform/log/logger.js";
import { createRpcServer, registerService } from "../platform/server/rpc-server.js";
import { runService } from "../platform/service/run-service.js";
import { createMetrics } from "../platform/telemetry/metrics.js";
import { createEdgeDefinition } from "../services/edge/service.js";

const [mode, portText, arg] = process.argv.slice(2);
const port = Number(portText);
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const ready = () => process.stdout.write("READY\n");

switch (mode) {
  case "raw": {
    // The ceiling: node:http answering a constant.
    const body = '{"hello":"world"}';
    http
      .createServer((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(body);
      })
      .listen(port, "127.0.0.1", ready);
    break;
  }
  case "single": {
    // "What a user might build instead": one process, node:http + ioredis,
    // returning the cached product JSON for /v1/products/{id}.
    const redis = new Redis(REDIS_URL, { enableAutoPipelining: true });
    const key = arg!;
    http
      .createServer((req, res) => {
        const match = /^\/v1\/products\/([^/?]+)$/.exec(req.url ?? "");
        if (!match || req.method !== "GET") {
          res.writeHead(404).end();
          return;
        }
        redis.get(key).then(
          (json) => {
            if (json === null) {
              res.writeHead(404, { "content-type": "application/json" });
              res.end('{"code":5,"message":"product not found","details":[]}');
              return;
            }
            res.writeHead(200, { "content-type": "application/json" });
            res.end(json);
          },
          () => {
            res.writeHead(503).end();
          },
        );
      })
      .listen(port, "127.0.0.1", ready);
    break;
  }
  case "upstream": {
    // A catalog-shaped upstream on the platform server: GetProduct is a
    // Redis GET of the cached protobuf, decoded (the catalog's cache hit).
    const redis = new Redis(REDIS_URL, { enableAutoPipelining: true });
    const prefix = arg!;
    const readiness = new ReadinessMonitor([]);
    const server = createRpcServer({
      name: "catalog",
      host: "127.0.0.1",
      port,
      services: [
        registerService(CatalogService, {
          async getProduct(req) {
            const bytes = await redis.getBuffer(prefix + req.id);
            if (bytes === null) throw new ConnectError("product not found", Code.NotFound);
            return fromBinary(GetProductResponseSchema, bytes);
          },
        }),
      ],
      logger: createLogger({ service: "catalog", level: "warn" }),
      metrics: createMetrics("catalog"),
      readiness,
    });
    await server.listen();
    await readiness.start();
    ready();
    break;
  }
  case "edge": {
    const upstream = arg!;
    const running = await runService(
      createEdgeDefinition({ upstreams: { [CatalogService.typeName]: upstream } }),
      { env: { ...process.env, PORT: String(port) } },
    );
    await running.ready;
    ready();
    break;
  }
  default:
    process.stderr.write(`unknown mode ${mode}\n`);
    process.exit(2);
}
