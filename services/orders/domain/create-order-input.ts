import { create } from "@bufbuild/protobuf";
import type { Product } from "../../../gen/commerce/catalog/v1/product_pb.js";
import type { PostalAddress } from "../../../gen/commerce/common/v1/address_pb.js";
import { type Money, MoneySchema } from "../../../gen/commerce/common/v1/money_pb.js";
import { type OrderItem, OrderItemSchema } from "../../../gen/commerce/orders/v1/order_pb.js";
import type { CreateOrderRequest } from "../../../gen/commerce/orders/v1/order_service_pb.js";
import type { FieldViolation } from "../../../platform/errors/domain-errors.js";

/** Line items per order (the catalog reserves at most 100 items at once too). */
export const MAX_LINE_ITEMS = 100;
export const MAX_QUANTITY = 1_000n;
const MAX_INT64 = 2n ** 63n - 1n;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** C0/C1 control characters and the line/paragraph separators. */
export function hasControlCharacters(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029) return true;
  }
  return false;
}

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

function text(
  violations: FieldViolation[],
  field: string,
  value: string,
  rule: { required?: boolean; max: number },
): void {
  if (value.trim() === "") {
    if (rule.required) violations.push({ field, description: "is required" });
    return;
  }
  if ([...value].length > rule.max) {
    violations.push({ field, description: `must be at most ${rule.max} characters` });
  } else if (hasControlCharacters(value)) {
    violations.push({ field, description: "must not contain control characters" });
  }
}

export function validateAddress(
  address: PostalAddress | undefined,
  field = "shipping_address",
): FieldViolation[] {
  const violations: FieldViolation[] = [];
  if (!address) return [{ field, description: "is required" }];
  text(violations, `${field}.recipient_name`, address.recipientName, { required: true, max: 200 });
  if (address.addressLines.length === 0 || address.addressLines.length > 4) {
    violations.push({ field: `${field}.address_lines`, description: "must have 1 to 4 lines" });
  }
  address.addressLines.slice(0, 4).forEach((line, i) => {
    text(violations, `${field}.address_lines[${i}]`, line, { required: true, max: 200 });
  });
  text(violations, `${field}.locality`, address.locality, { required: true, max: 100 });
  text(violations, `${field}.administrative_area`, address.administrativeArea, { max: 100 });
  text(violations, `${field}.postal_code`, address.postalCode, { max: 20 });
  if (!/^[A-Z]{2}$/.test(address.regionCode)) {
    violations.push({
      field: `${field}.region_code`,
      description: "must be a two-letter upper-case ISO 3166-1 code",
    });
  }
  if (address.phoneNumber !== "" && !/^\+[1-9]\d{1,14}$/.test(address.phoneNumber)) {
    violations.push({ field: `${field}.phone_number`, description: "must be in E.164 format" });
  }
  return violations;
}

/** Checks everything that needs no catalog; nothing is written when this finds a problem. */
export function validateCreateOrder(request: CreateOrderRequest): FieldViolation[] {
  const violations: FieldViolation[] = [];
  if (!isUuid(request.requestId)) {
    violations.push({ field: "request_id", description: "must be a UUID" });
  }
  const items = request.items;
  if (items.length === 0) {
    violations.push({ field: "items", description: "must contain at least one line" });
  } else if (items.length > MAX_LINE_ITEMS) {
    // One violation, not one per line: 10,000 lines give one clear message.
    violations.push({
      field: "items",
      description: `must contain at most ${MAX_LINE_ITEMS} lines`,
    });
  } else {
    const seen = new Map<string, number>();
    items.forEach((item, i) => {
      if (!isUuid(item.productId)) {
        violations.push({ field: `items[${i}].product_id`, description: "must be a UUID" });
      } else {
        const key = item.productId.toLowerCase();
        const first = seen.get(key);
        if (first !== undefined) {
          violations.push({
            field: `items[${i}].product_id`,
            description: `repeats items[${first}]; order each product once`,
          });
        } else {
          seen.set(key, i);
        }
      }
      if (item.quantity < 1n || item.quantity > MAX_QUANTITY) {
        violations.push({
          field: `items[${i}].quantity`,
          description: `must be between 1 and ${MAX_QUANTITY}`,
        });
      }
    });
  }
  violations.push(...validateAddress(request.shippingAddress));
  const token = request.paymentMethodToken;
  if (token === "") {
    violations.push({ field: "payment_method_token", description: "is required" });
  } else if (token.length > 256 || !/^[\x21-\x7e]+$/.test(token)) {
    violations.push({
      field: "payment_method_token",
      description: "must be 1 to 256 printable characters without spaces",
    });
  }
  return violations;
}

export type PricingResult =
  | { ok: true; items: OrderItem[]; total: Money }
  | { ok: false; violations: FieldViolation[] };

/**
 * Prices the lines with the catalog's products (in request order). Deleted or
 * inactive products and mixed currencies are refused; the client never
 * supplies a price.
 */
export function priceItems(
  lines: CreateOrderRequest["items"],
  products: readonly Product[],
): PricingResult {
  const violations: FieldViolation[] = [];
  const byId = new Map(products.map((p) => [p.id.toLowerCase(), p]));
  const items: OrderItem[] = [];
  let currency: string | undefined;
  let total = 0n;
  lines.forEach((line, i) => {
    const product = byId.get(line.productId.toLowerCase());
    const field = `items[${i}].product_id`;
    if (!product) {
      violations.push({ field, description: "unknown product" });
      return;
    }
    if (product.deleteTime !== undefined || !product.active) {
      violations.push({ field, description: "product is not available for ordering" });
      return;
    }
    const price = product.price;
    if (!price || price.currencyCode === "" || price.amountMinor < 0n) {
      violations.push({ field, description: "product has no valid price" });
      return;
    }
    if (currency === undefined) currency = price.currencyCode;
    else if (price.currencyCode !== currency) {
      violations.push({
        field,
        description: `priced in ${price.currencyCode}; every line of an order must use one currency (${currency})`,
      });
      return;
    }
    const lineTotal = price.amountMinor * line.quantity;
    total += lineTotal;
    items.push(
      create(OrderItemSchema, {
        productId: product.id,
        sku: product.sku,
        name: product.name,
        quantity: line.quantity,
        unitPrice: create(MoneySchema, { amountMinor: price.amountMinor, currencyCode: currency }),
        lineTotal: create(MoneySchema, { amountMinor: lineTotal, currencyCode: currency }),
      }),
    );
  });
  if (violations.length > 0) return { ok: false, violations };
  if (total > MAX_INT64) {
    return { ok: false, violations: [{ field: "items", description: "order total is too large" }] };
  }
  return {
    ok: true,
    items,
    total: create(MoneySchema, { amountMinor: total, currencyCode: currency ?? "" }),
  };
}
