// biome-ignore-all lint/suspicious/noExplicitAny: tests probe JSON bodies structurally
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { TranscodeFixtureService } from "../../gen/platform/testing/v1/transcode_fixture_pb.js";
import { BindingError, compileBindings } from "./bindings.js";
import { parsePathTemplate } from "./path-template.js";
import { RouteConflictError, RouteMatcher } from "./route-matcher.js";
import { httpStatusFromCode } from "./status.js";
import { createFixtureService } from "./testing/fixture-service.js";
import { parseSse, rawRequest } from "./testing/raw-http.js";
import { createTranscoder, requestTimeout, type Transcoder } from "./transcoder.js";

let server: http.Server;
let port: number;
let transcoder: Transcoder;
const errorsSeen: ConnectError[] = [];

beforeAll(async () => {
  const transport = createRouterTransport(({ service }) => {
    service(TranscodeFixtureService, createFixtureService());
  });
  transcoder = createTranscoder({
    services: [TranscodeFixtureService],
    transport,
    limits: { maxBodyBytes: 64 * 1024, maxJsonDepth: 16, streamFirstMessageWaitMs: 200 },
    hooks: {
      beforeCall(call) {
        call.responseHeaders["x-hook"] = call.binding.method.name;
        if (call.request.headers["x-deny"] === "yes") {
          throw new ConnectError("token missing", Code.Unauthenticated);
        }
        call.upstreamHeaders["x-verified-caller"] = "user-1";
      },
      onError: (error) => errorsSeen.push(error),
    },
  });
  server = http.createServer((req, res) => void transcoder.handle(req, res));
  server.on("upgrade", (req, socket, head) => transcoder.handleUpgrade(req, socket, head));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  transcoder.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const get = (path: string, headers?: Record<string, string>) =>
  rawRequest(port, { path, ...(headers ? { headers } : {}) });
const send = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
  rawRequest(port, {
    method,
    path,
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    ...(headers ? { headers } : {}),
  });

function expectStatusBody(json: any, code: Code) {
  expect(json).toMatchObject({ code });
  expect(typeof json.message).toBe("string");
  expect(Array.isArray(json.details)).toBe(true);
}

function violation(json: any): { field: string; description: string } | undefined {
  const detail = json.details.find(
    (d: any) => d["@type"] === "type.googleapis.com/google.rpc.BadRequest",
  );
  return detail?.fieldViolations?.[0];
}

describe("path templates and routing", () => {
  it("binds a single-segment variable and answers proto3 JSON with implicit fields", async () => {
    const r = await get("/v1/items/abc");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("application/json");
    expect(r.json.echo).toEqual({ id: "abc" });
    expect(r.json.item).toMatchObject({
      id: "abc",
      displayName: "Item abc",
      count: "5",
      color: "COLOR_RED",
      tags: [],
      price: 0,
      active: false,
      labels: {},
    });
    expect(r.headers["x-hook"]).toBe("GetItem");
  });

  it("prefers a literal segment over a variable declared earlier", async () => {
    const r = await get("/v1/items/special");
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ kind: "special" });
  });

  it("routes by method first: DELETE on the literal path reaches the variable route", async () => {
    const r = await send("DELETE", "/v1/items/special?force=true");
    expect(r.status).toBe(200);
    expect(r.json.echo).toEqual({ id: "special", force: true });
  });

  it("answers 405 with Allow for a known path and a wrong method", async () => {
    const r = await send("POST", "/v1/items/abc", {});
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe("DELETE, GET, LOCK, PATCH, PUT");
    expectStatusBody(r.json, Code.Unimplemented);
  });

  it("answers 404 with a Status body for an unknown route", async () => {
    const r = await get("/v1/nothing/here");
    expect(r.status).toBe(404);
    expectStatusBody(r.json, Code.NotFound);
  });

  it("treats a trailing slash as a different path", async () => {
    expect((await get("/v1/items/abc/")).status).toBe(404);
    expect((await get("/v1/items/")).status).toBe(404);
  });

  it("serves a custom HTTP method (LOCK)", async () => {
    const r = await send("LOCK", "/v1/items/l1");
    expect(r.status).toBe(200);
    expect(r.json.echo).toEqual({ id: "l1" });
  });

  it("serves a :verb custom method and gives its path 405 for other methods", async () => {
    const ok = await send("POST", "/v1/items/a1:archive", { reason: "old" });
    expect(ok.status).toBe(200);
    expect(ok.json.echo).toEqual({ id: "a1", reason: "old" });
    const wrong = await get("/v1/items/a1:archive");
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe("POST");
  });

  it("keeps a colon in data when no verb route matches", async () => {
    const r = await get("/v1/items/urn:thing");
    expect(r.status).toBe(200);
    expect(r.json.echo.id).toBe("urn:thing");
  });

  it("binds a variable with a multi-segment pattern", async () => {
    const r = await get("/v1/shelves/s1/books/b2");
    expect(r.status).toBe(200);
    expect(r.json.echo).toEqual({ name: "shelves/s1/books/b2" });
    expect((await get("/v1/shelves/s1/books")).status).toBe(404);
  });

  it("binds ** to the rest of the path", async () => {
    const r = await get("/v1/files/a/b/c.txt");
    expect(r.json.echo).toEqual({ path: "a/b/c.txt" });
    const empty = await get("/v1/files");
    expect(empty.status).toBe(200);
    expect(empty.json.echo).toEqual({ path: "" });
  });

  it("matches ** followed by a verb", async () => {
    const r = await get("/v1/files/docs/readme.md:stat");
    expect(r.status).toBe(200);
    expect(r.json.echo).toEqual({ path: "docs/readme.md" });
  });

  it("matches an anonymous * segment without binding it", async () => {
    const r = await get("/v1/wild/anything/parts/p7");
    expect(r.json.echo).toEqual({ partId: "p7" });
  });

  it("serves every additional binding of one RPC", async () => {
    expect((await get("/v1/books/b1")).json.echo).toEqual({ id: "b1", shelf: "" });
    expect((await get("/v1/libraries/l9/books/b1")).json.echo).toEqual({ id: "b1", shelf: "l9" });
    const posted = await send("POST", "/v1/books:get", { id: "b3", shelf: "s3" });
    expect(posted.json.echo).toEqual({ id: "b3", shelf: "s3" });
  });

  it("binds nested field paths and converts path text to the field type", async () => {
    const r = await get("/v1/refs/widget/42?note=hi");
    expect(r.json.echo).toEqual({ ref: { kind: "widget", number: "42" }, note: "hi" });
  });

  it("rejects path text that is not valid for the field type, naming the field", async () => {
    const r = await get("/v1/refs/widget/forty-two");
    expect(r.status).toBe(400);
    expectStatusBody(r.json, Code.InvalidArgument);
    expect(violation(r.json)?.field).toBe("ref.number");
  });
});

