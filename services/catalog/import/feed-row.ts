import { isKnownCurrency } from "../../../platform/money/currencies.js";
import { PriceFormatError, parsePriceToMinor } from "../domain/price.js";
import { charLength } from "../domain/validation.js";
import { LIMITS } from "../products/product-fields.js";

/** A feed row after validation and normalisation, ready to upsert. */
export interface ImportRow {
  line: number;
  sku: string;
  name: string;
  description: string;
  priceMinor: bigint;
  currency: string;
  categoryId: string | null;
  attributes: Record<string, string>;
  active: boolean;
  /** Absolute on-hand stock, when the feed carries it. */
  stock: number | undefined;
}

export type RowResult = { ok: true; row: ImportRow } | { ok: false; reason: string };

const SKU = /^[A-Za-z0-9._-]{1,64}$/;
const MAX_STOCK = 1_000_000_000;

function text(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value.trim();
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

function readBool(value: unknown): boolean | undefined {
  if (typeof value === "boolean") return value;
  const t = text(value).toLowerCase();
  if (t === "") return true;
  if (["true", "1", "yes", "y"].includes(t)) return true;
  if (["false", "0", "no", "n"].includes(t)) return false;
  return undefined;
}

function readAttributes(value: unknown): Record<string, string> | string {
  if (value === undefined || value === null || value === "") return {};
  let object = value;
  if (typeof value === "string") {
    try {
      object = JSON.parse(value);
    } catch {
      return "attributes is not a JSON object";
    }
  }
  if (typeof object !== "object" || object === null || Array.isArray(object))
    return "attributes is not a JSON object";
  const entries = Object.entries(object as Record<string, unknown>);
  if (entries.length > LIMITS.attributes)
    return `attributes has more than ${LIMITS.attributes} entries`;
  const out: Record<string, string> = {};
  for (const [key, raw] of entries) {
    const k = key.trim();
    if (k === "" || k.length > LIMITS.attributeKey)
      return `attribute key "${k.slice(0, 80)}" must have 1 to ${LIMITS.attributeKey} characters`;
    if (raw !== null && typeof raw === "object")
      return `attribute "${k}" must be a string, number or boolean`;
    const v = text(raw);
    if (charLength(v) > LIMITS.attributeValue)
      return `attribute "${k}" is longer than ${LIMITS.attributeValue} characters`;
    out[k] = v;
  }
  return out;
}

/**
 * Validates and normalises one feed row: trims text, upper-cases the
 * currency (ISO 4217, shipped list), parses the price exactly ("12.34" →
 * 1234 minor units, never via floats), resolves the category slug.
 * Every problem becomes one reject reason; the run goes on.
 */
export function normaliseRow(
  line: number,
  fields: Record<string, unknown>,
  categoryIdBySlug: ReadonlyMap<string, string>,
): RowResult {
  const fail = (reason: string): RowResult => ({ ok: false, reason });
  const sku = text(fields.sku);
  if (!SKU.test(sku))
    return fail(
      sku === "" ? "sku is missing" : "sku must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
    );
  const name = text(fields.name);
  if (name === "") return fail("name is missing");
  if (charLength(name) > LIMITS.name) return fail(`name is longer than ${LIMITS.name} characters`);
  const description = text(fields.description);
  if (description.length > LIMITS.description && charLength(description) > LIMITS.description) {
    return fail(`description is longer than ${LIMITS.description} characters`);
  }
  if (`${sku}${name}${description}`.includes("\u0000")) return fail("text contains NUL characters");
  const currency = text(fields.currency).toUpperCase();
  if (currency === "") return fail("currency is missing");
  if (!isKnownCurrency(currency)) return fail(`unknown currency "${currency.slice(0, 10)}"`);
  const priceText = text(fields.price);
  if (priceText === "") return fail("price is missing");
  let priceMinor: bigint;
  try {
    priceMinor = parsePriceToMinor(priceText, currency);
  } catch (error) {
    if (error instanceof PriceFormatError) return fail(error.message);
    throw error;
  }
  const slug = text(fields.category).toLowerCase();
  let categoryId: string | null = null;
  if (slug !== "") {
    const id = categoryIdBySlug.get(slug);
    if (!id) return fail(`unknown category "${slug.slice(0, 100)}"`);
    categoryId = id;
  }
  const active = readBool(fields.active);
  if (active === undefined) return fail("active must be true or false");
  const attributes = readAttributes(fields.attributes);
  if (typeof attributes === "string") return fail(attributes);
  let stock: number | undefined;
  const stockText = text(fields.stock);
  if (stockText !== "") {
    if (!/^\d+$/.test(stockText) || Number(stockText) > MAX_STOCK) {
      return fail(`stock must be a whole number from 0 to ${MAX_STOCK}`);
    }
    stock = Number(stockText);
  }
  return {
    ok: true,
    row: {
      line,
      sku,
      name,
      description,
      priceMinor,
      currency,
      categoryId,
      attributes,
      active,
      stock,
    },
  };
}
