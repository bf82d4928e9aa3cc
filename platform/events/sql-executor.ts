import { type SQL, type SQLWrapper, sql } from "drizzle-orm";
import type { Sql, TransactionSql } from "postgres";

/**
 * The event backbone writes inside whatever transaction the caller already
 * holds: a drizzle transaction (`db.transaction(async (tx) => …)`) or a raw
 * postgres.js one (`sql.begin(async (tx) => …)`). Queries are written once as
 * `$n` text and run through either.
 */
export interface DrizzleExecutor {
  execute(query: SQLWrapper): PromiseLike<unknown>;
}

export type SqlExecutor = Sql | TransactionSql | DrizzleExecutor;

function isPostgresJs(executor: SqlExecutor): executor is Sql | TransactionSql {
  return typeof executor === "function" && "unsafe" in executor;
}

function toDrizzle(text: string, params: readonly unknown[]): SQL {
  const chunks: SQL[] = [];
  const placeholder = /\$(\d+)/g;
  let last = 0;
  for (const match of text.matchAll(placeholder)) {
    chunks.push(sql.raw(text.slice(last, match.index)));
    const index = Number(match[1]) - 1;
    if (index < 0 || index >= params.length) throw new Error(`missing parameter $${index + 1}`);
    chunks.push(sql`${params[index]}`);
    last = match.index + match[0].length;
  }
  chunks.push(sql.raw(text.slice(last)));
  return sql.join(chunks);
}

export async function runQuery<Row extends Record<string, unknown>>(
  executor: SqlExecutor,
  text: string,
  params: readonly unknown[],
): Promise<Row[]> {
  if (isPostgresJs(executor)) {
    // biome-ignore lint/suspicious/noExplicitAny: postgres.js types parameters loosely
    const rows = await executor.unsafe(text, params as any[], { prepare: true });
    return rows as unknown as Row[];
  }
  const result = await executor.execute(toDrizzle(text, params));
  // drizzle over postgres.js returns the driver's row list; over node-postgres
  // it returns { rows }.
  if (Array.isArray(result)) return result as Row[];
  if (result && typeof result === "object" && "rows" in result) {
    return (result as { rows: Row[] }).rows;
  }
  return [];
}
