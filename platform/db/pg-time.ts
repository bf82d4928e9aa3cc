/**
 * drizzle switches off postgres.js' timestamp conversion on the client it
 * wraps, and services share that client for raw SQL: timestamps must be sent
 * as ISO text and come back as text. These helpers are the one place that
 * knows.
 */
export function toPgTime(date: Date): string {
  return date.toISOString();
}

export function fromPgTime(value: string | Date): Date {
  if (value instanceof Date) return value;
  // Postgres text output ("2026-01-02 03:04:05.123456+00") is not ISO 8601 for Date.parse in every runtime.
  return new Date(
    value.includes("T")
      ? value
      : `${value.replace(" ", "T")}${/[+-]\d\d$/.test(value) ? ":00" : ""}`,
  );
}

export function fromPgTimeOrNull(value: string | Date | null | undefined): Date | null {
  return value === null || value === undefined ? null : fromPgTime(value);
}
