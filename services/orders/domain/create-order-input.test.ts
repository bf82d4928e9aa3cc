import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { ProductSchema } from "../../../gen/commerce/catalog/v1/product_pb.js";
import { CreateOrderRequestSchema } from "../../../gen/commerce/orders/v1/order_service_pb.js";
import { MAX_LINE_ITEMS, priceItems, validateCreateOrder } from "./create-order-input.js";

const P1 = "01900000-0000-7000-8000-0000000000a1";
const P2 = "01900000-0000-7000-8000-0000000000a2";

function request(overrides: Record<string, unknown> = {}) {
  return create(CreateOrderRequestSchema, {
    requestId: "01900000-0000-7000-8000-0000000000ff",
    items: [{ productId: P1, quantity: 2n }],
    shippingAddress: {
      recipientName: "Ada",
      addressLines: ["1 Main St"],
      locality: "Berlin",
      regionCode: "DE",
    },
    paymentMethodToken: "tok_approve",
    ...overrides,
  });
}

function product(id: string, fields: Record<string, unknown> = {}) {
  return create(ProductSchema, {
    id,
    sku: `SKU-${id.slice(-2)}`,
    name: `Product ${id.slice(-2)}`,
    price: { amountMinor: 1234n, currencyCode: "EUR" },
    active: true,
    ...fields,
  });
}

const fields = (violations: { field: string }[]) => violations.map((v) => v.field);

describe("CreateOrder input", () => {
  it("accepts a valid request", () => {
    expect(validateCreateOrder(request())).toEqual([]);
  });

  it("refuses zero and negative quantities and more than 1,000 units", () => {
    const v = validateCreateOrder(
      request({
        items: [
          { productId: P1, quantity: 0n },
          { productId: P2, quantity: -3n },
          { productId: "01900000-0000-7000-8000-0000000000a3", quantity: 1001n },
        ],
      }),
    );
    expect(fields(v)).toEqual(["items[0].quantity", "items[1].quantity", "items[2].quantity"]);
  });

  it("refuses 10,000 lines with one violation, and empty orders", () => {
    const many = Array.from({ length: 10_000 }, () => ({ productId: P1, quantity: 1n }));
    expect(validateCreateOrder(request({ items: many }))).toEqual([
      { field: "items", description: `must contain at most ${MAX_LINE_ITEMS} lines` },
    ]);
    expect(fields(validateCreateOrder(request({ items: [] })))).toEqual(["items"]);
  });

  it("refuses a product twice, bad ids, a bad address, a missing token and a non-UUID key", () => {
    const v = validateCreateOrder(
      request({
        requestId: "abc",
        items: [
          { productId: P1, quantity: 1n },
          { productId: P1.toUpperCase(), quantity: 1n },
          { productId: "not-a-uuid", quantity: 1n },
        ],
        shippingAddress: { recipientName: "", addressLines: [], locality: "x", regionCode: "de" },
        paymentMethodToken: "",
      }),
    );
    expect(fields(v)).toEqual([
      "request_id",
      "items[1].product_id",
      "items[2].product_id",
      "shipping_address.recipient_name",
      "shipping_address.address_lines",
      "shipping_address.region_code",
      "payment_method_token",
    ]);
  });

  it("refuses control characters and overlong address fields", () => {
    const v = validateCreateOrder(
      request({
        shippingAddress: {
          recipientName: "Ada\u0000",
          addressLines: ["1 Main St\nInjected: header"],
          locality: "B".repeat(101),
          regionCode: "DE",
          phoneNumber: "0301234",
        },
      }),
    );
    expect(fields(v)).toEqual([
      "shipping_address.recipient_name",
      "shipping_address.address_lines[0]",
      "shipping_address.locality",
      "shipping_address.phone_number",
    ]);
  });

  it("prices lines from catalog products and sums the total", () => {
    const result = priceItems(
      [{ productId: P1, quantity: 2n } as never, { productId: P2, quantity: 3n } as never],
      [product(P1), product(P2, { price: { amountMinor: 100n, currencyCode: "EUR" } })],
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.total).toMatchObject({ amountMinor: 2768n, currencyCode: "EUR" });
    expect(result.items.map((i) => i.lineTotal?.amountMinor)).toEqual([2468n, 300n]);
    expect(result.items[0]?.sku).toBe("SKU-a1");
  });

  it("refuses inactive, deleted and unknown products and mixed currencies", () => {
    const lines = [
      { productId: P1, quantity: 1n },
      { productId: P2, quantity: 1n },
    ] as never[];
    const inactive = priceItems(lines, [product(P1, { active: false }), product(P2)]);
    expect(inactive.ok ? [] : fields(inactive.violations)).toEqual(["items[0].product_id"]);
    const deleted = priceItems(lines, [
      product(P1),
      product(P2, { deleteTime: timestampFromDate(new Date()) }),
    ]);
    expect(deleted.ok ? [] : fields(deleted.violations)).toEqual(["items[1].product_id"]);
    const unknown = priceItems(lines, [product(P1)]);
    expect(unknown.ok ? [] : fields(unknown.violations)).toEqual(["items[1].product_id"]);
    const mixed = priceItems(lines, [
      product(P1),
      product(P2, { price: { amountMinor: 5n, currencyCode: "USD" } }),
    ]);
    expect(mixed.ok).toBe(false);
    if (!mixed.ok) expect(mixed.violations[0]?.description).toMatch(/one currency/);
  });
});
