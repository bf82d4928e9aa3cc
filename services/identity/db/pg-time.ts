/**
 * The service shares its postgres.js client with drizzle, which turns off
 * postgres.js' date conversion on that client (timestamps travel as text).
 * Raw queries therefore pass ISO strings and convert what they read here.
 */
export function pgTime(value: string | Date): Date {
  if (value instanceof Date) return value;
  return new Date(value.replace(" ", "T").replace(/([+-]\d\d)$/, "$1:00"));
}

export function pgTimeOrNull(value: string | Date | null): Date | null {
  return value === null ? null : pgTime(value);
}

export function toPg(date: Date): string {
  return date.toISOString();
}
