// biome-ignore-all lint/suspicious/noExplicitAny: the fuzzer walks the OpenAPI document structurally
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TranscodeFixtureService } from "../../gen/platform/testing/v1/transcode_fixture_pb.js";
import { rawRequest } from "../../platform/transcoder/testing/raw-http.js";
import { MESH_SERVICES } from "./mesh-services.js";
import { createTestAuth, startEdge, startUpstream } from "./testing/edge-harness.js";

/**
 * Every operation of /openapi.json hit with hostile input: malformed JSON,
 * wrong types, huge bodies, deep nesting, invalid UTF-8, huge numbers, bad
 * percent-encoding. Every answer must be a 4xx with a google.rpc.Status body;
 * never a 5xx, never a crash. Seeded and bounded, so a failure replays.
 * Upstreams are stubs that reject every call with INVALID_ARGUMENT, so input
 * that happens to be valid still ends in a 4xx.
 */

const SEED = 0x5eed_2024;

function mulberry32(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALL = [...MESH_SERVICES, TranscodeFixtureService];
let upstream: Awaited<ReturnType<typeof startUpstream>>;
let edge: Awaited<ReturnType<typeof startEdge>>;
let adminToken: string;

beforeAll(async () => {
  const auth = await createTestAuth();
  adminToken = await auth.token("fuzzer", ["admin", "customer", "service"]);
  upstream = await startUpstream(ALL, { fixture: false });
  const upstreams = Object.fromEntries(ALL.map((s) => [s.typeName, upstream.url]));
  const unlimited = { ratePerSecond: 1e6, burst: 1e6 };
  edge = await startEdge({
    services: ALL,
    upstreams,
    verifier: auth.verifier,
    env: {
      EDGE_RATE_LIMITS: JSON.stringify({
        read: { anonymous: unlimited, user: unlimited },
        write: { anonymous: unlimited, user: unlimited },
        auth: { anonymous: unlimited, user: unlimited },
      }),
    },
  });
});

afterAll(async () => {
  await edge?.stop();
  await upstream?.close();
});

interface Operation {
  method: string;
  path: string;
  op: any;
}

function operationsOf(doc: any): Operation[] {
  const out: Operation[] = [];
  for (const [path, item] of Object.entries<any>(doc.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      if (method === "x-custom-methods") {
        for (const [custom, customOp] of Object.entries<any>(op))
          out.push({ method: custom, path, op: customOp });
      } else out.push({ method: method.toUpperCase(), path, op });
    }
  }
  return out;
}

function resolve(doc: any, schema: any): any {
  if (schema?.$ref) return doc.components.schemas[schema.$ref.split("/").pop()];
  return schema;
}

/** A value of the wrong JSON type for the schema. */
function wrongValue(schema: any, random: () => number): unknown {
  const type = Array.isArray(schema?.type) ? schema.type[0] : schema?.type;
  const options: Record<string, unknown[]> = {
    string: [12345, true, { a: 1 }, [1, 2], 1.5],
    integer: ["ten", 1.5, 1e300, "99999999999999999999999", { x: 1 }, -1e30],
    number: ["NaNx", { a: 1 }, [1], true],
    boolean: ["yes", 2, {}, null],
    array: ["not-an-array", 5, { 0: 1 }],
    object: ["text", 7, [1, 2, 3], true],
  };
  const pool = options[type as string] ?? ["\u0000", 1e308, { deep: { deeper: [] } }, "💥"];
  return pool[Math.floor(random() * pool.length)];
}

function fill(path: string, value: string): string {
  return path.replace(/\{[^}]+\}/g, value);
}

async function expectStatusBody(label: string, response: Awaited<ReturnType<typeof rawRequest>>) {
  expect(
    response.status,
    `${label} → ${response.status} ${response.text.slice(0, 200)}`,
  ).toBeGreaterThanOrEqual(400);
  expect(
    response.status,
    `${label} → ${response.status} ${response.text.slice(0, 200)}`,
  ).toBeLessThan(500);
  expect(typeof response.json?.code, label).toBe("number");
  expect(typeof response.json?.message, label).toBe("string");
  expect(Array.isArray(response.json?.details), label).toBe(true);
}

describe("fuzzing every OpenAPI operation through the edge", () => {
  it("answers hostile input with a 4xx Status body and never a 5xx", {
    timeout: 240_000,
  }, async () => {
    const docResponse = await rawRequest(edge.port, { path: "/openapi.json" });
    const doc = docResponse.json;
    const operations = operationsOf(doc);
    expect(operations.length).toBeGreaterThan(40);
    const random = mulberry32(SEED);
    const auth = { authorization: `Bearer ${adminToken}` };
    let requests = 0;
    for (const { method, path, op } of operations) {
      const label = `${method} ${path}`;
      const url = fill(path, "p1");
      const send = async (
        what: string,
        init: { path?: string; body?: string | Buffer; headers?: Record<string, string> },
      ) => {
        requests++;
        const response = await rawRequest(edge.port, {
          method,
          path: init.path ?? url,
          ...(init.body === undefined ? {} : { body: init.body }),
          headers: { ...auth, ...init.headers },
        });
        await expectStatusBody(`${label} [${what}]`, response);
      };
      const hasBody = op.requestBody !== undefined;
      const bodySchema = hasBody
        ? resolve(doc, op.requestBody.content["application/json"].schema)
        : undefined;

      await send("malformed JSON", {
        body: ['{"a":', "{]", "nul", '{"x": tru}', "\u0000"][Math.floor(random() * 5)]!,
      });
      await send("invalid UTF-8", {
        body: Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]),
      });
      await send("deep nesting", { body: `{"a": ${"[".repeat(500)}${"]".repeat(500)}}` });
      if (hasBody) {
        await send("huge body", { body: JSON.stringify({ x: "a".repeat(1024 * 1024 + 10) }) });
        const properties = Object.entries<any>(bodySchema?.properties ?? {});
        for (const [name, schema] of properties.slice(0, 6)) {
          await send(`wrong type ${name}`, {
            body: JSON.stringify({ [name]: wrongValue(resolve(doc, schema), random) }),
          });
          await send(`huge number ${name}`, { body: `{"${name}": 1e400}` });
          await send(`huge integer ${name}`, {
            body: `{"${name}": 123456789012345678901234567890}`,
          });
        }
        await send("unknown field", { body: JSON.stringify({ definitelyNotAField: 1 }) });
        await send("not an object", { body: "[1,2,3]" });
      }
      const query = (op.parameters ?? []).filter((p: any) => p.in === "query");
      for (const p of query.slice(0, 6)) {
        const value = String(wrongValue(resolve(doc, p.schema), random));
        const sep = url.includes("?") ? "&" : "?";
        await send(`query ${p.name}`, {
          path: `${url}${sep}${encodeURIComponent(p.name)}=${encodeURIComponent(value)}%ff`,
        });
      }
      await send("unknown query", { path: `${url}${url.includes("?") ? "&" : "?"}zz_unknown=1` });
      if (path.includes("{")) {
        await send("bad percent-encoding in path", { path: fill(path, "%ff%fe") });
        await send("huge path number", { path: fill(path, "9".repeat(40)) });
      }
    }
    expect(requests).toBeGreaterThan(300);
    const health = await rawRequest(edge.port, { path: "/healthz" });
    expect(health.status).toBe(200);
  });
});
