import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import {
  checkNats,
  checkPostgres,
  checkRedis,
  databaseName,
  ensureDatabase,
  ensureInfra,
  InfraError,
  infraTarget,
  installCommand,
  isLocalHost,
  JetStreamDisabledError,
  localNatsCommand,
  localRedisCommand,
} from "./infra.js";
import { moduleRoot } from "./mesh-config.js";
import { type ManagedProcess, startProcess } from "./processes.js";
import { freePort } from "./test-support/free-port.js";

const MACHINE_PG = "postgres://postgres@127.0.0.1:5432/test";
const quiet = () => {};

describe("infrastructure checks against the machine's servers", () => {
  it("accepts the running Postgres, Redis and NATS JetStream", async () => {
    await expect(checkPostgres(MACHINE_PG)).resolves.toBeUndefined();
    await expect(checkRedis("redis://127.0.0.1:6379")).resolves.toBeUndefined();
    await expect(checkNats("nats://127.0.0.1:4222")).resolves.toBeUndefined();
  });

  it("creates the database named in the URL once", async () => {
    const name = `mesh_t_${Math.random().toString(36).slice(2, 10)}`;
    const url = `postgres://postgres@127.0.0.1:5432/${name}`;
    try {
      expect(await ensureDatabase(url)).toBe(true);
      expect(await ensureDatabase(url)).toBe(false);
      const sql = postgres(url, { max: 1 });
      expect((await sql`select current_database() as db`)[0]?.["db"]).toBe(name);
      await sql.end();
    } finally {
      const admin = postgres(MACHINE_PG, { max: 1 });
      await admin.unsafe(`drop database if exists "${name}"`);
      await admin.end();
    }
  });

  it("rejects a NATS server without JetStream", async () => {
    const port = await freePort();
    const nats = startProcess({
      tag: "nats",
      command: "nats-server",
      args: ["-a", "127.0.0.1", "-p", String(port)],
      cwd: tmpdir(),
      env: process.env,
      print: quiet,
    });
    try {
      const url = `nats://127.0.0.1:${port}`;
      let error: unknown;
      for (let i = 0; i < 100; i++) {
        error = await checkNats(url).catch((e: unknown) => e);
        if (error instanceof JetStreamDisabledError) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(error).toBeInstanceOf(JetStreamDisabledError);
      const failure = await ensureInfra({
        config: {
          databaseUrl: MACHINE_PG,
          natsUrl: url,
          redisUrl: "redis://127.0.0.1:6379",
          dataDir: tmpdir(),
          repoRoot: moduleRoot(),
        },
        print: quiet,
        onStarted: () => {
          throw new Error("must not start anything");
        },
      }).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(InfraError);
      expect((failure as Error).message).toContain(
        `NATS at ${url} is listening but not usable: the server answers but JetStream is not enabled`,
      );
    } finally {
      await nats.stop(5000);
    }
  });
});

describe("infrastructure decisions", () => {
  it("parses targets with default ports and tells local hosts", () => {
    expect(infraTarget("postgres", "postgres://u:p@127.0.0.1/db")).toMatchObject({
      host: "127.0.0.1",
      port: 5432,
    });
    expect(infraTarget("nats", "nats://[::1]:4333")).toMatchObject({ host: "::1", port: 4333 });
    expect(isLocalHost("localhost")).toBe(true);
    expect(isLocalHost("127.0.0.2")).toBe(true);
    expect(isLocalHost("db.internal")).toBe(false);
    expect(databaseName("postgres://p@h:1/my%20db")).toBe("my db");
  });

  it("stops with the exact install command when a server binary is missing", () => {
    const target = infraTarget("nats", "nats://127.0.0.1:4999");
    const none = () => undefined;
    const expected = installCommand("nats");
    expect(expected).toMatch(
      /^(sudo )?(apt-get install -y|dnf install -y|apk add|brew install) nats-server$/,
    );
    expect(() => localNatsCommand(target, tmpdir(), none)).toThrow(
      new InfraError(
        "NATS is not reachable at nats://127.0.0.1:4999 and nats-server is not installed.\n" +
          `Install it with:  ${expected}\n` +
          "or point NATS_URL at a running NATS server with JetStream enabled.",
      ),
    );
    expect(() =>
      localRedisCommand(infraTarget("redis", "redis://127.0.0.1:4998"), tmpdir(), none),
    ).toThrow(/Install it with: {2}(sudo )?\S+ (install -y|add) redis/);
  });

  it("refuses to start a server for an address on another machine", async () => {
    // `.invalid` never resolves (RFC 2606), so nothing leaves this machine.
    const error = await ensureInfra({
      config: {
        databaseUrl: "postgres://postgres:secret@db.invalid:5432/commerce",
        natsUrl: "nats://127.0.0.1:4222",
        redisUrl: "redis://127.0.0.1:6379",
        dataDir: tmpdir(),
        repoRoot: moduleRoot(),
      },
      print: quiet,
      onStarted: () => {
        throw new Error("must not start anything");
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InfraError);
    expect((error as Error).message).toBe(
      "Postgres is not reachable at postgres://postgres:***@db.invalid:5432/commerce. It is not on this " +
        "machine, so it cannot be started here: start it there, or unset DATABASE_URL to use a local one.",
    );
  });
});

describe("local servers when nothing listens at the configured URLs", () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), "mesh-infra-"));
  const started: ManagedProcess[] = [];
  afterAll(async () => {
    for (const child of started.reverse()) await child.stop(20_000);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("starts embedded Postgres, nats-server -js and redis-server with data under the data dir, and stops them", async () => {
    const [pgPort, natsPort, redisPort] = [await freePort(), await freePort(), await freePort()];
    const config = {
      databaseUrl: `postgres://postgres@127.0.0.1:${pgPort}/commerce`,
      natsUrl: `nats://127.0.0.1:${natsPort}`,
      redisUrl: `redis://127.0.0.1:${redisPort}`,
      dataDir,
      repoRoot: moduleRoot(),
    };
    const reports = await ensureInfra({
      config,
      print: quiet,
      onStarted: (child) => started.push(child),
    });
    expect(reports.map((r) => [r.kind, r.started])).toEqual([
      ["postgres", true],
      ["nats", true],
      ["redis", true],
    ]);
    expect(started.map((c) => c.tag).sort()).toEqual(["nats", "postgres", "redis"]);
    expect(await ensureDatabase(config.databaseUrl)).toBe(true);
    const sql = postgres(config.databaseUrl, { max: 1 });
    expect((await sql`select current_database() as db`)[0]?.["db"]).toBe("commerce");
    await sql.end();
    if (process.getuid?.() === 0) {
      const postgresUid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }));
      expect(statSync(path.join(dataDir, "postgres")).uid).toBe(postgresUid);
    }
    expect(statSync(path.join(dataDir, "nats")).isDirectory()).toBe(true);
    expect(statSync(path.join(dataDir, "redis")).isDirectory()).toBe(true);

    // Each stops on SIGTERM and the port is free again afterwards.
    for (const child of started.splice(0).reverse()) {
      expect(await child.stop(20_000)).toBe("exited");
    }
    await expect(checkPostgres(config.databaseUrl)).rejects.toThrow();
    await expect(checkRedis(config.redisUrl)).rejects.toThrow();
  }, 120_000);
});
