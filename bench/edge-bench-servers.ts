/**
 * The baseline processes bench/edge-rest.ts measures, one per invocation (the
 * edge and the catalog run from their own entry points, services/<name>/main):
 *
 *   tsx bench/edge-bench-servers.ts raw      <port>
 *   tsx bench/edge-bench-servers.ts fastify  <port> <jsonKeyPrefix>
 *   tsx bench/edge-bench-servers.ts node     <port> <jsonKeyPrefix>
 *
 * Each prints "READY" on stdout when it listens.
 */
import http from "node:http";
import Fastify from "fastify";
import { Redis } from "ioredis";

const [mode, portText, arg] = process.argv.slice(2);
const port = Number(portText);
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const ready = () => process.stdout.write("READY\n");
const NOT_FOUND = '{"code":5,"message":"product not found","details":[]}';

// The single-process baselines get ioredis at its best (auto-pipelining), so
// the edge is compared with the fastest thing a user would reasonably write.
const redisClient = () => new Redis(REDIS_URL, { enableAutoPipelining: true });

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
  case "fastify": {
    // "What a user might build instead" (the baseline): one fastify
    // process answering GET /v1/products/:id with the product JSON cached in Redis.
    const redis = redisClient();
    const prefix = arg!;
    const app = Fastify({ logger: false });
    app.get<{ Params: { id: string } }>("/v1/products/:id", async (req, reply) => {
      const json = await redis.get(prefix + req.params.id);
      reply.type("application/json");
      if (json === null) {
        reply.code(404);
        return NOT_FOUND;
      }
      // A string with a content type is sent as is (no re-serialisation).
      return json;
    });
    await app.listen({ port, host: "127.0.0.1" });
    ready();
    break;
  }
  case "node": {
    // The same handler on bare node:http (reference: what fastify itself costs).
    const redis = redisClient();
    const prefix = arg!;
    http
      .createServer((req, res) => {
        const match = /^\/v1\/products\/([^/?]+)$/.exec(req.url ?? "");
        if (!match || req.method !== "GET") {
          res.writeHead(404).end();
          return;
        }
        redis.get(prefix + match[1]!).then(
          (json) => {
            res.writeHead(json === null ? 404 : 200, { "content-type": "application/json" });
            res.end(json ?? NOT_FOUND);
          },
          () => {
            res.writeHead(503).end();
          },
        );
      })
      .listen(port, "127.0.0.1", ready);
    break;
  }
  default:
    process.stderr.write(`unknown mode ${mode}\n`);
    process.exit(2);
}
