import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { IdentityService } from "../../../gen/commerce/identity/v1/identity_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { startTestService } from "../../../platform/testing/service-harness.js";
import { loadIdentityConfig } from "../identity-config.js";
import { createIdentityCore } from "../identity-core.js";
import { createIdentityDefinition } from "../service.js";
import { createAccount } from "../users/create-account.js";

export type IdentityClient = Client<typeof IdentityService>;

export interface TestIdentity {
  url: string;
  client: IdentityClient;
  /** postgres.js client on the service's schema. */
  sql: NonNullable<Awaited<ReturnType<typeof startTestService>>["runtime"]["database"]>["sql"];
  schema: string;
  env: Record<string, string>;
  redisPrefix: string;
  eventsDomain: string;
  dataDir: string;
  stop(): Promise<void>;
}

/**
 * Starts identity in-process against the real Postgres/Redis/NATS with
 * everything isolated: its own schema, Redis key prefix, events domain (and
 * so its own JetStream stream) and key directory.
 */
export async function startIdentity(extraEnv: Record<string, string> = {}): Promise<TestIdentity> {
  const id = randomBytes(4).toString("hex");
  const dataDir = mkdtempSync(join(tmpdir(), "identity-test-"));
  const env: Record<string, string> = {
    IDENTITY_DATA_DIR: dataDir,
    REDIS_KEY_PREFIX: `test:${id}:`,
    IDENTITY_EVENTS_DOMAIN: `identity_t${id}`,
    ...extraEnv,
  };
  const service = await startTestService(createIdentityDefinition({ ...process.env, ...env }), env);
  const transport = createGrpcTransport({ baseUrl: service.url });
  return {
    url: service.url,
    client: createClient(IdentityService, transport),
    sql: service.runtime.database!.sql,
    schema: service.schema,
    env,
    redisPrefix: env.REDIS_KEY_PREFIX!,
    eventsDomain: env.IDENTITY_EVENTS_DOMAIN!,
    dataDir,
    async stop() {
      await service.stop();
      const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
      const keys = await redis.keys(`${env.REDIS_KEY_PREFIX}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
      const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(env.IDENTITY_EVENTS_DOMAIN!.toUpperCase()).catch(() => false);
      await nc.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function bearer(token: string): { headers: Record<string, string> } {
  return { headers: { authorization: `Bearer ${token}` } };
}

let counter = 0;
export function uniqueEmail(tag = "user"): string {
  return `${tag}.${Date.now().toString(36)}${(counter++).toString(36)}${randomBytes(3).toString("hex")}@example.com`;
}

export const GOOD_PASSWORD = "correct horse battery staple 42";

/** Creates an admin the way the create-admin command does, and signs it in. */
export async function createAdmin(
  t: TestIdentity,
  email = uniqueEmail("admin"),
): Promise<{ id: string; accessToken: string }> {
  const deps = await createIdentityCore({
    config: loadIdentityConfig({ ...process.env, ...t.env }),
    sql: t.sql,
    redis: undefined,
    logger: { info() {}, warn() {}, error() {}, debug() {} },
  });
  await createAccount(
    deps,
    { email, password: GOOD_PASSWORD, firstName: "Ada", lastName: "Admin" },
    ["admin"],
  );
  const signedIn = await t.client.signIn({ email, password: GOOD_PASSWORD });
  return { id: signedIn.userId, accessToken: signedIn.tokens!.accessToken };
}

/** Signs up a customer and signs it in. */
export async function createCustomer(
  t: TestIdentity,
  names: { firstName?: string; lastName?: string } = {},
): Promise<{ id: string; email: string; accessToken: string; refreshToken: string }> {
  const email = uniqueEmail();
  const { user } = await t.client.signUp({
    email,
    password: GOOD_PASSWORD,
    firstName: names.firstName ?? "Grace",
    lastName: names.lastName ?? "Hopper",
  });
  const { tokens } = await t.client.signIn({ email, password: GOOD_PASSWORD });
  return {
    id: user!.id,
    email,
    accessToken: tokens!.accessToken,
    refreshToken: tokens!.refreshToken,
  };
}

/** The ConnectError a call failed with (fails the test when it succeeded). */
export async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail, but it succeeded");
}

export function fieldViolations(error: ConnectError): { field: string; description: string }[] {
  return error
    .findDetails(BadRequestSchema)
    .flatMap((d) => d.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
}

export function errorReason(error: ConnectError): string | undefined {
  return error.findDetails(ErrorInfoSchema)[0]?.reason;
}
