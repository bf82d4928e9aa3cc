/**
 * Child process for bench/rpc-overhead.ts: serves ProbeService.Echo with one
 * of the server designs under test and reports its own CPU time on request.
 */

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { EchoRequestSchema, EchoResponseSchema } from "../gen/platform/testing/v1/probe_pb.js";
import { startProbeServer } from "../platform/testing/probe-server.js";

const kind = process.argv[2];

async function start(): Promise<number> {
  if (kind === "grpc-js") {
    const server = new grpc.Server();
    server.addService(
      {
        echo: {
          path: "/platform.testing.v1.ProbeService/Echo",
          requestStream: false,
          responseStream: false,
          requestSerialize: (m: unknown) => Buffer.from(toBinary(EchoRequestSchema, m as never)),
          requestDeserialize: (b: Buffer) => fromBinary(EchoRequestSchema, b),
          responseSerialize: (m: unknown) => Buffer.from(toBinary(EchoResponseSchema, m as never)),
          responseDeserialize: (b: Buffer) => fromBinary(EchoResponseSchema, b),
        },
      },
      {
        echo: (
          call: grpc.ServerUnaryCall<{ payload: Uint8Array; text: string }, unknown>,
          cb: grpc.sendUnaryData<unknown>,
        ) => {
          const deadline = call.getDeadline();
          const remaining = deadline instanceof Date ? deadline.getTime() - Date.now() : -1;
          cb(
            null,
            create(EchoResponseSchema, {
              payload: call.request.payload,
              text: call.request.text,
              deadlineRemainingMs: BigInt(Math.round(remaining)),
            }),
          );
        },
      },
    );
    return new Promise((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) =>
        error ? reject(error) : resolve(port),
      ),
    );
  }
  const probe = await startProbeServer({
    grpcFastPath: kind !== "platform-connect-only",
    logLevel: process.env.BENCH_LOG_LEVEL ?? "info",
  });
  return probe.port;
}

const port = await start();
process.send?.({ port });
process.on("message", (message: { cmd: string }) => {
  if (message.cmd === "cpu") process.send?.({ cpu: process.cpuUsage() });
  if (message.cmd === "exit") process.exit(0);
});
