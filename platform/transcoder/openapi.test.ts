// biome-ignore-all lint/suspicious/noExplicitAny: tests probe JSON bodies structurally
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { getOption } from "@bufbuild/protobuf";
import { Validator } from "@seriousme/openapi-schema-validator";
import { beforeAll, describe, expect, it } from "vitest";
import { CatalogService } from "../../gen/commerce/catalog/v1/catalog_service_pb.js";
import { InventoryService } from "../../gen/commerce/catalog/v1/inventory_service_pb.js";
import { IdentityService } from "../../gen/commerce/identity/v1/identity_service_pb.js";
import { OrderService } from "../../gen/commerce/orders/v1/order_service_pb.js";
import { WebhookService } from "../../gen/commerce/orders/v1/webhook_service_pb.js";
import { PaymentService } from "../../gen/commerce/payments/v1/payment_service_pb.js";
import { http } from "../../gen/google/api/annotations_pb.js";
import { TranscodeFixtureService } from "../../gen/platform/testing/v1/transcode_fixture_pb.js";
import { compileBindings } from "./bindings.js";
import { generateOpenApi } from "./openapi.js";
import { commentsFromDescriptorSet } from "./source-comments.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const COMMERCE = [
  CatalogService,
  InventoryService,
  IdentityService,
  OrderService,
  WebhookService,
  PaymentService,
];

let comments: Record<string, string>;

beforeAll(() => {
  const dir = mkdtempSync(join(tmpdir(), "openapi-"));
  try {
    const out = join(dir, "image.binpb");
    execFileSync(
      join(ROOT, "node_modules/.bin/buf"),
      ["build", "proto", "--exclude-imports", "-o", out],
      {
        cwd: ROOT,
      },
    );
    comments = commentsFromDescriptorSet(readFileSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

type Doc = ReturnType<typeof generateOpenApi>;

function operations(doc: Doc): { method: string; path: string; op: any }[] {
  const out: { method: string; path: string; op: any }[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (method === "x-custom-methods") {
        for (const [custom, customOp] of Object.entries(op as object))
          out.push({ method: custom, path, op: customOp });
      } else out.push({ method, path, op });
    }
  }
  return out;
}

async function validate(doc: unknown) {
  const validator = new Validator();
  const result = await validator.validate(JSON.parse(JSON.stringify(doc)));
  return result;
}

describe("OpenAPI 3.1 from the descriptors", () => {
  it("validates and has one operation per binding of the real contracts", async () => {
    const bindings = compileBindings(COMMERCE);
    const doc = generateOpenApi(bindings, {
      title: "commerce-mesh",
      version: "v1",
      comments: (n) => comments[n],
    });
    const result = await validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    const ops = operations(doc);
    expect(ops.length).toBe(bindings.length);
    const annotated = COMMERCE.flatMap((s) => s.methods).filter(
      (m) => getOption(m, http).pattern.case !== undefined,
    );
    const ids = new Set(ops.map((o) => o.op.operationId));
    for (const method of annotated) {
      expect(ids.has(`${method.parent.name}_${method.name}`), method.name).toBe(true);
    }
    expect(annotated.length).toBeGreaterThan(30);
  });

  it("maps proto3 JSON types, security and comments", () => {
    const doc = generateOpenApi(compileBindings(COMMERCE), {
      title: "t",
      version: "1",
      comments: (n) => comments[n],
    }) as any;
    const getProduct = doc.paths["/v1/products/{id}"].get;
    expect(getProduct.security).toEqual([]);
    expect(getProduct.description).toMatch(/\w/);
    const getOrder = doc.paths["/v1/orders/{id}"].get;
    expect(getOrder.security).toEqual([{ bearerAuth: [] }]);
    const createProduct = doc.paths["/v1/products"].post;
    expect(createProduct["x-required-roles"]).toEqual(["admin"]);
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({
      type: "http",
      scheme: "bearer",
      bearerFormat: "JWT",
    });
    const lineItem = doc.components.schemas["commerce.orders.v1.CreateOrderRequest.LineItem"];
    expect(lineItem.properties.quantity).toMatchObject({ type: "string", format: "int64" });
    expect(lineItem.properties.productId.description).toMatch(/product/i);
    expect(lineItem.required).toContain("productId");
    const status = doc.components.schemas["commerce.orders.v1.OrderStatus"];
    expect(status.type).toBe("string");
    expect(status.enum).toContain("ORDER_STATUS_CONFIRMED");
    expect(doc.components.schemas["google.rpc.Status"].properties.details.items.required).toEqual([
      "@type",
    ]);
    expect(getProduct.responses.default.content["application/json"].schema.$ref).toBe(
      "#/components/schemas/google.rpc.Status",
    );
    const watch =
      doc.paths["/v1/orders/{orderId}:watch"]?.get ?? doc.paths["/v1/orders/{order_id}:watch"]?.get;
    expect(watch.responses["200"].content["text/event-stream"]).toBeDefined();
    const listOrders = doc.paths["/v1/orders"].get;
    const statuses = listOrders.parameters.find((p: any) => p.name === "statuses");
    expect(statuses).toMatchObject({
      in: "query",
      style: "form",
      explode: true,
      schema: { type: "array" },
    });
  });

  it("validates for the fixture service with every rule (custom verbs, **, response_body)", async () => {
    const bindings = compileBindings([TranscodeFixtureService]);
    const doc = generateOpenApi(bindings, {
      title: "fixture",
      version: "1",
      comments: (n) => comments[n],
    }) as any;
    const result = await validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(operations(doc).length).toBe(bindings.length);
    // PATCH /v1/items/{item.id} shares the path item of /v1/items/{id}.
    expect(Object.keys(doc.paths["/v1/items/{id}"]).sort()).toEqual([
      "delete",
      "get",
      "patch",
      "put",
      "x-custom-methods",
    ]);
    const patch = doc.paths["/v1/items/{id}"].patch;
    expect(patch.parameters[0]).toMatchObject({
      name: "id",
      in: "path",
      description: expect.stringMatching(/item\.id/),
    });
    expect(doc.paths["/v1/items/{id}"]["x-custom-methods"].LOCK.operationId).toBe(
      "TranscodeFixtureService_LockItem",
    );
    expect(doc.paths["/v1/files/{path}"].get.parameters[0].schema).toEqual({ type: "string" });
    expect(doc.paths["/v1/wild/{_wildcard1}/parts/{part_id}"]).toBeDefined();
    const list = doc.paths["/v1/items"].get.parameters.map((p: any) => p.name);
    expect(list).toEqual(
      expect.arrayContaining([
        "pageSize",
        "filter.namePrefix",
        "filter.minSize.width",
        "createdAfter",
        "minCount",
        "ids",
      ]),
    );
    expect(list).not.toContain("labels");
    expect(list).not.toContain("items");
    const details =
      doc.paths["/v1/items/{id}/details"].get.responses["200"].content["application/json"].schema;
    expect(details.$ref).toBe("#/components/schemas/platform.testing.v1.Item");
    expect(
      doc.paths["/v1/items/{id}:archive"].post.requestBody.content["application/json"].schema.$ref,
    ).toBe("#/components/schemas/platform.testing.v1.ArchiveItemRequest");
    expect(doc.paths["/v1/whoami"].get.security).toEqual([{ bearerAuth: [] }]);
  });
});
