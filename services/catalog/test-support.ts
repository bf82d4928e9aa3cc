import { randomBytes } from "node:crypto";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect as connectNats } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { exportJWK, generateKeyPair, type JSONWebKeySet, SignJWT } from "jose";
import { CatalogService } from "../../gen/commerce/catalog/v1/catalog_service_pb.js";
import { InventoryService } from "../../gen/commerce/catalog/v1/inventory_service_pb.js";
import {
  BadRequestSchema,
  PreconditionFailureSchema,
} from "../../gen/google/rpc/error_details_pb.js";
import {
  DEFAULT_AUDIENCE,
  DEFAULT_ISSUER,
  DEFAULT_SERVICE_ISSUER,
} from "../../platform/auth/auth-config.js";
import { createServiceTokenSource } from "../../platform/auth/service-tokens.js";
import {
  ACCESS_TOKEN_TYPE,
  createTokenVerifier,
  type TokenVerifier,
} from "../../platform/auth/token-verifier.js";
import { createDatabase, type Database } from "../../platform/db/postgres.js";
import { startTestService, TEST_DATABASE_URL } from "../../platform/testing/service-harness.js";
import { createCatalogDefinition } from "./service.js";

export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
export const TEST_NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";

export interface CatalogTestEnv {
  id: string;
  url: string;
  env: Record<string, string>;
  auth: TestAuth;
  catalog: Client<typeof CatalogService>;
  inventory: Client<typeof InventoryService>;
  /** Direct access to the test schema (assertions, bulk loads). */
  db: Database;
  redis: Redis;
  keyPrefix: string;
  stop(): Promise<void>;
}

/**
 * Test credentials: a local EdDSA key standing in for identity's (admin user
 * tokens) and a service-token secret (mesh calls such as ReserveStock).
 */
export interface TestAuth {
  verifier: TokenVerifier;
  adminToken(): Promise<string>;
  serviceToken(): Promise<string>;
}

export async function createTestAuth(): Promise<TestAuth> {
  const { publicKey, privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  const kid = randomBytes(6).toString("hex");
  const jwks: JSONWebKeySet = {
    keys: [{ ...(await exportJWK(publicKey)), kid, alg: "EdDSA", use: "sig" }],
  };
  const secret = randomBytes(32);
  const verifier = createTokenVerifier({
    issuer: DEFAULT_ISSUER,
    audience: DEFAULT_AUDIENCE,
    localJwks: () => jwks,
    serviceTokens: { issuer: DEFAULT_SERVICE_ISSUER, secret },
  });
  const services = createServiceTokenSource({
    service: "orders",
    secret,
    issuer: DEFAULT_SERVICE_ISSUER,
    audience: DEFAULT_AUDIENCE,
  });
  let admin: string | undefined;
  return {
    verifier,
    serviceToken: () => services.token(),
    async adminToken() {
      admin ??= await new SignJWT({ roles: ["admin"] })
        .setProtectedHeader({ alg: "EdDSA", typ: ACCESS_TOKEN_TYPE, kid })
        .setIssuer(DEFAULT_ISSUER)
        .setAudience(DEFAULT_AUDIENCE)
        .setSubject(crypto.randomUUID())
        .setIssuedAt()
        .setExpirationTime("2h")
        .sign(privateKey);
      return admin;
    },
  };
}

/** Admin token for admin RPCs, service token for the mesh-internal stock RPCs. */
function credentials(auth: TestAuth): Interceptor {
  const serviceMethods = new Set(["ReserveStock", "CommitReservation", "ReleaseReservation"]);
  return (next) => async (req) => {
    const token = serviceMethods.has(req.method.name)
      ? await auth.serviceToken()
      : await auth.adminToken();
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

export function clientFor<S extends DescService>(
  service: S,
  url: string,
  auth?: TestAuth,
): Client<S> {
  return createClient(
    service,
    createGrpcTransport({ baseUrl: url, ...(auth ? { interceptors: [credentials(auth)] } : {}) }),
  );
}

/**
 * A real catalog service in this process with everything isolated: its own
 * Postgres schema, Redis key prefix, event subject domain and stream.
 */
export async function startCatalog(
  overrides: Record<string, string> = {},
): Promise<CatalogTestEnv> {
  const id = randomBytes(5).toString("hex");
  const keyPrefix = `test:catalog:${id}:`;
  const env: Record<string, string> = {
    REDIS_KEY_PREFIX: keyPrefix,
    CATALOG_EVENT_DOMAIN: `tcat${id}`,
    CATALOG_EVENT_STREAM: `T_CAT_${id}`,
    PAGE_TOKEN_SECRET: `test-secret-${id}-0123456789`,
    DB_SCHEMA: `t_cat_${id}`,
    CATALOG_STREAM_MAX_BYTES: String(64 * 1024 * 1024),
    ...overrides,
  };
  const auth = await createTestAuth();
  const service = await startTestService(
    createCatalogDefinition({ env: { ...process.env, ...env }, tokenVerifier: auth.verifier }),
    env,
  );
  const db = createDatabase({ url: TEST_DATABASE_URL, schema: service.schema, maxConnections: 4 });
  const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true });
  await redis.connect();
  return {
    id,
    url: service.url,
    env,
    auth,
    catalog: clientFor(CatalogService, service.url, auth),
    inventory: clientFor(InventoryService, service.url, auth),
    db,
    redis,
    keyPrefix,
    async stop() {
      await service.stop();
      await db.close();
      const keys = await redis.keys(`${keyPrefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
      const nc = await connectNats({ servers: TEST_NATS_URL });
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(env.CATALOG_EVENT_STREAM!).catch(() => {});
      await nc.close();
    },
  };
}

/** The error a call failed with (fails the test if it succeeded). */
export async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}

export function fieldViolations(error: ConnectError): string[] {
  return error.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
}

export function preconditionViolations(error: ConnectError) {
  return error.findDetails(PreconditionFailureSchema).flatMap((d) => d.violations);
}

export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

let skuCounter = 0;
/** A valid product for CreateProduct with a unique SKU. */
export function productInput(overrides: Record<string, unknown> = {}) {
  skuCounter++;
  return {
    sku: `SKU-${process.pid}-${Date.now().toString(36)}-${skuCounter}`,
    name: "Trail running shoe",
    description: "Lightweight shoe for rocky paths.",
    price: { amountMinor: 4999n, currencyCode: "EUR" },
    active: true,
    attributes: { color: "red" },
    ...overrides,
  };
}
