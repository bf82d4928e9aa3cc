import { parseArgs } from "node:util";
import { loadServiceConfig } from "../../../platform/config/service-config.js";
import { createDatabase, migrateDatabase } from "../../../platform/db/postgres.js";
import { InvalidArgumentError, isDomainError } from "../../../platform/errors/domain-errors.js";
import { loadIdentityConfig } from "../identity-config.js";
import { createIdentityCore } from "../identity-core.js";
import { createAccount } from "../users/create-account.js";

/**
 * Creates an admin account — the only way to get the first admin (there is
 * no open endpoint for it). The password comes from IDENTITY_ADMIN_PASSWORD
 * or stdin, never from the command line (it would land in shell history and
 * the process list).
 *
 *   printf '%s' "$PASSWORD" | npm run identity:create-admin -- --email ops@example.com
 *
 * Uses the identity service's configuration (DATABASE_URL, DB_SCHEMA, the
 * IDENTITY_* keys); applies pending migrations; emits UserCreated through the
 * outbox, which the running service's relay publishes.
 */
async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) {
    throw new Error("pipe the password on stdin or set IDENTITY_ADMIN_PASSWORD");
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > 4096) throw new Error("password on stdin is too long");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      email: { type: "string" },
      "first-name": { type: "string", default: "Admin" },
      "last-name": { type: "string", default: "User" },
    },
  });
  if (!values.email) {
    process.stderr.write(
      "usage: npm run identity:create-admin -- --email <email> [--first-name X --last-name Y]\n",
    );
    return 2;
  }
  const env = process.env;
  const service = loadServiceConfig("identity", env);
  const config = loadIdentityConfig(env);
  const password = env.IDENTITY_ADMIN_PASSWORD ?? (await readStdin());
  await migrateDatabase(
    { url: service.databaseUrl, schema: service.dbSchema },
    new URL("../migrations/", import.meta.url).pathname,
  );
  const database = createDatabase({
    url: service.databaseUrl,
    schema: service.dbSchema,
    maxConnections: 2,
  });
  const logger = {
    info: () => {},
    debug: () => {},
    warn: (obj: object, msg?: string) =>
      process.stderr.write(`${msg ?? ""} ${JSON.stringify(obj)}\n`),
    error: (obj: object, msg?: string) =>
      process.stderr.write(`${msg ?? ""} ${JSON.stringify(obj)}\n`),
  };
  try {
    const deps = await createIdentityCore({ config, sql: database.sql, redis: undefined, logger });
    const user = await createAccount(
      deps,
      {
        email: values.email,
        password,
        firstName: values["first-name"]!,
        lastName: values["last-name"]!,
      },
      ["admin"],
    );
    process.stdout.write(`${JSON.stringify({ id: user.id, roles: user.roles })}\n`);
    return 0;
  } catch (error) {
    if (!isDomainError(error)) throw error;
    const details =
      error instanceof InvalidArgumentError
        ? error.violations.map((v) => `${v.field} ${v.description}`).join("; ")
        : "";
    process.stderr.write(`create-admin: ${error.message}${details ? `: ${details}` : ""}\n`);
    return 1;
  } finally {
    await database.close();
  }
}

process.exitCode = await main().catch((error: unknown) => {
  process.stderr.write(`create-admin: ${(error as Error).message}\n`);
  return 1;
});
