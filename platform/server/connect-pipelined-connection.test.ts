import net from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EchoRequestSchema, EchoResponseSchema } from "../../gen/platform/testing/v1/probe_pb.js";
import { startProbeServer } from "../testing/probe-server.js";

const ECHO = "/platform.testing.v1.ProbeService/Echo";

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

function echoBody(text: string, delayMs = 0): Buffer {
  return Buffer.from(toBinary(EchoRequestSchema, create(EchoRequestSchema, { text, delayMs })));
}

function binaryRequest(body: Buffer, extraHeaders: string[] = [], path = ECHO): Buffer {
  return Buffer.concat([
    Buffer.from(
      [
        `POST ${path} HTTP/1.1`,
        "host: probe",
        "content-type: application/proto",
        "connect-protocol-version: 1",
        `content-length: ${body.length}`,
        ...extraHeaders,
        "",
        "",
      ].join("\r\n"),
    ),
    body,
  ]);
}

/** A raw client connection that collects complete HTTP/1.1 answers (content-length or chunked). */
function rawConnection(port: number) {
  const socket = net.connect(port, "127.0.0.1");
  let buffered = Buffer.alloc(0);
  const answers: RawAnswer[] = [];
  const waiters: (() => void)[] = [];
  let ended = false;
  const parse = () => {
    for (;;) {
      const end = buffered.indexOf("\r\n\r\n");
      if (end < 0) return;
      const lines = buffered.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(lines[0]!.split(" ")[1]);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      let body: Buffer;
      let consumed: number;
      if (headers["transfer-encoding"] === "chunked") {
        const parts: Buffer[] = [];
        let at = end + 4;
        for (;;) {
          const lineEnd = buffered.indexOf("\r\n", at);
          if (lineEnd < 0) return;
          const size = Number.parseInt(buffered.subarray(at, lineEnd).toString(), 16);
          if (buffered.length < lineEnd + 2 + size + 2) return;
          parts.push(buffered.subarray(lineEnd + 2, lineEnd + 2 + size));
          at = lineEnd + 2 + size + 2;
          if (size === 0) break;
        }
        body = Buffer.concat(parts);
        consumed = at;
      } else {
        const length = Number(headers["content-length"] ?? 0);
        if (buffered.length < end + 4 + length) return;
        body = buffered.subarray(end + 4, end + 4 + length);
        consumed = end + 4 + length;
      }
      answers.push({ status, headers, body });
      buffered = buffered.subarray(consumed);
      for (const wake of waiters.splice(0)) wake();
    }
  };
  socket.on("data", (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    parse();
  });
  socket.on("end", () => {
    ended = true;
    for (const wake of waiters.splice(0)) wake();
  });
  socket.on("error", () => {});
  return {
    socket,
    answers,
    get ended() {
      return ended;
    },
    async until(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error("timed out waiting for answers");
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 20);
        });
      }
    },
  };
}

const echoText = (answer: RawAnswer) => fromBinary(EchoResponseSchema, answer.body).text;