describe("percent-decoding", () => {
  it("fully decodes single-segment variables, %2F included", async () => {
    expect((await get("/v1/items/a%2Fb")).json.echo.id).toBe("a/b");
    expect((await get("/v1/items/%E2%82%AC%20x")).json.echo.id).toBe("€ x");
  });

  it("decodes multi-segment variables except %2F", async () => {
    expect((await get("/v1/files/a%2Fb/c")).json.echo.path).toBe("a%2Fb/c");
    expect((await get("/v1/files/a%20b/%C3%A9")).json.echo.path).toBe("a b/é");
  });

  it("matches percent-encoded literal segments", async () => {
    expect((await get("/v1/it%65ms/x1")).json.echo.id).toBe("x1");
  });

  it("rejects invalid percent-encoding and invalid UTF-8 with 400", async () => {
    const bad = await get("/v1/items/%ff");
    expect(bad.status).toBe(400);
    expectStatusBody(bad.json, Code.InvalidArgument);
    expect((await get("/v1/items?page_token=%E2%82")).status).toBe(400);
  });

  it("reads + in a query string as a space and %2B as a plus", async () => {
    const r = await get("/v1/items?page_token=a+b%20c%2Bd");
    expect(r.json.echo.pageToken).toBe("a b c+d");
  });
});

