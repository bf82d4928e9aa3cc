import type { Product } from "../../../gen/commerce/catalog/v1/product_pb.js";
import { isKnownCurrency } from "../../../platform/money/currencies.js";
import { MAX_PRICE_MINOR } from "../domain/price.js";
import { checkText, optionalUuid, type Violations } from "../domain/validation.js";

/** A product's writable fields, validated and normalised. */
export interface ProductFields {
  sku: string;
  name: string;
  description: string;
  priceMinor: bigint;
  currency: string;
  categoryId: string | null;
  attributes: Record<string, string>;
  active: boolean;
}

export type ProductField = keyof ProductFields;

/** FieldMask paths of UpdateProduct and the fields they change. */
export const MASK_PATHS: Record<string, ProductField[]> = {
  sku: ["sku"],
  name: ["name"],
  description: ["description"],
  price: ["priceMinor", "currency"],
  "price.amount_minor": ["priceMinor"],
  "price.currency_code": ["currency"],
  category_id: ["categoryId"],
  attributes: ["attributes"],
  active: ["active"],
};

export const OUTPUT_ONLY_PATHS = new Set(["id", "create_time", "update_time", "delete_time"]);

export const LIMITS = {
  name: 200,
  description: 10_000,
  attributes: 50,
  attributeKey: 64,
  attributeValue: 500,
} as const;

const SKU = /^[A-Za-z0-9._-]{1,64}$/;

export function checkSku(v: Violations, field: string, sku: string): void {
  if (sku === "") v.add(field, "is required");
  else if (!SKU.test(sku)) v.add(field, "must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
}

export function checkCurrency(v: Violations, field: string, code: string): void {
  if (code === "") v.add(field, "is required");
  else if (!isKnownCurrency(code)) v.add(field, "must be a known upper-case ISO 4217 code");
}

export function checkAmount(v: Violations, field: string, amount: bigint): void {
  if (amount < 0n) v.add(field, "must not be negative");
  else if (amount > MAX_PRICE_MINOR) v.add(field, `must be at most ${MAX_PRICE_MINOR}`);
}

function checkAttributes(v: Violations, field: string, attributes: Record<string, string>): void {
  const entries = Object.entries(attributes);
  if (entries.length > LIMITS.attributes) {
    v.add(field, `must have at most ${LIMITS.attributes} entries`);
    return;
  }
  for (const [key, value] of entries) {
    if (key === "" || key.length > LIMITS.attributeKey || key.includes("\u0000")) {
      v.add(
        `${field}[${JSON.stringify(key.slice(0, 80))}]`,
        `key must have 1 to ${LIMITS.attributeKey} characters`,
      );
    }
    checkText(v, `${field}[${JSON.stringify(key.slice(0, 80))}]`, value, {
      min: 0,
      max: LIMITS.attributeValue,
    });
  }
}

/**
 * Validates the named fields of `product` (all of them for a create) and
 * returns them normalised. Violations name fields as `<prefix>.<field>`.
 */
export function readProductFields(
  v: Violations,
  product: Product,
  prefix: string,
  only?: ReadonlySet<ProductField>,
): Partial<ProductFields> {
  const wants = (field: ProductField) => !only || only.has(field);
  const out: Partial<ProductFields> = {};
  if (wants("sku")) {
    checkSku(v, `${prefix}.sku`, product.sku);
    out.sku = product.sku;
  }
  if (wants("name")) {
    const name = product.name.trim();
    checkText(v, `${prefix}.name`, name, { min: 1, max: LIMITS.name });
    out.name = name;
  }
  if (wants("description")) {
    checkText(v, `${prefix}.description`, product.description, { min: 0, max: LIMITS.description });
    out.description = product.description;
  }
  if (wants("priceMinor") || wants("currency")) {
    if (!product.price) {
      v.add(`${prefix}.price`, "is required");
    } else {
      if (wants("priceMinor")) {
        checkAmount(v, `${prefix}.price.amount_minor`, product.price.amountMinor);
        out.priceMinor = product.price.amountMinor;
      }
      if (wants("currency")) {
        checkCurrency(v, `${prefix}.price.currency_code`, product.price.currencyCode);
        out.currency = product.price.currencyCode;
      }
    }
  }
  if (wants("categoryId")) {
    out.categoryId = optionalUuid(v, `${prefix}.category_id`, product.categoryId) ?? null;
  }
  if (wants("attributes")) {
    checkAttributes(v, `${prefix}.attributes`, product.attributes);
    out.attributes = { ...product.attributes };
  }
  if (wants("active")) out.active = product.active;
  return out;
}
