import { randomBytes, randomUUID } from "node:crypto";
import type { DescService, MessageInitShape } from "@bufbuild/protobuf";
import { type Client, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect as connectNats } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import postgres, { type Sql } from "postgres";
import { CatalogService } from "../../../gen/commerce/catalog/v1/catalog_service_pb.js";
import { InventoryService } from "../../../gen/commerce/catalog/v1/inventory_service_pb.js";
import type { Product } from "../../../gen/commerce/catalog/v1/product_pb.js";
import { StockAdjustmentReason } from "../../../gen/commerce/catalog/v1/stock_pb.js";
import { type Order, OrderStatus } from "../../../gen/commerce/orders/v1/order_pb.js";
import {
  type CreateOrderRequestSchema,
  OrderService,
} from "../../../gen/commerce/orders/v1/order_service_pb.js";
import { WebhookService } from "../../../gen/commerce/orders/v1/webhook_service_pb.js";
import { PaymentService } from "../../../gen/commerce/payments/v1/payment_service_pb.js";
import { BadRequestSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { DEFAULT_AUDIENCE, DEFAULT_SERVICE_ISSUER } from "../../../platform/auth/auth-config.js";
import { createServiceTokenSource } from "../../../platform/auth/service-tokens.js";
import type { RunningService } from "../../../platform/service/run-service.js";
import { startTestService, TEST_DATABASE_URL } from "../../../platform/testing/service-harness.js";
import { createOrdersDefinition, type OrdersOptions } from "../service.js";
import { type ChildService, startChildService } from "./child-service.js";
import { startTestAuth, type TestAuth } from "./test-auth.js";

export const TEST_NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";

export type CreateOrderInit = MessageInitShape<typeof CreateOrderRequestSchema>;
export interface OrderOverrides {
  requestId?: string;
  paymentMethodToken?: string;
  items?: { productId: string; quantity: bigint }[];
  shippingAddress?: Record<string, unknown>;
}

type InProcess = RunningService & { url: string; schema: string; stop(): Promise<void> };

export interface CheckoutWorld {
  id: string;
  auth: TestAuth;
  catalog: ChildService;
  payments: ChildService;
  catalogEnv: Record<string, string>;
  paymentsEnv: Record<string, string>;
  /** Admin/service clients of the real dependencies (setup and assertions). */
  catalogAdmin: Client<typeof CatalogService>;
  inventory: Client<typeof InventoryService>;
  /** Inventory with a mesh service token (reservation RPCs). */
  inventoryService: Client<typeof InventoryService>;
  paymentsAdmin: Client<typeof PaymentService>;
  /** Environment of the orders service (in-process or child). */
  ordersEnv: Record<string, string>;
  ordersSchema: string;
  /** The orders service when it runs in this process. */
  orders: InProcess | undefined;
  ordersUrl: string;
  /** postgres.js on the orders schema, for assertions. */
  sql: Sql;
  startOrders(options?: OrdersOptions): Promise<InProcess>;
  stopOrders(): Promise<void>;
  /** Runs orders as a separate process (crash tests). */
  startOrdersChild(
    entry?: string,
    extraEnv?: Record<string, string>,
    options?: { exitBeforeReadyIsOk?: boolean },
  ): Promise<ChildService>;
  useOrdersUrl(url: string): void;
  orderClient(token: string): Client<typeof OrderService>;
  webhookClient(token: string): Client<typeof WebhookService>;
  createProduct(options?: {
    priceMinor?: bigint;
    currency?: string;
    stock?: number;
    active?: boolean;
    name?: string;
  }): Promise<Product>;
  orderRequest(
    items: { product: Product; quantity: number }[],
    overrides?: OrderOverrides,
  ): CreateOrderInit;
  waitForOrder(
    token: string,
    orderId: string,
    done?: (order: Order) => boolean,
    timeoutMs?: number,
  ): Promise<Order>;
  stop(): Promise<void>;
}

function bearer(token: () => Promise<string>): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${await token()}`);
    return next(req);
  };
}

export function client<S extends DescService>(
  service: S,
  url: string,
  token?: () => Promise<string>,
): Client<S> {
  return createClient(
    service,
    createGrpcTransport({ baseUrl: url, ...(token ? { interceptors: [bearer(token)] } : {}) }),
  );
}

const TERMINAL = new Set([OrderStatus.CONFIRMED, OrderStatus.REJECTED, OrderStatus.CANCELLED]);

export const SHIPPING_ADDRESS = {
  recipientName: "Ada Lovelace",
  addressLines: ["12 St James's Square"],
  locality: "London",
  postalCode: "SW1Y 4JH",
  regionCode: "GB",
};

/**
 * The checkout mesh of a test: the real catalog and payments services as
 * their own processes (started from their main.ts, as in production), a
 * JWKS endpoint standing in for identity, and the orders service — all in
 * throw-away schemas, streams and key prefixes.
 */
export async function startCheckoutWorld(
  options: {
    orders?: OrdersOptions | false;
    catalogEnv?: Record<string, string>;
    paymentsEnv?: Record<string, string>;
    ordersEnv?: Record<string, string>;
  } = {},
): Promise<CheckoutWorld> {
  const id = randomBytes(4).toString("hex");
  const auth = await startTestAuth();
  const common = { DATABASE_URL: TEST_DATABASE_URL, NATS_URL: TEST_NATS_URL, ...auth.env };
  const catalogEnv = {
    ...common,
    DB_SCHEMA: `t_ocat_${id}`,
    REDIS_KEY_PREFIX: `test:ocat:${id}:`,
    CATALOG_EVENT_DOMAIN: `tocat${id}`,
    CATALOG_EVENT_STREAM: `T_OCAT_${id}`,
    CATALOG_STREAM_MAX_BYTES: String(64 * 1024 * 1024),
    PAGE_TOKEN_SECRET: `orders-test-${id}-0123456789`,
    ...options.catalogEnv,
  };
  const paymentsEnv = {
    ...common,
    DB_SCHEMA: `t_opay_${id}`,
    PAYMENTS_EVENTS_DOMAIN: `topay${id}`,
    PAYMENTS_EVENTS_STREAM: `T_OPAY_${id}`,
    PAYMENTS_PROVIDER_RETRY_INITIAL_MS: "5",
    PAYMENTS_PROVIDER_RETRY_MAX_MS: "20",
    ...options.paymentsEnv,
  };
  const started = await Promise.allSettled([
    startChildService("catalog", catalogEnv),
    startChildService("payments", paymentsEnv),
  ]);
  const failed = started.find((r) => r.status === "rejected");
  if (failed) {
    // Leave nothing running behind a failed start.
    await Promise.allSettled(
      started.map((r) => (r.status === "fulfilled" ? r.value.kill() : undefined)),
    );
    await auth.close();
    throw failed.reason;
  }
  const [catalog, payments] = started.map(
    (r) => (r as PromiseFulfilledResult<ChildService>).value,
  ) as [ChildService, ChildService];
  const ordersSchema = `t_ord_${id}`;
  const ordersEnv: Record<string, string> = {
    ...common,
    DB_SCHEMA: ordersSchema,
    CATALOG_URL: catalog.url,
    PAYMENTS_URL: payments.url,
    ORDERS_EVENT_DOMAIN: `tord${id}`,
    ORDERS_EVENT_STREAM: `T_ORD_${id}`,
    ORDERS_DLQ_STREAM: `T_ORD_${id}_DLQ`,
    ORDERS_DLQ_PREFIX: `tord${id}_dlq`,
    ORDERS_SAGA_RETRY_BACKOFF_MS: "50,100,200,400",
    ORDERS_SAGA_SWEEP_INTERVAL_MS: "200",
    ORDERS_WATCH_POLL_INTERVAL_MS: "500",
    WEBHOOK_ALLOWED_HOSTS: "127.0.0.1,localhost",
    WEBHOOK_RETRY_BASE_MS: "50",
    WEBHOOK_RETRY_MAX_MS: "500",
    WEBHOOK_POLL_INTERVAL_MS: "100",
    ...options.ordersEnv,
  };
  const sql = postgres(TEST_DATABASE_URL, {
    max: 4,
    onnotice: () => {},
    connection: { search_path: ordersSchema },
  });
  const admin = () => auth.adminToken();
  const serviceTokens = createServiceTokenSource({
    service: "orders-test",
    secret: new TextEncoder().encode(auth.serviceTokenSecret),
    issuer: DEFAULT_SERVICE_ISSUER,
    audience: DEFAULT_AUDIENCE,
  });

  const world: CheckoutWorld = {
    id,
    auth,
    catalog,
    payments,
    catalogEnv,
    paymentsEnv,
    catalogAdmin: client(CatalogService, catalog.url, admin),
    inventory: client(InventoryService, catalog.url, admin),
    inventoryService: client(InventoryService, catalog.url, () => serviceTokens.token()),
    paymentsAdmin: client(PaymentService, payments.url, () => serviceTokens.token()),
    ordersEnv,
    ordersSchema,
    orders: undefined,
    ordersUrl: "",
    sql,
    async startOrders(ordersOptions = {}) {
      const running = await startTestService(
        createOrdersDefinition({ ...ordersOptions, env: { ...process.env, ...ordersEnv } }),
        ordersEnv,
      );
      world.orders = running;
      world.ordersUrl = running.url;
      return running;
    },
    async stopOrders() {
      // Keep the schema: a restarted instance resumes from it.
      await world.orders?.shutdown("test restart");
      world.orders = undefined;
    },
    async startOrdersChild(entry, extraEnv = {}, childOptions = {}) {
      const child = await startChildService(
        "orders",
        { ...ordersEnv, ...extraEnv },
        { ...(entry ? { entry } : {}), ...childOptions },
      );
      world.ordersUrl = child.url;
      return child;
    },
    useOrdersUrl(url) {
      world.ordersUrl = url;
    },
    orderClient: (token) => client(OrderService, world.ordersUrl, async () => token),
    webhookClient: (token) => client(WebhookService, world.ordersUrl, async () => token),
    async createProduct(p = {}) {
      const { product } = await world.catalogAdmin.createProduct({
        product: {
          sku: `OT-${id}-${randomBytes(4).toString("hex")}`,
          name: p.name ?? `Product ${randomBytes(2).toString("hex")}`,
          price: { amountMinor: p.priceMinor ?? 1_250n, currencyCode: p.currency ?? "EUR" },
          active: p.active ?? true,
        },
      });
      if (p.stock) {
        await world.inventory.adjustStock({
          productId: product!.id,
          delta: BigInt(p.stock),
          reason: StockAdjustmentReason.RESTOCK,
          requestId: randomUUID(),
        });
      }
      return product!;
    },
    orderRequest(items, overrides = {}) {
      return {
        requestId: randomUUID(),
        items: items.map((i) => ({ productId: i.product.id, quantity: BigInt(i.quantity) })),
        shippingAddress: SHIPPING_ADDRESS,
        paymentMethodToken: "tok_approve",
        ...overrides,
      } as CreateOrderInit;
    },
    async waitForOrder(token, orderId, done = (o) => TERMINAL.has(o.status), timeoutMs = 60_000) {
      const orders = world.orderClient(token);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { order } = await orders.getOrder({ id: orderId });
        if (order && done(order)) return order;
        if (Date.now() > deadline) {
          throw new Error(`order ${orderId} stuck in ${OrderStatus[order?.status ?? 0]}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stop() {
      await world.orders?.stop().catch(() => {});
      await Promise.allSettled([world.catalog.stop(), world.payments.stop()]);
      const drop = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
      for (const schema of [ordersSchema, catalogEnv.DB_SCHEMA, paymentsEnv.DB_SCHEMA]) {
        await drop.unsafe(`drop schema if exists "${schema}" cascade`).catch(() => {});
      }
      await drop.end();
      await sql.end({ timeout: 5 });
      const nc = await connectNats({ servers: TEST_NATS_URL });
      const jsm = await jetstreamManager(nc);
      for (const stream of [
        ordersEnv.ORDERS_EVENT_STREAM!,
        ordersEnv.ORDERS_DLQ_STREAM!,
        catalogEnv.CATALOG_EVENT_STREAM,
        paymentsEnv.PAYMENTS_EVENTS_STREAM,
      ]) {
        await jsm.streams.delete(stream).catch(() => {});
      }
      await nc.close();
      const redis = new Redis(process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379");
      const keys = await redis.keys(`${catalogEnv.REDIS_KEY_PREFIX}*`).catch(() => [] as string[]);
      if (keys.length > 0) await redis.del(...keys).catch(() => {});
      redis.disconnect();
      await auth.close();
    },
  };
  if (options.orders !== false) await world.startOrders(options.orders ?? {});
  return world;
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

export function violatedFields(error: ConnectError): string[] {
  return error.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
}