describe("query parameters", () => {
  it("accepts proto field names and JSON names", async () => {
    const r = await get("/v1/items?page_size=10&pageToken=t1");
    expect(r.json.echo).toMatchObject({ pageSize: 10, pageToken: "t1" });
  });

  it("maps repeated fields by repetition", async () => {
    const r = await get("/v1/items?tags=a&tags=b&ids=1&ids=-2");
    expect(r.json.echo.tags).toEqual(["a", "b"]);
    expect(r.json.echo.ids).toEqual(["1", "-2"]);
  });

  it("accepts enums by name or by number", async () => {
    const r = await get("/v1/items?color=COLOR_RED&colors=2&colors=COLOR_RED");
    expect(r.json.echo.color).toBe("COLOR_RED");
    expect(r.json.echo.colors).toEqual(["COLOR_GREEN", "COLOR_RED"]);
  });

  it("rejects an unknown enum name", async () => {
    const r = await get("/v1/items?color=COLOR_PURPLE");
    expect(r.status).toBe(400);
    expect(violation(r.json)?.field).toBe("color");
  });

  it("maps dotted names into nested messages, two levels deep", async () => {
    const r = await get(
      "/v1/items?filter.name_prefix=ab&filter.minSize.width=3&filter.active=true",
    );
    expect(r.json.echo.filter).toEqual({
      namePrefix: "ab",
      minSize: { width: 3, height: 0 },
      active: true,
    });
  });

  it("parses well-known types from their JSON string form", async () => {
    const r = await get(
      "/v1/items?created_after=2024-01-02T03:04:05Z&max_age=3.5s&read_mask=display_name,size.width&min_count=7&only_active=true",
    );
    expect(r.json.echo).toMatchObject({
      createdAfter: "2024-01-02T03:04:05Z",
      maxAge: "3.500s",
      readMask: "displayName,size.width",
      minCount: "7",
      onlyActive: true,
    });
  });

  it("keeps every digit of 64-bit integers and decodes bytes from base64", async () => {
    const r = await get("/v1/items?big=18446744073709551615&cursor=AQID&ratio=0.5&min_price=1e3");
    expect(r.json.echo).toMatchObject({
      big: "18446744073709551615",
      cursor: "AQID",
      ratio: 0.5,
      minPrice: 1000,
    });
  });

  it("parses booleans strictly", async () => {
    expect((await get("/v1/items?include_deleted=true")).json.echo.includeDeleted).toBe(true);
    const bad = await get("/v1/items?include_deleted=yes");
    expect(bad.status).toBe(400);
    expect(violation(bad.json)?.field).toBe("include_deleted");
  });

  it("rejects an unknown query parameter, naming it", async () => {
    const r = await get("/v1/items?page_size=1&colour=red");
    expect(r.status).toBe(400);
    expect(violation(r.json)).toEqual({ field: "colour", description: "unknown query parameter" });
  });

  it("rejects a wrong type and an out-of-range number, naming the field", async () => {
    const wrong = await get("/v1/items?page_size=ten");
    expect(wrong.status).toBe(400);
    expect(violation(wrong.json)?.field).toBe("pageSize");
    const range = await get("/v1/items?page_size=99999999999");
    expect(range.status).toBe(400);
    expect(violation(range.json)?.field).toBe("pageSize");
    const negative = await get("/v1/items?big=-1");
    expect(negative.status).toBe(400);
  });

  it("rejects a singular field given twice", async () => {
    const r = await get("/v1/items?page_size=1&pageSize=2");
    expect(r.status).toBe(400);
    expect(violation(r.json)?.description).toBe("set more than once");
  });

  it("refuses maps, repeated messages and whole messages in the query", async () => {
    for (const q of ["labels.x=1", "items.id=1", "filter=x", "created_after.seconds=1"]) {
      const r = await get(`/v1/items?${q}`);
      expect(r.status, q).toBe(400);
      expectStatusBody(r.json, Code.InvalidArgument);
    }
  });

  it("refuses query parameters for fields bound by the path or the body", async () => {
    const path = await get("/v1/refs/widget/42?ref.kind=gadget");
    expect(path.status).toBe(400);
    expect(violation(path.json)?.field).toBe("ref.kind");
    const body = await send("POST", "/v1/items?item.display_name=x", { displayName: "y" });
    expect(body.status).toBe(400);
  });

  it("refuses query parameters when the whole request is the body", async () => {
    const r = await send("PUT", "/v1/items/p1?etag=x", { etag: "y" });
    expect(r.status).toBe(400);
    expect(violation(r.json)?.field).toBe("etag");
  });
});

