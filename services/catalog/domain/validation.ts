import type { FieldViolation } from "../../../platform/errors/domain-errors.js";
import { InvalidArgumentError } from "../../../platform/errors/domain-errors.js";

/**
 * Collects every problem of a request before failing, so a client fixes all
 * fields in one round trip (google.rpc.BadRequest field violations).
 */
export class Violations {
  readonly list: FieldViolation[] = [];
  add(field: string, description: string): void {
    this.list.push({ field, description });
  }
  get empty(): boolean {
    return this.list.length === 0;
  }
  throwIfAny(): void {
    if (this.list.length > 0) throw new InvalidArgumentError(this.list);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** Length in characters (code points), not UTF-16 units. */
export function charLength(value: string): number {
  let n = 0;
  for (const _ of value) n++;
  return n;
}

/** Checks a required UUID field; returns it lower-cased. */
export function requireUuid(v: Violations, field: string, value: string): string {
  if (value === "") v.add(field, "is required");
  else if (!isUuid(value)) v.add(field, "must be a UUID");
  return value.toLowerCase();
}

export function optionalUuid(v: Violations, field: string, value: string): string | undefined {
  if (value === "") return undefined;
  if (!isUuid(value)) v.add(field, "must be a UUID");
  return value.toLowerCase();
}

export function checkText(
  v: Violations,
  field: string,
  value: string,
  limits: { min: number; max: number },
): void {
  // Postgres text cannot hold NUL; other control characters are allowed.
  if (value.includes("\u0000")) {
    v.add(field, "must not contain NUL characters");
    return;
  }
  // Cheap bound first: a 1 MB string is rejected without counting code points.
  const length = value.length > limits.max * 2 ? value.length : charLength(value);
  if (length < limits.min) {
    v.add(field, limits.min === 1 ? "is required" : `must have at least ${limits.min} characters`);
  } else if (length > limits.max) {
    v.add(field, `must have at most ${limits.max} characters`);
  }
}
