import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres, { type Sql } from "postgres";

/**
 * Each service owns one Postgres schema. Tables are declared without a schema
 * and resolved through `search_path`, so the same code and migrations run in
 * the service's production schema and in a throw-away schema per test run.
 */
export interface DatabaseOptions {
  url: string;
  /** Optional read replica; reads that tolerate lag may use it. */
  replicaUrl?: string | undefined;
  schema: string;
  maxConnections?: number;
  applicationName?: string;
}

export interface Database {
  readonly schema: string;
  /** Raw postgres.js client on the primary (hot paths, LISTEN/NOTIFY). */
  readonly sql: Sql;
  /** drizzle over the primary: all writes and reads-after-write. */
  readonly db: PostgresJsDatabase;
  /** drizzle over the replica when configured, else the primary. */
  readonly readDb: PostgresJsDatabase;
  readonly readSql: Sql;
  ping(): Promise<void>;
  close(): Promise<void>;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function assertSchemaName(schema: string): void {
  if (!SCHEMA_NAME.test(schema)) throw new Error(`invalid schema name "${schema}"`);
}

function connect(url: string, options: DatabaseOptions): Sql {
  return postgres(url, {
    max: options.maxConnections ?? 10,
    idle_timeout: 30,
    connect_timeout: 10,
    onnotice: () => {},
    connection: {
      search_path: `${options.schema},public`,
      application_name: options.applicationName ?? options.schema,
    },
  });
}

export function createDatabase(options: DatabaseOptions): Database {
  assertSchemaName(options.schema);
  const sql = connect(options.url, options);
  const readSql = options.replicaUrl ? connect(options.replicaUrl, options) : sql;
  const db = drizzle(sql);
  const readDb = options.replicaUrl ? drizzle(readSql) : db;
  return {
    schema: options.schema,
    sql,
    db,
    readDb,
    readSql,
    async ping() {
      await sql`select 1`;
      if (readSql !== sql) await readSql`select 1`;
    },
    async close() {
      await sql.end({ timeout: 5 });
      if (readSql !== sql) await readSql.end({ timeout: 5 });
    },
  };
}

/**
 * Applies the committed drizzle-kit migrations of a service into its schema.
 * Safe to run from several replicas at once: a session advisory lock on a
 * single dedicated connection serialises them.
 */
export async function migrateDatabase(
  options: Pick<DatabaseOptions, "url" | "schema">,
  migrationsFolder: string,
): Promise<void> {
  assertSchemaName(options.schema);
  const single = connect(options.url, { ...options, maxConnections: 1 });
  const lockKey = `migrate:${options.schema}`;
  try {
    await single`select pg_advisory_lock(hashtext(${lockKey}))`;
    await single.unsafe(`create schema if not exists "${options.schema}"`);
    await migrate(drizzle(single), {
      migrationsFolder,
      migrationsSchema: options.schema,
      migrationsTable: "__drizzle_migrations",
    });
    await single`select pg_advisory_unlock(hashtext(${lockKey}))`;
  } finally {
    await single.end({ timeout: 5 });
  }
}