describe("request bodies", () => {
  it("puts a body field in place and takes the other fields from the query", async () => {
    const r = await send("POST", "/v1/items?request_id=r1", {
      displayName: "new",
      count: "12",
      size: { width: 3 },
      labels: { a: "b" },
    });
    expect(r.status).toBe(200);
    expect(r.json.echo.requestId).toBe("r1");
    expect(r.json.echo.item).toMatchObject({
      displayName: "new",
      count: "12",
      size: { width: 3, height: 0 },
      labels: { a: "b" },
    });
  });

  it("lets the path win over a body value (body: *)", async () => {
    const r = await send("PUT", "/v1/items/p1", { id: "b1", etag: "e", item: { id: "x" } });
    expect(r.json.echo).toMatchObject({ id: "p1", etag: "e", item: { id: "x" } });
  });

  it("lets the path win over a body value (body field, proto name in body)", async () => {
    const r = await send("PATCH", "/v1/items/i1?update_mask=price", {
      id: "other",
      display_name: "n",
    });
    expect(r.status).toBe(200);
    expect(r.json.echo.item).toMatchObject({ id: "i1", displayName: "n" });
    expect(r.json.echo.updateMask).toBe("price");
  });

  it("derives update_mask from the body keys of a PATCH", async () => {
    const r = await send("PATCH", "/v1/items/i1", {
      displayName: "x",
      size: { width: 3 },
      labels: { k: "v" },
      create_time: "2024-01-01T00:00:00Z",
    });
    expect(r.status).toBe(200);
    expect(r.json.echo.updateMask).toBe("displayName,size.width,labels,createTime");
    expect(r.json.echo.item.id).toBe("i1");
  });

  it("rejects unknown body fields, naming them", async () => {
    const r = await send("POST", "/v1/echo", { i32: 1, bogus: true });
    expect(r.status).toBe(400);
    expect(violation(r.json)).toEqual({ field: "bogus", description: "unknown field" });
    const nested = await send("POST", "/v1/echo", { items: [{}, { size: { depth: 1 } }] });
    expect(violation(nested.json)?.field).toBe("items[1].size.depth");
  });

  it("rejects malformed JSON", async () => {
    const r = await send("POST", "/v1/echo", '{"i32": 1,');
    expect(r.status).toBe(400);
    expectStatusBody(r.json, Code.InvalidArgument);
  });

  it("rejects wrong types and out-of-range numbers, naming the field", async () => {
    const cases: [unknown, string][] = [
      [{ i32: "abc" }, "i32"],
      [{ i32: 2147483648 }, "i32"],
      [{ u32: -1 }, "u32"],
      [{ f: 1e39 }, "f"],
      [{ b: "true" }, "b"],
      [{ raw: "!!" }, "raw"],
      [{ color: "COLOR_BLUE" }, "color"],
      [{ at: "yesterday" }, "at"],
      [{ item: { count: "1.5" } }, "item.count"],
      [{ items: [{ size: { width: "wide" } }] }, "items[0].size.width"],
      [{ counts: { a: "x" } }, "counts"],
    ];
    for (const [body, field] of cases) {
      const r = await send("POST", "/v1/echo", body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(violation(r.json)?.field, JSON.stringify(body)).toBe(field);
    }
  });

  it("rejects a number too large for a double", async () => {
    const r = await send("POST", "/v1/echo", '{"d": 1e400}');
    expect(r.status).toBe(400);
    expect(violation(r.json)?.field).toBe("d");
  });

  it("keeps every digit of a 64-bit integer sent as a JSON number", async () => {
    const r = await send(
      "POST",
      "/v1/echo",
      '{"i64": 9223372036854775807, "u64": 18446744073709551615, "d": 123456789012345678901}',
    );
    expect(r.status).toBe(200);
    expect(r.json.echo).toMatchObject({
      i64: "9223372036854775807",
      u64: "18446744073709551615",
      d: 123456789012345680000,
    });
    const over = await send("POST", "/v1/echo", '{"i64": 9223372036854775808}');
    expect(over.status).toBe(400);
  });

  it("accepts arbitrary JSON in a Struct and every scalar kind", async () => {
    const body = {
      i32: -5,
      u32: 7,
      f: 1.5,
      d: "NaN",
      b: true,
      raw: "AQID",
      color: 2,
      text: "héllo",
      meta: { a: [1, "x", null, { b: false }] },
      at: "2024-05-06T07:08:09.5Z",
      counts: { a: 1 },
    };
    const r = await send("POST", "/v1/echo", body);
    expect(r.status).toBe(200);
    expect(r.json.echo).toMatchObject({
      ...body,
      color: "COLOR_GREEN",
      at: "2024-05-06T07:08:09.500Z",
    });
  });

  it("rejects JSON nested deeper than the limit", async () => {
    const deep = `{"meta": {"a": ${"[".repeat(40)}${"]".repeat(40)}}}`;
    const r = await send("POST", "/v1/echo", deep);
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(/deeper/);
  });

  it("rejects invalid UTF-8 in the body", async () => {
    const r = await rawRequest(port, {
      method: "POST",
      path: "/v1/echo",
      body: Buffer.from([0x7b, 0x22, 0x74, 0x65, 0x78, 0x74, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]),
    });
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(/UTF-8/);
  });

  it("answers 413 for a body over the limit", async () => {
    const r = await send("POST", "/v1/echo", JSON.stringify({ text: "x".repeat(100 * 1024) }));
    expect(r.status).toBe(413);
    expectStatusBody(r.json, Code.ResourceExhausted);
  });

  it("answers 415 for a non-JSON content type", async () => {
    const r = await send("POST", "/v1/echo", "i32=1", { "content-type": "text/plain" });
    expect(r.status).toBe(415);
  });

  it("rejects a body on a route without one and a non-object body for body: *", async () => {
    expect((await send("GET", "/v1/items/x", { a: 1 })).status).toBe(400);
    expect((await send("POST", "/v1/echo", [1, 2])).status).toBe(400);
    expect((await send("POST", "/v1/echo", "null")).status).toBe(400);
  });

  it("accepts an empty body as an empty message", async () => {
    const r = await rawRequest(port, { method: "POST", path: "/v1/echo" });
    expect(r.status).toBe(200);
    expect(r.json.echo.i32).toBe(0);
  });
});

describe("responses and errors", () => {
  it("answers only the response_body field", async () => {
    const r = await get("/v1/items/d1/details");
    expect(r.json).toMatchObject({ id: "d1", displayName: "detailed", tags: ["a"], count: "0" });
    expect(r.json.etag).toBeUndefined();
  });

  it("answers a default message when the response_body field is unset", async () => {
    const r = await get("/v1/items/empty/details");
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ id: "", displayName: "", tags: [] });
  });

  it("maps an upstream error to its HTTP status with a Status body and typed details", async () => {
    const r = await get("/v1/fail/5");
    expect(r.status).toBe(404);
    expect(r.json).toEqual({
      code: 5,
      message: "fixture failure",
      details: [
        {
          "@type": "type.googleapis.com/google.rpc.BadRequest",
          fieldViolations: [{ field: "code", description: "requested failure" }],
        },
        {
          "@type": "type.googleapis.com/google.rpc.ErrorInfo",
          reason: "FIXTURE",
          domain: "test",
        },
      ],
    });
  });

  it("maps every gRPC code to the grpc-gateway HTTP status", async () => {
    const expected: Record<number, number> = {
      1: 499,
      2: 500,
      3: 400,
      4: 504,
      5: 404,
      6: 409,
      7: 403,
      8: 429,
      9: 400,
      10: 409,
      11: 400,
      12: 501,
      14: 503,
      15: 500,
      16: 401,
    };
    for (const [code, status] of Object.entries(expected)) {
      expect(httpStatusFromCode(Number(code))).toBe(status);
      const r = await get(`/v1/fail/${code}`);
      expect(r.status, `code ${code}`).toBe(status);
      expect(r.json.code).toBe(Number(code));
    }
  });

  it("never leaks the text of an internal error", async () => {
    const r = await get("/v1/fail/13");
    expect(r.status).toBe(500);
    expect(r.json.message).toBe("internal error");
    expect(r.text).not.toMatch(/password/);
  });

  it("answers a hook's error with its status and the hook's response headers", async () => {
    const r = await get("/v1/items/x", { "x-deny": "yes" });
    expect(r.status).toBe(401);
    expectStatusBody(r.json, Code.Unauthenticated);
    expect(r.headers["x-hook"]).toBe("GetItem");
  });

  it("forwards selected request headers and hook headers upstream", async () => {
    const r = await get("/v1/whoami", {
      authorization: "Bearer t0k",
      "x-request-id": "rid-1",
      cookie: "secret=1",
    });
    expect(r.json.caller).toEqual({
      authorization: "Bearer t0k",
      "x-request-id": "rid-1",
      "x-verified-caller": "user-1",
    });
  });

  it("reports each failure to the onError hook", async () => {
    const before = errorsSeen.length;
    await get("/v1/fail/9");
    expect(errorsSeen.length).toBe(before + 1);
    expect(errorsSeen.at(-1)?.code).toBe(Code.FailedPrecondition);
  });
});