describe("pipelined Connect connections (unary binary Connect served off the socket)", () => {
  let probe: Awaited<ReturnType<typeof startProbeServer>>;

  beforeAll(async () => {
    probe = await startProbeServer({
      limits: { maxMessageBytes: 64 * 1024, maxDeadlineMs: 5_000 },
    });
  });
  afterAll(async () => {
    await probe.server.close();
  });

  it("answers requests pipelined in one write in request order, each with its own answer", async () => {
    const c = rawConnection(probe.port);
    // The first finishes last: answers must still leave in request order.
    c.socket.write(
      Buffer.concat([
        binaryRequest(echoBody("first", 80)),
        binaryRequest(echoBody("second")),
        binaryRequest(echoBody("third", 20)),
      ]),
    );
    await c.until(() => c.answers.length === 3);
    expect(c.answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(c.answers.map(echoText)).toEqual(["first", "second", "third"]);
    for (const answer of c.answers) {
      expect(answer.headers["content-type"]).toBe("application/proto");
      expect(answer.headers.date).toMatch(/GMT$/);
      // Served off the socket: node:http would have announced `connection: keep-alive`.
      expect(answer.headers.connection).toBeUndefined();
    }
    // The server's default deadline reached the handler.
    const seen = fromBinary(EchoResponseSchema, c.answers[1]!.body).deadlineRemainingMs;
    expect(seen).toBeGreaterThan(0n);
    c.socket.destroy();
  });

  it("reads requests split across many writes", async () => {
    const c = rawConnection(probe.port);
    const small = binaryRequest(echoBody("x".repeat(3000)));
    const large = binaryRequest(echoBody("y".repeat(40_000)));
    for (const [request, step] of [
      [small, 97],
      [large, 1024],
    ] as const) {
      for (let at = 0; at < request.length; at += step) {
        c.socket.write(request.subarray(at, at + step));
        await new Promise((r) => setImmediate(r));
      }
    }
    await c.until(() => c.answers.length === 2);
    expect(c.answers.map(echoText)).toEqual(["x".repeat(3000), "y".repeat(40_000)]);
    c.socket.destroy();
  });

  it("hands the connection to node:http at the first request of another kind, after answering the earlier ones", async () => {
    const c = rawConnection(probe.port);
    const json = JSON.stringify({ text: "json" });
    c.socket.write(
      Buffer.concat([
        binaryRequest(echoBody("binary", 40)),
        Buffer.from(
          `POST ${ECHO} HTTP/1.1\r\nhost: probe\r\ncontent-type: application/json\r\ncontent-length: ${json.length}\r\n\r\n${json}`,
        ),
        Buffer.from("GET /healthz HTTP/1.1\r\nhost: probe\r\n\r\n"),
        binaryRequest(echoBody("after")),
      ]),
    );
    await c.until(() => c.answers.length === 4);
    expect(echoText(c.answers[0]!)).toBe("binary");
    expect(c.answers[0]!.headers.connection).toBeUndefined();
    expect(c.answers.slice(1).map((a) => a.headers.connection)).toEqual([
      "keep-alive",
      "keep-alive",
      "keep-alive",
    ]);
    expect(JSON.parse(c.answers[1]!.body.toString())).toMatchObject({ text: "json" });
    expect(JSON.parse(c.answers[2]!.body.toString())).toEqual({ status: "ok" });
    // node:http owns the connection now; its Connect fast path answers binary calls.
    expect(echoText(c.answers[3]!)).toBe("after");
    c.socket.destroy();
  });

  it("leaves connections that start with anything else to node:http", async () => {
    const c = rawConnection(probe.port);
    c.socket.write(
      Buffer.concat([
        Buffer.from("GET /healthz HTTP/1.1\r\nhost: probe\r\n\r\n"),
        binaryRequest(echoBody("later")),
      ]),
    );
    await c.until(() => c.answers.length === 2);
    expect(c.answers[0]!.status).toBe(200);
    expect(echoText(c.answers[1]!)).toBe("later");
    c.socket.destroy();
  });

  it("gives ambiguous framing to node's parser: chunked bodies are read, duplicate lengths refused", async () => {
    const chunked = rawConnection(probe.port);
    const body = echoBody("chunked");
    chunked.socket.write(
      Buffer.concat([
        binaryRequest(echoBody("plain")),
        Buffer.from(
          `POST ${ECHO} HTTP/1.1\r\nhost: probe\r\ncontent-type: application/proto\r\ntransfer-encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n`,
        ),
        body,
        Buffer.from("\r\n0\r\n\r\n"),
      ]),
    );
    await chunked.until(() => chunked.answers.length === 2);
    expect(chunked.answers.map(echoText)).toEqual(["plain", "chunked"]);
    chunked.socket.destroy();

    const duplicate = rawConnection(probe.port);
    duplicate.socket.write(
      Buffer.concat([
        binaryRequest(echoBody("plain")),
        binaryRequest(echoBody("twice"), [`content-length: ${echoBody("twice").length}`]),
      ]),
    );
    await duplicate.until(() => duplicate.answers.length === 2 || duplicate.ended);
    expect(echoText(duplicate.answers[0]!)).toBe("plain");
    // node:http refuses a request with two content-length fields.
    if (duplicate.answers.length === 2) expect(duplicate.answers[1]!.status).toBe(400);
    await duplicate.until(() => duplicate.ended);
    duplicate.socket.destroy();

    // HTTP/1.1 without Host: node:http's 400, as on any other connection.
    const hostless = rawConnection(probe.port);
    const body2 = echoBody("no host");
    hostless.socket.write(
      Buffer.concat([
        Buffer.from(
          `POST ${ECHO} HTTP/1.1\r\ncontent-type: application/proto\r\ncontent-length: ${body2.length}\r\n\r\n`,
        ),
        body2,
      ]),
    );
    await hostless.until(() => hostless.answers.length === 1 || hostless.ended);
    expect(hostless.answers[0]?.status).toBe(400);
    hostless.socket.destroy();

    // A head ended with bare LFs does not wait for more bytes: node:http answers it.
    const bareLf = rawConnection(probe.port);
    bareLf.socket.write(
      Buffer.concat([
        binaryRequest(echoBody("plain")),
        Buffer.from("GET /healthz HTTP/1.1\nhost: probe\n\n"),
      ]),
    );
    await bareLf.until(() => bareLf.answers.length === 2 || bareLf.ended);
    expect(echoText(bareLf.answers[0]!)).toBe("plain");
    expect(bareLf.answers.length === 2 || bareLf.ended).toBe(true);
    bareLf.socket.destroy();
  });

  it("answers a malformed body with invalid_argument and an oversized one with resource_exhausted, in order", async () => {
    const c = rawConnection(probe.port);
    const oversized = Buffer.alloc(70 * 1024);
    c.socket.write(
      Buffer.concat([
        binaryRequest(Buffer.from([0xff])),
        binaryRequest(echoBody("fine")),
        binaryRequest(oversized),
      ]),
    );
    await c.until(() => c.answers.length === 3);
    expect(c.answers[0]!.status).toBe(400);
    expect(JSON.parse(c.answers[0]!.body.toString()).code).toBe("invalid_argument");
    expect(echoText(c.answers[1]!)).toBe("fine");
    expect(JSON.parse(c.answers[2]!.body.toString()).code).toBe("resource_exhausted");
    c.socket.destroy();
  });

  it("answers deadline_exceeded at the caller's deadline and keeps serving the connection", async () => {
    const c = rawConnection(probe.port);
    c.socket.write(
      Buffer.concat([
        binaryRequest(echoBody("slow", 2_000), ["connect-timeout-ms: 50"]),
        binaryRequest(echoBody("next")),
      ]),
    );
    const started = Date.now();
    await c.until(() => c.answers.length === 2);
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(c.answers[0]!.status).toBe(504);
    expect(JSON.parse(c.answers[0]!.body.toString()).code).toBe("deadline_exceeded");
    expect(echoText(c.answers[1]!)).toBe("next");
    c.socket.destroy();
  });

  it("cancels running handlers when the client goes away", async () => {
    const canceled = async () => {
      const text = await probe.metrics.registry.getSingleMetricAsString(
        "rpc_server_requests_total",
      );
      const line = text
        .split("\n")
        .find((l) => l.includes('rpc_method="Echo"') && l.includes('rpc_grpc_status_code="1"'));
      return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
    };
    const before = await canceled();
    const c = rawConnection(probe.port);
    c.socket.write(binaryRequest(echoBody("abandoned", 3_000)));
    await new Promise((r) => setTimeout(r, 50));
    expect(probe.server.inFlight).toBe(1);
    c.socket.destroy();
    const deadline = Date.now() + 1_000;
    while ((await canceled()) === before && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await canceled()).toBe(before + 1);
    expect(probe.server.inFlight).toBe(0);
  });
});

describe("pipelined Connect connections at shutdown", () => {
  it("finishes the answers in flight, then closes the connection", async () => {
    const probe = await startProbeServer();
    const c = rawConnection(probe.port);
    c.socket.write(binaryRequest(echoBody("in flight", 150)));
    await new Promise((r) => setTimeout(r, 30));
    const closing = probe.server.close();
    await c.until(() => c.answers.length === 1 && c.ended);
    expect(echoText(c.answers[0]!)).toBe("in flight");
    await closing;
  });
});
