// Contract rules that buf lint cannot express: every RPC declares its access
// policy, reads are side-effect free, and REST bindings exist and point at real
// request fields. The edge and the services build routes and auth from these
// descriptors at run time, so a gap here is a gap in production.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  create,
  createFileRegistry,
  type DescField,
  type DescFile,
  type DescMessage,
  type DescMethod,
  type DescService,
  getOption,
  hasOption,
  setExtension,
} from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  MethodOptions_IdempotencyLevel,
  MethodOptionsSchema,
} from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { AccessPolicySchema, access } from "../gen/commerce/options/v1/access_pb.js";
import { http } from "../gen/google/api/annotations_pb.js";
import { type HttpRule, HttpRuleSchema } from "../gen/google/api/http_pb.js";

/** Roles an access policy may name; they match the `roles` claim identity issues. */
const KNOWN_ROLES = new Set(["customer", "admin", "service"]);

/**
 * RPCs deliberately without a REST binding. Each one says why in its doc
 * comment in the .proto file; this list must shrink or grow together with it.
 */
const INTERNAL_WITHOUT_HTTP = new Set([
  "commerce.catalog.v1.InventoryService.ReserveStock",
  "commerce.catalog.v1.InventoryService.CommitReservation",
  "commerce.catalog.v1.InventoryService.ReleaseReservation",
  "commerce.payments.v1.PaymentService.Authorize",
  "commerce.payments.v1.PaymentService.HandleProviderWebhook",
]);

const READ_NAME = /^(Get|List|Search|Watch|BatchGet)[A-Z]/;

const EXPECTED_SERVICES = [
  "commerce.catalog.v1.CatalogService",
  "commerce.catalog.v1.InventoryService",
  "commerce.identity.v1.IdentityService",
  "commerce.orders.v1.OrderService",
  "commerce.orders.v1.WebhookService",
  "commerce.payments.v1.PaymentService",
];

function rpcName(method: DescMethod): string {
  return `${method.parent.typeName}.${method.name}`;
}

type Route = { verb: string; path: string; body: string };

function routesOf(rule: HttpRule): Route[] {
  const own: Route[] = [];
  const p = rule.pattern;
  if (p.case === "custom") {
    own.push({ verb: p.value.kind.toUpperCase(), path: p.value.path, body: rule.body });
  } else if (p.case !== undefined) {
    own.push({ verb: p.case.toUpperCase(), path: p.value, body: rule.body });
  }
  return [...own, ...rule.additionalBindings.flatMap(routesOf)];
}

/** Resolves a dotted field path ("product.id") against a message; true if every step exists. */
function hasFieldPath(message: DescMessage, path: string): boolean {
  let current: DescMessage | undefined = message;
  for (const name of path.split(".")) {
    const field: DescField | undefined = current?.fields.find((f) => f.name === name);
    if (field === undefined) return false;
    current = field.fieldKind === "message" ? field.message : undefined;
  }
  return true;
}

function pathVariables(template: string): string[] {
  return [...template.matchAll(/\{([^}=]+)(?:=[^}]*)?\}/g)].map((m) => m[1] ?? "");
}

/**
 * Returns one message per violated rule, each naming the offending RPC. Pure,
 * so the negative tests can run it against descriptors built in the test.
 */
function checkContracts(
  services: readonly DescService[],
  internalWithoutHttp: ReadonlySet<string>,
): string[] {
  const problems: string[] = [];
  const seenRoutes = new Map<string, string>();
  for (const service of services) {
    for (const method of service.methods) {
      const name = rpcName(method);

      if (!hasOption(method, access)) {
        problems.push(`${name}: has no (commerce.options.v1.access) policy`);
      } else {
        const policy = getOption(method, access);
        const kinds = [policy.public, policy.authenticated, policy.roles.length > 0].filter(
          Boolean,
        ).length;
        if (kinds !== 1) {
          problems.push(
            `${name}: access policy must choose exactly one of public/authenticated/roles, has ${kinds}`,
          );
        }
        for (const role of policy.roles) {
          if (!KNOWN_ROLES.has(role)) problems.push(`${name}: unknown role "${role}" in policy`);
        }
      }

      const sideEffectFree = method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
      if (READ_NAME.test(method.name) && !sideEffectFree) {
        problems.push(`${name}: read RPC must declare idempotency_level = NO_SIDE_EFFECTS`);
      }

      if (!hasOption(method, http)) {
        if (!internalWithoutHttp.has(name)) {
          problems.push(
            `${name}: has no google.api.http rule and is not a documented internal RPC`,
          );
        }
        continue;
      }
      if (internalWithoutHttp.has(name)) {
        problems.push(`${name}: listed as internal without REST but has a google.api.http rule`);
      }
      const routes = routesOf(getOption(method, http));
      if (routes.length === 0) problems.push(`${name}: google.api.http rule has no pattern`);
      for (const route of routes) {
        if (route.verb === "GET" && !sideEffectFree) {
          problems.push(`${name}: GET ${route.path} requires idempotency_level = NO_SIDE_EFFECTS`);
        }
        if (route.verb === "GET" && route.body !== "") {
          problems.push(`${name}: GET ${route.path} must not have a body`);
        }
        if (READ_NAME.test(method.name) && route.verb !== "GET") {
          problems.push(`${name}: read RPC must be bound to GET, not ${route.verb}`);
        }
        for (const variable of pathVariables(route.path)) {
          if (!hasFieldPath(method.input, variable)) {
            problems.push(
              `${name}: path variable {${variable}} is not a field of ${method.input.typeName}`,
            );
          }
        }
        if (route.body !== "" && route.body !== "*" && !hasFieldPath(method.input, route.body)) {
          problems.push(`${name}: body "${route.body}" is not a field of ${method.input.typeName}`);
        }
        const key = `${route.verb} ${route.path}`;
        const other = seenRoutes.get(key);
        if (other !== undefined && other !== name) {
          problems.push(`${name}: route ${key} is already bound to ${other}`);
        }
        seenRoutes.set(key, name);
      }
    }
  }
  for (const listed of internalWithoutHttp) {
    const exists = services.some((s) => s.methods.some((m) => rpcName(m) === listed));
    if (!exists) problems.push(`${listed}: listed as internal but no such RPC exists`);
  }
  return problems;
}

function listPbFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) return listPbFiles(full);
    return entry.name.endsWith("_pb.ts") ? [full] : [];
  });
}

function isDescFile(value: unknown): value is DescFile {
  return typeof value === "object" && value !== null && (value as DescFile).kind === "file";
}

/** Imports every generated file under gen/commerce and returns its services. */
async function loadCommerceServices(): Promise<DescService[]> {
  const root = fileURLToPath(new URL("../gen/commerce", import.meta.url));
  const files = new Map<string, DescFile>();
  for (const path of listPbFiles(root)) {
    const mod: Record<string, unknown> = await import(pathToFileURL(path).href);
    for (const value of Object.values(mod)) {
      if (isDescFile(value)) files.set(value.name, value);
    }
  }
  return [...files.values()].flatMap((f) => f.services);
}

describe("commerce contracts", () => {
  it("generates exactly the six v1 services, each with RPCs", async () => {
    const services = await loadCommerceServices();
    expect(services.map((s) => s.typeName).sort()).toEqual(EXPECTED_SERVICES);
    for (const service of services) expect(service.methods.length).toBeGreaterThan(0);
  });

  it("every RPC has one access policy, reads are NO_SIDE_EFFECTS, REST bindings are sound", async () => {
    const services = await loadCommerceServices();
    const problems = checkContracts(services, INTERNAL_WITHOUT_HTTP);
    // toEqual on the list prints every offending RPC by name when it fails.
    expect(problems).toEqual([]);
  });

  it("mesh-internal RPCs without REST are restricted to the service role", async () => {
    const services = await loadCommerceServices();
    for (const method of services.flatMap((s) => s.methods)) {
      const name = rpcName(method);
      if (!INTERNAL_WITHOUT_HTTP.has(name) || name.endsWith(".HandleProviderWebhook")) continue;
      expect(getOption(method, access).roles, name).toEqual(["service"]);
    }
  });

  it("WatchOrder is a server stream and JWKS is served at the well-known path", async () => {
    const services = await loadCommerceServices();
    const methods = new Map(services.flatMap((s) => s.methods.map((m) => [rpcName(m), m])));
    const watch = methods.get("commerce.orders.v1.OrderService.WatchOrder");
    expect(watch?.methodKind).toBe("server_streaming");
    const jwks = methods.get("commerce.identity.v1.IdentityService.GetJwks");
    expect(jwks && routesOf(getOption(jwks, http)).map((r) => r.path)).toContain(
      "/.well-known/jwks.json",
    );
  });
});

