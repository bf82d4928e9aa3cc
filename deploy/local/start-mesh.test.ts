import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import {
  HealthCheckRequestSchema,
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "../../gen/health/v1/health_pb.js";
import { isProcessAlive, readMeshLock } from "./lock.js";
import { READY_LINE } from "./mesh.js";
import { moduleRoot, SERVICE_NAMES } from "./mesh-config.js";
import { isHttpReady, tcpReachable, waitUntil } from "./readiness.js";
import { freePort, freePortRange } from "./test-support/free-port.js";
import { spawnMesh } from "./test-support/mesh-run.js";

/**
 * The whole mesh as `npm start` runs it: the real services and edge as
 * processes. Isolation: its own database on the machine's Postgres, its own
 * schema prefix and ports, and NATS/Redis URLs on free ports so the starter
 * launches private nats-server/redis-server instances (exercising that path
 * too) instead of sharing streams and keys with other test files.
 */

const root = moduleRoot();
const id = Math.random().toString(36).slice(2, 10);
const database = `mesh_it_${id}`;
const dataDir = mkdtempSync(path.join(tmpdir(), "mesh-it-"));

afterAll(async () => {
  const admin = postgres("postgres://postgres@127.0.0.1:5432/test", { max: 1 });
  await admin.unsafe(`drop database if exists "${database}" with (force)`);
  await admin.end();
  rmSync(dataDir, { recursive: true, force: true });
});

function grpcHealthCheck(port: number): Promise<HealthCheckResponse> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise<HealthCheckResponse>((resolve, reject) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      (message: ReturnType<typeof create<typeof HealthCheckRequestSchema>>) =>
        Buffer.from(toBinary(HealthCheckRequestSchema, message)),
      (bytes: Buffer) => fromBinary(HealthCheckResponseSchema, bytes),
      create(HealthCheckRequestSchema, { service: "" }),
      { deadline: Date.now() + 10_000 },
      (error, response) => {
        if (error || !response) reject(error ?? new Error("no response"));
        else resolve(response);
      },
    );
  }).finally(() => client.close());
}

describe("npm start (whole mesh)", () => {
  it("starts every service and the edge ready, answers gRPC health, refuses a second start, stops on SIGINT with exit 0", async () => {
    const base = await freePortRange(SERVICE_NAMES.length);
    const natsPort = await freePort();
    const redisPort = await freePort();
    const env = {
      MESH_DATA_DIR: dataDir,
      MESH_PORT_BASE: String(base),
      MESH_SCHEMA_PREFIX: `t_${id}_`,
      DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${database}`,
      NATS_URL: `nats://127.0.0.1:${natsPort}`,
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      LOG_LEVEL: "warn",
    };
    const start = () =>
      spawnMesh({ script: path.join(root, "deploy/local/start-mesh.ts"), cwd: root, env });
    const mesh = start();
    try {
      await mesh.waitFor(READY_LINE, 240_000);
      expect(mesh.output()).toContain(`nats       nats://127.0.0.1:${natsPort}   (started locally`);

      for (let port = base; port < base + SERVICE_NAMES.length; port++) {
        expect(await isHttpReady(`http://127.0.0.1:${port}`, "/healthz"), `healthz :${port}`).toBe(
          true,
        );
        expect(await isHttpReady(`http://127.0.0.1:${port}`), `readyz :${port}`).toBe(true);
        const health = await grpcHealthCheck(port);
        expect(health.status, `grpc health :${port}`).toBe(
          HealthCheckResponse_ServingStatus.SERVING,
        );
      }

      const sql = postgres(env.DATABASE_URL, { max: 1 });
      const schemas = await sql<{ name: string }[]>`
          select schema_name as name from information_schema.schemata
          where schema_name like ${`t_${id}_%`}`;
      await sql.end();
      // Each service that owns data applied its migrations into its own prefixed schema.
      const owners = SERVICE_NAMES.filter((s) =>
        existsSync(path.join(root, "services", s, "migrations")),
      );
      expect(owners.length).toBeGreaterThan(0);
      expect(schemas.map((s) => s.name)).toEqual(
        expect.arrayContaining(owners.map((s) => `t_${id}_${s}`)),
      );
      for (const { name } of schemas) {
        expect(SERVICE_NAMES.map((s) => `t_${id}_${s}`)).toContain(name);
      }

      const lock = readMeshLock(dataDir);
      expect(lock?.pid).toBe(mesh.child.pid);
      const children = Object.values(lock?.children ?? {});
      expect(Object.keys(lock?.children ?? {})).toEqual(
        expect.arrayContaining([...SERVICE_NAMES, "nats", "redis"]),
      );

      const second = start();
      expect((await second.exit).code).toBe(1);
      expect(second.output()).toContain(
        `commerce-mesh is already running (pid ${mesh.child.pid}); stop it with Ctrl-C in its terminal or \`kill ${mesh.child.pid}\``,
      );
      expect(await isHttpReady(`http://127.0.0.1:${base}`)).toBe(true);

      mesh.child.kill("SIGINT");
      expect(await mesh.exit).toEqual({ code: 0, signal: null });
      for (const pid of children) {
        await waitUntil({
          tag: "test",
          what: `child ${pid} gone`,
          check: async () => !isProcessAlive(pid),
          timeoutMs: 10_000,
          intervalMs: 50,
        });
      }
      expect(await tcpReachable("127.0.0.1", natsPort)).toBe(false);
      expect(await tcpReachable("127.0.0.1", redisPort)).toBe(false);
      expect(await tcpReachable("127.0.0.1", base)).toBe(false);
      expect(readMeshLock(dataDir)).toBeUndefined();
    } finally {
      await mesh.stop();
    }
  }, 300_000);
});
