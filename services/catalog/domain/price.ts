import { currencyExponent } from "../../../platform/money/currencies.js";

/** Largest amount accepted anywhere: fits int64 and keeps sums far from overflow. */
export const MAX_PRICE_MINOR = 10n ** 15n;

export class PriceFormatError extends Error {
  override name = "PriceFormatError";
}

/**
 * Parses a decimal price such as "12.34" into minor units of `currency`
 * exactly, with string arithmetic only (a float would turn 0.29 into
 * 28.999…). Rejects negatives, exponents, thousands separators and more
 * decimals than the currency has.
 */
export function parsePriceToMinor(text: string, currency: string): bigint {
  const exponent = currencyExponent(currency);
  if (exponent === undefined) throw new PriceFormatError(`unknown currency "${currency}"`);
  const trimmed = text.trim();
  const match = /^(\d+)(?:\.(\d*))?$/.exec(trimmed);
  if (!match) {
    throw new PriceFormatError(
      trimmed.startsWith("-")
        ? "price must not be negative"
        : `price "${trimmed}" is not a decimal number`,
    );
  }
  const whole = match[1]!;
  const fraction = (match[2] ?? "").replace(/0+$/, "");
  if (fraction.length > exponent) {
    throw new PriceFormatError(
      `${currency} prices have at most ${exponent} decimals, got "${trimmed}"`,
    );
  }
  const minor =
    BigInt(whole) * 10n ** BigInt(exponent) + BigInt(fraction.padEnd(exponent, "0") || "0");
  if (minor > MAX_PRICE_MINOR) throw new PriceFormatError("price is too large");
  return minor;
}
