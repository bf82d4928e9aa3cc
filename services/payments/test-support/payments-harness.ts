import { randomBytes } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import postgres, { type Sql } from "postgres";
import { PaymentService } from "../../../gen/commerce/payments/v1/payment_service_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { DEFAULT_AUDIENCE, DEFAULT_SERVICE_ISSUER } from "../../../platform/auth/auth-config.js";
import {
  createServiceTokenInterceptor,
  createServiceTokenSource,
} from "../../../platform/auth/service-tokens.js";
import { startTestService, TEST_DATABASE_URL } from "../../../platform/testing/service-harness.js";
import type { OperationsDeps } from "../operations/operations-context.js";
import { DEV_WEBHOOK_SECRET } from "../payments-config.js";
import { createSandboxProvider, type SandboxProvider } from "../providers/sandbox-provider.js";
import { createPaymentsDefinition } from "../service.js";

export const TEST_NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";

export interface PublishedEvent {
  subject: string;
  type: string;
  eventId: string;
  aggregateId: string;
  aggregateSeq: number;
  data: Uint8Array;
}

export interface PaymentsHarness {
  url: string;
  schema: string;
  /** Client with a mesh service token (role "service"). */
  client: Client<typeof PaymentService>;
  /** Client without credentials. */
  anonymous: Client<typeof PaymentService>;
  sandbox: SandboxProvider;
  deps: OperationsDeps;
  /** postgres.js on the service's schema, for assertions. */
  sql: Sql;
  webhookSecret: string;
  serviceTokenSecret: string;
  /** Every event on the service's (test-only) stream so far. */
  events(): Promise<PublishedEvent[]>;
  /** Waits until the outbox is empty (all events published). */
  drainOutbox(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts the real payments service in-process (migrations, relay, RPC
 * server) in a throw-away schema, with its own JetStream stream and subject
 * domain so test files run in parallel and repeatedly.
 */
export async function startPayments(
  env: Record<string, string> = {},
  options: {
    /** Start a second replica of `replicaOf`: same schema, stream and PSP. */
    replicaOf?: PaymentsHarness;
  } = {},
): Promise<PaymentsHarness> {
  const id = randomBytes(5).toString("hex");
  const primary = options.replicaOf;
  const serviceTokenSecret = primary?.serviceTokenSecret ?? randomBytes(32).toString("hex");
  const fullEnv: Record<string, string> = {
    SERVICE_TOKEN_SECRET: serviceTokenSecret,
    NATS_URL: TEST_NATS_URL,
    PAYMENTS_EVENTS_DOMAIN: primary?.deps.config.events.domain ?? `pt_${id}`,
    PAYMENTS_EVENTS_STREAM: primary?.deps.config.events.stream ?? `PT_${id}`,
    ...(primary ? { DB_SCHEMA: primary.schema } : {}),
    PAYMENTS_PROVIDER_RETRY_INITIAL_MS: "5",
    PAYMENTS_PROVIDER_RETRY_MAX_MS: "20",
    ...env,
  };
  let deps: OperationsDeps | undefined;
  let sandbox: SandboxProvider | undefined;
  let url = "";
  const definition = createPaymentsDefinition({
    env: { ...process.env, ...fullEnv },
    onBuilt: (built) => {
      deps = built;
    },
    providers: (config) => {
      // Replicas talk to the same (external) PSP.
      if (primary) {
        sandbox = primary.sandbox;
        // The primary owns its lifecycle.
        return [{ ...primary.sandbox, close: undefined }];
      }
      sandbox = createSandboxProvider({
        webhookSecret: config.providerWebhookSecret,
        webhookUrl: () => url,
        slowMs: config.sandbox.slowMs,
        asyncDelayMs: config.sandbox.asyncDelayMs,
        transientFailures: config.sandbox.transientFailures,
        deliveryBackoffMs: 50,
      });
      return [sandbox];
    },
  });
  const service = await startTestService(definition, fullEnv);
  url = service.url;
  const tokens = createServiceTokenSource({
    service: "orders",
    secret: new TextEncoder().encode(serviceTokenSecret),
    issuer: DEFAULT_SERVICE_ISSUER,
    audience: DEFAULT_AUDIENCE,
  });
  const client = createClient(
    PaymentService,
    createGrpcTransport({ baseUrl: url, interceptors: [createServiceTokenInterceptor(tokens)] }),
  );
  const anonymous = createClient(PaymentService, createGrpcTransport({ baseUrl: url }));
  const sql = postgres(TEST_DATABASE_URL, {
    max: 2,
    onnotice: () => {},
    connection: { search_path: service.schema },
  });
  let nc: NatsConnection | undefined;
  const stream = fullEnv.PAYMENTS_EVENTS_STREAM!;

  return {
    url,
    schema: service.schema,
    client,
    anonymous,
    sandbox: sandbox!,
    deps: deps!,
    sql,
    webhookSecret: fullEnv.PAYMENTS_PROVIDER_WEBHOOK_SECRET ?? DEV_WEBHOOK_SECRET,
    serviceTokenSecret,
    async events() {
      nc ??= await connect({ servers: TEST_NATS_URL });
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info(stream);
      const out: PublishedEvent[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && seq > 0; seq++) {
        const msg = await jsm.streams.getMessage(stream, { seq });
        if (!msg) continue;
        out.push({
          subject: msg.subject,
          type: msg.header.get("Event-Type"),
          eventId: msg.header.get("Event-Id"),
          aggregateId: msg.header.get("Aggregate-Id"),
          aggregateSeq: Number(msg.header.get("Aggregate-Seq")),
          data: msg.data,
        });
      }
      return out;
    },
    async drainOutbox() {
      await eventually(async () => {
        const [row] = await sql`select count(*)::int as pending from outbox where sent_at is null`;
        if (row?.pending !== 0) throw new Error(`${row?.pending} events not published yet`);
      });
    },
    async stop() {
      if (primary) {
        await service.shutdown("replica stopped");
        await sql.end();
        await nc?.close();
        return;
      }
      await service.stop();
      await sql.end();
      nc ??= await connect({ servers: TEST_NATS_URL });
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(stream).catch(() => {});
      await nc.close();
    },
  };
}

/** Retries an assertion until it passes (no wall-clock assertions). */
export async function eventually<T>(
  check: () => Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const giveUp = Date.now() + (options.timeoutMs ?? 20_000);
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > giveUp) throw error;
      await new Promise((r) => setTimeout(r, options.intervalMs ?? 50));
    }
  }
}

/** Runs `call`, expects a ConnectError with `code`, returns its details. */
export async function expectRpcError(
  call: Promise<unknown>,
  code: Code,
): Promise<{ reason: string | undefined; fields: string[]; error: ConnectError }> {
  try {
    await call;
  } catch (error) {
    const e = ConnectError.from(error);
    if (e.code !== code) {
      throw new Error(`expected ${Code[code]}, got ${Code[e.code]}: ${e.rawMessage}`, { cause: e });
    }
    const info = e.findDetails(ErrorInfoSchema)[0];
    const bad = e.findDetails(BadRequestSchema)[0];
    return {
      reason: info?.reason,
      fields: bad?.fieldViolations.map((v) => v.field) ?? [],
      error: e,
    };
  }
  throw new Error(`expected ${Code[code]}, but the call succeeded`);
}

export function uuid(): string {
  return crypto.randomUUID();
}

export function decode<T extends Parameters<typeof fromBinary>[0]>(schema: T, data: Uint8Array) {
  return fromBinary(schema, data);
}
