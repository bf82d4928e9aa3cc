import {
  create,
  type DescMessage,
  type DescMethod,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";

/**
 * A stock @grpc/grpc-js client driven by protobuf-es serializers: what an
 * external team with no Connect dependency would use. Tests and benchmarks.
 */
export function createGrpcJsClient(address: string, options: grpc.ClientOptions = {}): grpc.Client {
  return new grpc.Client(address, grpc.credentials.createInsecure(), options);
}

export function grpcUnary<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethod & { input: I; output: O },
  request: MessageInitShape<I>,
  options: { deadlineMs?: number; metadata?: grpc.Metadata } = {},
): Promise<{ response: MessageShape<O>; trailers: grpc.Metadata | undefined }> {
  const path = `/${method.parent.typeName}/${method.name}`;
  return new Promise((resolve, reject) => {
    let trailers: grpc.Metadata | undefined;
    const call = client.makeUnaryRequest(
      path,
      (m: MessageShape<I>) => Buffer.from(toBinary(method.input, m)),
      (b: Buffer) => fromBinary(method.output, b),
      create(method.input, request),
      options.metadata ?? new grpc.Metadata(),
      options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs },
      (error, response) => {
        if (error) reject(error);
        else resolve({ response: response!, trailers });
      },
    );
    call.on("status", (status) => {
      trailers = status.metadata;
    });
  });
}

export function grpcServerStream<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethod & { input: I; output: O },
  request: MessageInitShape<I>,
): Promise<MessageShape<O>[]> {
  const path = `/${method.parent.typeName}/${method.name}`;
  return new Promise((resolve, reject) => {
    const out: MessageShape<O>[] = [];
    const call = client.makeServerStreamRequest(
      path,
      (m: MessageShape<I>) => Buffer.from(toBinary(method.input, m)),
      (b: Buffer) => fromBinary(method.output, b),
      create(method.input, request),
    );
    call.on("data", (m: MessageShape<O>) => out.push(m));
    call.on("error", reject);
    call.on("end", () => resolve(out));
  });
}

export function grpcBidi<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethod & { input: I; output: O },
  requests: MessageInitShape<I>[],
): Promise<MessageShape<O>[]> {
  const path = `/${method.parent.typeName}/${method.name}`;
  return new Promise((resolve, reject) => {
    const out: MessageShape<O>[] = [];
    const call = client.makeBidiStreamRequest(
      path,
      (m: MessageShape<I>) => Buffer.from(toBinary(method.input, m)),
      (b: Buffer) => fromBinary(method.output, b),
    );
    call.on("data", (m: MessageShape<O>) => {
      out.push(m);
      if (out.length === requests.length) call.end();
    });
    call.on("error", reject);
    call.on("end", () => resolve(out));
    for (const r of requests) call.write(create(method.input, r));
  });
}