describe("server streaming", () => {
  it("streams Server-Sent Events with ids from the sequence and a final end event", async () => {
    const r = await get("/v1/items/i1:watch?count=3");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^text\/event-stream/);
    const events = parseSse(r.text);
    expect(events.map((e) => e.id)).toEqual(["1", "2", "3", undefined]);
    expect(JSON.parse(events[0]!.data)).toEqual({
      event: { sequence: "1", itemId: "i1" },
      callerAuthorization: "",
    });
    expect(events.at(-1)?.event).toBe("end");
  });

  it("resumes after Last-Event-ID", async () => {
    const r = await get("/v1/items/i1:watch?count=2", { "last-event-id": "5" });
    expect(parseSse(r.text).map((e) => e.id)).toEqual(["6", "7", undefined]);
  });

  it("ends the event stream with an error event carrying a Status", async () => {
    const r = await get("/v1/items/i1:watch?count=2&fail_code=14");
    const events = parseSse(r.text);
    expect(events.map((e) => e.event)).toEqual(["message", "message", "error"]);
    expect(JSON.parse(events[2]!.data)).toMatchObject({ code: 14, message: "watch failed" });
  });

  it("answers an immediate stream failure as an HTTP error", async () => {
    const r = await get("/v1/items/missing:watch");
    expect(r.status).toBe(404);
    expectStatusBody(r.json, Code.NotFound);
  });

  it("streams over WebSocket on the same route", async () => {
    const frames: unknown[] = [];
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/items/w1:watch?count=2&after_sequence=10`);
    const code = await new Promise<number>((resolve, reject) => {
      ws.on("message", (data) => frames.push(JSON.parse(String(data))));
      ws.on("close", (c) => resolve(c));
      ws.on("error", reject);
    });
    expect(code).toBe(1000);
    expect(frames).toEqual([
      { result: { event: { sequence: "11", itemId: "w1" }, callerAuthorization: "" } },
      { result: { event: { sequence: "12", itemId: "w1" }, callerAuthorization: "" } },
    ]);
  });

  it("sends a WebSocket error frame and closes with 4000 + code", async () => {
    const frames: any[] = [];
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/items/w1:watch?count=1&fail_code=9`);
    const code = await new Promise<number>((resolve) => {
      ws.on("message", (data) => frames.push(JSON.parse(String(data))));
      ws.on("close", (c) => resolve(c));
    });
    expect(code).toBe(4009);
    expect(frames.at(-1)).toMatchObject({ error: { code: 9, message: "watch failed" } });
  });

  it("refuses a WebSocket upgrade on a unary route and on unknown routes with an HTTP status", async () => {
    for (const [path, status] of [
      ["/v1/items/x", 400],
      ["/v1/nope", 404],
      ["/v1/items/x:watch?bogus=1", 400],
    ] as const) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
      const got = await new Promise<number>((resolve) => {
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.on("error", () => resolve(-1));
      });
      expect(got, path).toBe(status);
    }
  });

  it("stops the upstream stream when the SSE client goes away", async () => {
    const closed = await new Promise<boolean>((resolve, reject) => {
      const req = http.get(
        { host: "127.0.0.1", port, path: "/v1/items/i9:watch?count=-1" },
        (res) => {
          res.once("data", () => {
            req.destroy();
            // The server side notices the close; a later request still works.
            setTimeout(() => resolve(true), 50);
          });
        },
      );
      req.on("error", (e) => (e.message.includes("socket hang up") ? resolve(true) : reject(e)));
    });
    expect(closed).toBe(true);
    expect((await get("/v1/items/after")).status).toBe(200);
  });
});