describe("checkContracts itself", () => {
  type FakeRpc = {
    name: string;
    policy?: { public?: boolean; authenticated?: boolean; roles?: string[] };
    idempotency?: MethodOptions_IdempotencyLevel;
    rule?: Partial<Pick<HttpRule, "pattern" | "body">>;
  };

  /** Builds a real DescService from a FileDescriptorProto with the given methods. */
  function fakeService(rpcs: FakeRpc[]): DescService {
    const methods = rpcs.map((rpc) => {
      const options = create(MethodOptionsSchema, {
        idempotencyLevel: rpc.idempotency ?? MethodOptions_IdempotencyLevel.IDEMPOTENCY_UNKNOWN,
      });
      if (rpc.policy) setExtension(options, access, create(AccessPolicySchema, rpc.policy));
      if (rpc.rule) setExtension(options, http, create(HttpRuleSchema, rpc.rule));
      return {
        name: rpc.name,
        inputType: ".fake.v1.ThingRequest",
        outputType: ".fake.v1.ThingResponse",
        options,
      };
    });
    const file = create(FileDescriptorProtoSchema, {
      name: "fake/v1/fake.proto",
      package: "fake.v1",
      syntax: "proto3",
      messageType: [
        {
          name: "ThingRequest",
          field: [{ name: "id", number: 1, type: 9, label: 1, jsonName: "id" }],
        },
        { name: "ThingResponse" },
      ],
      service: [{ name: "FakeService", method: methods }],
    });
    const registry = createFileRegistry(file, () => undefined);
    const service = registry.getService("fake.v1.FakeService");
    if (service === undefined) throw new Error("fake service not built");
    return service;
  }

  const getRule = { pattern: { case: "get" as const, value: "/v1/things/{id}" } };
  const readOk: FakeRpc = {
    name: "GetThing",
    policy: { public: true },
    idempotency: MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS,
    rule: getRule,
  };

  it("accepts a well-formed RPC", () => {
    expect(checkContracts([fakeService([readOk])], new Set())).toEqual([]);
  });

  it("detects a missing access policy and names the RPC", () => {
    const problems = checkContracts([fakeService([{ ...readOk, policy: undefined }])], new Set());
    expect(problems).toEqual([
      "fake.v1.FakeService.GetThing: has no (commerce.options.v1.access) policy",
    ]);
  });

  it("detects an empty policy, two kinds at once and unknown roles", () => {
    const problems = checkContracts(
      [
        fakeService([
          {
            ...readOk,
            name: "GetEmpty",
            policy: {},
            rule: { pattern: { case: "get", value: "/v1/a/{id}" } },
          },
          {
            ...readOk,
            name: "GetBoth",
            policy: { public: true, roles: ["admin"] },
            rule: { pattern: { case: "get", value: "/v1/b/{id}" } },
          },
          {
            ...readOk,
            name: "GetRoot",
            policy: { roles: ["root"] },
            rule: { pattern: { case: "get", value: "/v1/c/{id}" } },
          },
        ]),
      ],
      new Set(),
    );
    expect(problems).toEqual([
      "fake.v1.FakeService.GetEmpty: access policy must choose exactly one of public/authenticated/roles, has 0",
      "fake.v1.FakeService.GetBoth: access policy must choose exactly one of public/authenticated/roles, has 2",
      'fake.v1.FakeService.GetRoot: unknown role "root" in policy',
    ]);
  });

  it("detects a read without NO_SIDE_EFFECTS", () => {
    const problems = checkContracts(
      [fakeService([{ ...readOk, name: "ListThings", idempotency: undefined }])],
      new Set(),
    );
    expect(problems).toContain(
      "fake.v1.FakeService.ListThings: read RPC must declare idempotency_level = NO_SIDE_EFFECTS",
    );
  });

  it("detects a missing REST binding unless the RPC is listed as internal", () => {
    const rpc: FakeRpc = { name: "ReserveThing", policy: { roles: ["service"] } };
    expect(checkContracts([fakeService([rpc])], new Set())).toEqual([
      "fake.v1.FakeService.ReserveThing: has no google.api.http rule and is not a documented internal RPC",
    ]);
    expect(
      checkContracts([fakeService([rpc])], new Set(["fake.v1.FakeService.ReserveThing"])),
    ).toEqual([]);
  });

  it("detects path variables and bodies that are not request fields, and duplicate routes", () => {
    const problems = checkContracts(
      [
        fakeService([
          {
            name: "UpdateThing",
            policy: { roles: ["admin"] },
            rule: { pattern: { case: "patch", value: "/v1/things/{thing.id}" }, body: "thing" },
          },
          { ...readOk, name: "GetThingAgain" },
          readOk,
        ]),
      ],
      new Set(),
    );
    expect(problems).toEqual([
      "fake.v1.FakeService.UpdateThing: path variable {thing.id} is not a field of fake.v1.ThingRequest",
      'fake.v1.FakeService.UpdateThing: body "thing" is not a field of fake.v1.ThingRequest',
      "fake.v1.FakeService.GetThing: route GET /v1/things/{id} is already bound to fake.v1.FakeService.GetThingAgain",
    ]);
  });

  it("detects a GET binding on an RPC with side effects", () => {
    const problems = checkContracts(
      [fakeService([{ name: "DoThing", policy: { authenticated: true }, rule: getRule }])],
      new Set(),
    );
    expect(problems).toEqual([
      "fake.v1.FakeService.DoThing: GET /v1/things/{id} requires idempotency_level = NO_SIDE_EFFECTS",
    ]);
  });

  it("reports stale entries of the internal list", () => {
    expect(checkContracts([fakeService([readOk])], new Set(["fake.v1.FakeService.Gone"]))).toEqual([
      "fake.v1.FakeService.Gone: listed as internal but no such RPC exists",
    ]);
  });
});
