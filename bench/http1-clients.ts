/**
 * Cost of one unary hop by client library (run: `npx tsx bench/http1-clients.ts`;
 * not a test). Why the edge calls its upstreams through
 * platform/clients/connect-http1-transport.ts instead of a library client.
 *
 * A child process serves a constant 200-byte answer over node:http (keep-alive)
 * and node:http2; this process drives 50 calls in flight with each client and
 * prints calls/s and CPU µs per call on both sides (CPU from process.cpuUsage
 * and /proc, so other load on the machine counts less than in req/s).
 *
 *   npx tsx bench/http1-clients.ts [--calls 30000]
 */
import { fork } from "node:child_process";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Pool } from "undici";
import { EchoResponseSchema, ProbeService } from "../gen/platform/testing/v1/probe_pb.js";
import { createConnectHttp1Transport } from "../platform/clients/connect-http1-transport.js";
import { procCpuMicros } from "./proc-cpu.js";

const IN_FLIGHT = 50;
const answer = Buffer.from(
  toBinary(EchoResponseSchema, create(EchoResponseSchema, { text: "x".repeat(196) })),
);

if (process.argv[2] === "serve") {
  const h1 = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/proto", "content-length": answer.length });
      res.end(answer);
    });
  });
  h1.keepAliveTimeout = 65_000;
  const h2 = http2.createServer();
  h2.on("stream", (stream) => {
    stream.resume();
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/proto" });
      stream.end(answer);
    });
  });
  h1.listen(0, "127.0.0.1", () =>
    h2.listen(0, "127.0.0.1", () =>
      process.send?.({
        h1: (h1.address() as AddressInfo).port,
        h2: (h2.address() as AddressInfo).port,
      }),
    ),
  );
} else {
  const { values } = parseArgs({ options: { calls: { type: "string", default: "30000" } } });
  const CALLS = Number(values.calls);
  const child = fork(new URL(import.meta.url).pathname, ["serve"], {
    execArgv: ["--import", "tsx"],
  });
  const ports = await new Promise<{ h1: number; h2: number }>((resolve) =>
    child.once("message", (m) => resolve(m as { h1: number; h2: number })),
  );
  const serverCpuMicros = () => procCpuMicros(child.pid!);
  const body = Buffer.alloc(40, 7);
  const h1Url = `http://127.0.0.1:${ports.h1}`;

  const measure = async (label: string, call: () => Promise<unknown>) => {
    for (let i = 0; i < 3_000; i++) await call();
    const cpu = process.cpuUsage();
    const server = serverCpuMicros();
    const started = performance.now();
    let issued = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (issued++ < CALLS) await call();
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    console.log(
      `${label.padEnd(40)} ${(CALLS / seconds).toFixed(0).padStart(7)} calls/s   client ${((used.user + used.system) / CALLS).toFixed(0).padStart(4)} µs/call   server ${((serverCpuMicros() - server) / CALLS).toFixed(0).padStart(4)} µs/call`,
    );
  };

  const pool = new Pool(h1Url, { connections: 8, pipelining: 8 });
  await measure("undici Pool (8 connections × 8 pipelined)", async () => {
    const res = await pool.request({
      path: "/platform.testing.v1.ProbeService/Echo",
      method: "POST",
      headers: { "content-type": "application/proto", "connect-protocol-version": "1" },
      body,
    });
    await res.body.arrayBuffer();
  });
  await pool.close();

  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  await measure("node:http Agent (16 sockets)", () => {
    return new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: ports.h1,
          path: "/platform.testing.v1.ProbeService/Echo",
          method: "POST",
          agent,
          headers: { "content-type": "application/proto", "content-length": body.length },
        },
        (res) => {
          res.resume();
          res.on("end", resolve);
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  });
  agent.destroy();

  const sessions = [0, 1].map(() => http2.connect(`http://127.0.0.1:${ports.h2}`));
  let turn = 0;
  await measure("node:http2, one stream per call (2 sessions)", () => {
    return new Promise<void>((resolve, reject) => {
      const stream = sessions[turn++ % 2]!.request({
        ":method": "POST",
        ":path": "/platform.testing.v1.ProbeService/Echo",
        "content-type": "application/proto",
      });
      stream.resume();
      stream.on("close", resolve);
      stream.on("error", reject);
      stream.end(body);
    });
  });
  for (const session of sessions) session.close();

  const transport = createConnectHttp1Transport({
    baseUrl: h1Url,
    maxMessageBytes: 1024 * 1024,
    fallback: createConnectTransport({ baseUrl: h1Url, httpVersion: "1.1" }),
  });
  await measure("connect-http1-transport (8 × 8 pipelined)", () =>
    transport.unary(ProbeService.method.echo, undefined, 5_000, undefined, { text: "x" }),
  );
  transport.close();
  child.kill();
}
