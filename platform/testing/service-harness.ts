import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { type RunningService, runService, type ServiceDefinition } from "../service/run-service.js";

export const TEST_DATABASE_URL =
  process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** A schema name no other test run uses. */
export function uniqueSchema(prefix = "t"): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;
}

/**
 * Runs a real service in this process, exactly as main.ts would (config,
 * migrations, server on a free port, background tasks), against the machine's
 * Postgres/NATS/Redis but in a throw-away schema. `stop()` shuts it down and
 * drops the schema.
 */
export async function startTestService(
  definition: ServiceDefinition,
  env: Record<string, string> = {},
): Promise<RunningService & { url: string; schema: string; stop(): Promise<void> }> {
  const schema = env.DB_SCHEMA ?? uniqueSchema(definition.name);
  const running = await runService(definition, {
    handleSignals: false,
    env: {
      ...process.env,
      PORT: "0",
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
      DATABASE_URL: TEST_DATABASE_URL,
      DB_SCHEMA: schema,
      ...env,
    },
  });
  await running.ready;
  return {
    ...running,
    url: `http://127.0.0.1:${running.port}`,
    schema,
    async stop() {
      await running.shutdown("test finished");
      const sql = postgres(env.DATABASE_URL ?? TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
      await sql.unsafe(`drop schema if exists "${schema}" cascade`);
      await sql.end();
    },
  };
}