describe("compilation and helpers", () => {
  it("parses path templates and rejects malformed ones", () => {
    const t = parsePathTemplate("/v1/{name=shelves/*/books/*}/x/{id}:do");
    expect(t.verb).toBe("do");
    expect(t.variables).toEqual([
      { fieldPath: ["name"], start: 1, end: 5 },
      { fieldPath: ["id"], start: 6, end: 7 },
    ]);
    for (const bad of ["v1/x", "/v1/**/x", "/v1/{a}/{a}", "/v1//x", "/v1/{a", "/v1/{a={b}}"]) {
      expect(() => parsePathTemplate(bad), bad).toThrow();
    }
  });

  it("refuses two RPCs bound to the same method and path", () => {
    const matcher = new RouteMatcher();
    matcher.add({ httpMethod: "GET", template: parsePathTemplate("/v1/{a}") });
    expect(() =>
      matcher.add({ httpMethod: "GET", template: parsePathTemplate("/v1/{b}") }),
    ).toThrow(RouteConflictError);
  });

  it("compiles one binding per rule and additional binding", () => {
    const bindings = compileBindings([TranscodeFixtureService]);
    expect(
      bindings.filter((b) => b.method.name === "GetBook").map((b) => b.template.source),
    ).toEqual(["/v1/books/{id}", "/v1/libraries/{shelf}/books/{id}", "/v1/books:get"]);
    const watch = bindings.find((b) => b.method.name === "WatchItem")!;
    expect(watch.resume?.request.name).toBe("after_sequence");
    expect(watch.resume?.response.map((f) => f.name)).toEqual(["event", "sequence"]);
    expect(() =>
      compileBindings([TranscodeFixtureService], {
        "platform.testing.v1.TranscodeFixtureService.WatchItem": { request: "nope", response: "x" },
      }),
    ).toThrow();
    expect(BindingError).toBeDefined();
  });

  it("honours and caps request deadlines", () => {
    const limits = { defaultTimeoutMs: 1000, maxTimeoutMs: 5000 };
    expect(requestTimeout({}, limits)).toBe(1000);
    expect(requestTimeout({ "grpc-timeout": "2S" }, limits)).toBe(2000);
    expect(requestTimeout({ "connect-timeout-ms": "99999" }, limits)).toBe(5000);
    expect(requestTimeout({ "grpc-timeout": "bogus" }, limits)).toBe(1000);
  });
});
