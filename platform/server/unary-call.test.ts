import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { EchoRequestSchema, RelayRequestSchema } from "../../gen/platform/testing/v1/probe_pb.js";
import { singleMessageFieldEncoding, toFetchHeaders } from "./unary-call.js";

describe("toFetchHeaders", () => {
  it("reads node's header object as fetch Headers, without pseudo-headers", () => {
    const headers = toFetchHeaders({
      ":path": "/x",
      "content-type": "application/proto",
      "x-request-id": "r-1",
      "x-multi": ["a", "b"],
      absent: undefined,
    });
    expect(headers).toBeInstanceOf(Headers);
    expect(headers.get("Content-Type")).toBe("application/proto");
    expect(headers.get("x-multi")).toBe("a, b");
    expect(headers.get(":path")).toBeNull();
    expect(headers.has(":path")).toBe(false);
    expect(headers.has("absent")).toBe(false);
    expect(headers.get("missing")).toBeNull();
    expect([...headers]).toEqual([
      ["content-type", "application/proto"],
      ["x-multi", "a, b"],
      ["x-request-id", "r-1"],
    ]);
    // Copies (new Headers, a fetch Response) see every header without a prior write.
    expect(new Headers(toFetchHeaders({ a: "1", b: "2" })).get("b")).toBe("2");
    expect(new Response(null, { headers: toFetchHeaders({ a: "1" }) }).headers.get("a")).toBe("1");
  });

  it("takes writes after reads and keeps every header", () => {
    const raw = { authorization: "Bearer t", "x-request-id": "r-1" };
    const headers = toFetchHeaders(raw);
    expect(headers.get("authorization")).toBe("Bearer t");
    headers.set("x-caller", "user-1");
    headers.delete("authorization");
    headers.append("x-request-id", "r-2");
    expect(headers.get("x-caller")).toBe("user-1");
    expect(headers.has("authorization")).toBe(false);
    expect(headers.get("x-request-id")).toBe("r-1, r-2");
    const seen: string[] = [];
    headers.forEach((value, key) => {
      seen.push(`${key}=${value}`);
    });
    expect(seen).toEqual(["x-caller=user-1", "x-request-id=r-1, r-2"]);
    // node's object is never written to.
    expect(raw).toEqual({ authorization: "Bearer t", "x-request-id": "r-1" });
    const copy = new Headers(headers);
    expect(copy.get("x-caller")).toBe("user-1");
  });
});

describe("singleMessageFieldEncoding", () => {
  it("encodes a message holding only that message field, as toBinary does", () => {
    const echo = create(EchoRequestSchema, { text: "cached", delayMs: 3 });
    const relay = create(RelayRequestSchema, { echo });
    const bytes = singleMessageFieldEncoding(
      RelayRequestSchema.field.echo.number,
      toBinary(EchoRequestSchema, echo),
    );
    expect(Buffer.from(bytes)).toEqual(Buffer.from(toBinary(RelayRequestSchema, relay)));
    expect(fromBinary(RelayRequestSchema, bytes).echo?.text).toBe("cached");
  });
});
