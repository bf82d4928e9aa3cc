/** The fields of a postgres.js PostgresError this service branches on. */
export interface PgErrorInfo {
  code: string;
  constraint: string | undefined;
}

export function pgError(error: unknown): PgErrorInfo | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const e = error as { name?: unknown; code?: unknown; constraint_name?: unknown };
  if (e.name !== "PostgresError" || typeof e.code !== "string") return undefined;
  return {
    code: e.code,
    constraint: typeof e.constraint_name === "string" ? e.constraint_name : undefined,
  };
}

export const UNIQUE_VIOLATION = "23505";
export const FOREIGN_KEY_VIOLATION = "23503";
export const CHECK_VIOLATION = "23514";
