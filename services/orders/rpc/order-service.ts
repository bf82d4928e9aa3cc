import { createHash, timingSafeEqual } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { Sql } from "postgres";
import { v7 as uuidv7 } from "uuid";
import type { Product } from "../../../gen/commerce/catalog/v1/product_pb.js";
import {
  OrderCancellationRequestedSchema,
  type OrderEvent,
  OrderPlacedSchema,
} from "../../../gen/commerce/orders/v1/events_pb.js";
import { type Order, OrderSchema, OrderStatus } from "../../../gen/commerce/orders/v1/order_pb.js";
import {
  type CreateOrderRequest,
  CreateOrderRequestSchema,
  type OrderService,
  type WatchOrderRequest,
} from "../../../gen/commerce/orders/v1/order_service_pb.js";
import { ResourceInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { toPgTime } from "../../../platform/db/pg-time.js";
import {
  ConflictError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnavailableError,
} from "../../../platform/errors/domain-errors.js";
import { toConnectError } from "../../../platform/errors/to-connect-error.js";
import { isUuid, priceItems, validateCreateOrder } from "../domain/create-order-input.js";
import { toOrderView } from "../domain/order-view.js";
import type { OrdersSettings } from "../orders-settings.js";
import type { UpstreamClients } from "../saga/upstream-clients.js";
import { OrderConcurrencyError, type OrderStore } from "../store/order-store.js";
import { type WatchHub, watchOrderEvents } from "../watch/order-watch.js";
import { callerOf, type OrdersCaller, requireUserCaller } from "./caller.js";
import { decodePageToken, encodePageToken, filterFingerprint, pageSize } from "./page-token.js";

export interface OrderServiceDeps {
  sql: Sql;
  readSql: Sql;
  store: OrderStore;
  clients: Pick<UpstreamClients, "catalog">;
  hub: WatchHub;
  settings: Pick<OrdersSettings, "sagaTimeoutMs" | "watchPollIntervalMs">;
  /** Runs the saga of an order that just changed at once (fast path). */
  drive?(orderId: string): void;
}

const MAX_CANCEL_REASON = 500;
const VALID_STATUSES = new Set(
  Object.values(OrderStatus).filter(
    (v): v is OrderStatus => typeof v === "number" && v !== OrderStatus.UNSPECIFIED,
  ),
);

function requestHash(request: CreateOrderRequest): Buffer {
  return createHash("sha256").update(toBinary(CreateOrderRequestSchema, request)).digest();
}

function requireId(value: string, field: string): string {
  if (!isUuid(value)) throw InvalidArgumentError.field(field, "must be a UUID");
  return value.toLowerCase();
}

/** Another user's order is reported exactly like a missing one (no existence leak). */
function visibleTo(caller: OrdersCaller, userId: string): boolean {
  return caller.isAdmin || caller.subject === userId;
}

export function createOrderService(
  deps: OrderServiceDeps,
): Partial<ServiceImpl<typeof OrderService>> {
  const { sql, store } = deps;

  async function priceRequest(request: CreateOrderRequest) {
    let products: Product[];
    try {
      ({ products } = await deps.clients.catalog.batchGetProducts({
        ids: request.items.map((item) => item.productId),
      }));
    } catch (error) {
      if (error instanceof ConnectError && error.code === Code.NotFound) {
        const names = error.findDetails(ResourceInfoSchema).map((info) => info.resourceName);
        const violations = request.items
          .map((item, i) => ({ item, i }))
          .filter(({ item }) =>
            names.some((name) => name.toLowerCase().includes(item.productId.toLowerCase())),
          )
          .map(({ i }) => ({ field: `items[${i}].product_id`, description: "unknown product" }));
        throw new InvalidArgumentError(
          violations.length > 0 ? violations : [{ field: "items", description: "unknown product" }],
        );
      }
      throw new UnavailableError(
        "the catalog is not available; retry later",
        "CATALOG_UNAVAILABLE",
        error,
      );
    }
    const priced = priceItems(request.items, products);
    if (!priced.ok) throw new InvalidArgumentError(priced.violations);
    return priced;
  }

  async function replay(
    row: { request_hash: Buffer; order_id: string },
    hash: Buffer,
  ): Promise<Order> {
    if (row.request_hash.length !== hash.length || !timingSafeEqual(row.request_hash, hash)) {
      throw new FailedPreconditionError(
        "request_id was already used for a different request",
        "REQUEST_ID_REUSED",
      );
    }
    const view = await store.getView(sql, row.order_id);
    if (!view) throw new Error(`order ${row.order_id} of an idempotency key has no projection`);
    return view;
  }

  async function readVisible(caller: OrdersCaller, orderId: string): Promise<Order> {
    const view = await store.getView(sql, orderId);
    if (!view || !visibleTo(caller, view.userId)) throw new NotFoundError("order", orderId);
    return view;
  }

  async function* watch(
    request: WatchOrderRequest,
    ctx: HandlerContext,
  ): AsyncGenerator<{ event: OrderEvent }> {
    const caller = callerOf(ctx);
    const id = requireId(request.orderId, "order_id");
    if (request.afterSequence < 0n) {
      throw InvalidArgumentError.field("after_sequence", "must not be negative");
    }
    await readVisible(caller, id);
    const readHead = async () => {
      const [row] = await sql<{ status: number; last_sequence: number }[]>`
        select status, last_sequence from orders where id = ${id}`;
      return row
        ? { status: row.status as OrderStatus, lastSequence: Number(row.last_sequence) }
        : undefined;
    };
    const events = watchOrderEvents({
      sql,
      store,
      hub: deps.hub,
      orderId: id,
      afterSequence: Number(request.afterSequence),
      signal: ctx.signal,
      pollIntervalMs: deps.settings.watchPollIntervalMs,
      readHead,
    });
    for await (const event of events) yield { event };
  }

  return {
    async createOrder(request, ctx) {
      const caller = requireUserCaller(ctx);
      const violations = validateCreateOrder(request);
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      const userId = caller.subject;
      const requestId = request.requestId.toLowerCase();
      const hash = requestHash(request);

      // A replay is answered without asking the catalog again.
      const [known] = await sql<{ request_hash: Buffer; order_id: string }[]>`
        select request_hash, order_id from order_requests
        where user_id = ${userId} and request_id = ${requestId}`;
      if (known) return { order: await replay(known, hash) };

      const priced = await priceRequest(request);
      const orderId = uuidv7();
      const placed = create(OrderPlacedSchema, {
        userId,
        items: priced.items,
        total: priced.total,
        shippingAddress: request.shippingAddress,
        requestId,
      });
      const outcome = await sql.begin(async (tx) => {
        // Concurrent calls with the same key wait here on the unique key
        // until the first commits, then read its order.
        const claimed = await tx`
          insert into order_requests (user_id, request_id, request_hash, order_id)
          values (${userId}, ${requestId}, ${hash}, ${orderId})
          on conflict do nothing returning 1`;
        if (claimed.length === 0) {
          const [row] = await tx<{ request_hash: Buffer; order_id: string }[]>`
            select request_hash, order_id from order_requests
            where user_id = ${userId} and request_id = ${requestId}`;
          return { existing: row! };
        }
        const { state } = await store.append(
          tx,
          undefined,
          orderId,
          [{ case: "placed", value: placed }],
          {
            correlationId: requestId,
          },
        );
        await tx`
          insert into order_sagas (order_id, payment_method_token, deadline_at)
          values (${orderId}, ${request.paymentMethodToken},
                  ${toPgTime(new Date(state.createTime.getTime() + deps.settings.sagaTimeoutMs))})`;
        return { state };
      });
      if ("existing" in outcome && outcome.existing) {
        return { order: await replay(outcome.existing, hash) };
      }
      if (!("state" in outcome)) throw new Error("idempotency key vanished during CreateOrder");
      deps.drive?.(orderId);
      return { order: toOrderView(outcome.state) };
    },

    async getOrder(request, ctx) {
      const caller = callerOf(ctx);
      const id = requireId(request.id, "id");
      return { order: await readVisible(caller, id) };
    },

    async listOrders(request, ctx) {
      const caller = callerOf(ctx);
      const size = pageSize(request.pageSize, 20, 100);
      if (request.userId !== "" && request.userId !== caller.subject && !caller.isAdmin) {
        throw new PermissionDeniedError(
          "only admins can list another user's orders",
          "ADMIN_REQUIRED",
        );
      }
      const statuses = [...new Set(request.statuses)].sort((a, b) => a - b);
      statuses.forEach((status) => {
        if (!VALID_STATUSES.has(status)) {
          throw InvalidArgumentError.field("statuses", `unknown status ${status}`);
        }
      });
      const userId = caller.isAdmin ? request.userId || undefined : caller.subject;
      const fingerprint = filterFingerprint([userId ?? "*", statuses]);
      const after = decodePageToken(request.pageToken, fingerprint);
      const db = deps.readSql;
      const rows = await db<{ id: string; view: Buffer }[]>`
        select id, view from orders
        where ${userId === undefined ? db`true` : db`user_id = ${userId}`}
          and ${statuses.length === 0 ? db`true` : db`status in ${db(statuses)}`}
          and ${after === undefined ? db`true` : db`id < ${after}`}
        order by id desc
        limit ${size + 1}`;
      const page = rows.slice(0, size);
      return {
        orders: page.map((row) => fromBinary(OrderSchema, row.view)),
        nextPageToken: rows.length > size ? encodePageToken(page.at(-1)!.id, fingerprint) : "",
      };
    },

    async cancelOrder(request, ctx) {
      const caller = callerOf(ctx);
      const id = requireId(request.id, "id");
      if ([...request.reason].length > MAX_CANCEL_REASON) {
        throw InvalidArgumentError.field(
          "reason",
          `must be at most ${MAX_CANCEL_REASON} characters`,
        );
      }
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          const order = await sql.begin(async (tx) => {
            const state = await store.loadState(tx, id, "update");
            if (!state || state === "locked" || !visibleTo(caller, state.userId)) {
              throw new NotFoundError("order", id);
            }
            switch (state.status) {
              case OrderStatus.CANCELLING:
                throw new FailedPreconditionError(
                  "the order is already being cancelled",
                  "ORDER_CANCELLING",
                );
              case OrderStatus.CANCELLED:
                throw new FailedPreconditionError(
                  "the order is already cancelled",
                  "ORDER_ALREADY_CANCELLED",
                );
              case OrderStatus.REJECTED:
                throw new FailedPreconditionError(
                  "a rejected order cannot be cancelled",
                  "ORDER_REJECTED",
                );
            }
            const { state: next } = await store.append(
              tx,
              state,
              id,
              [
                {
                  case: "cancellationRequested",
                  value: create(OrderCancellationRequestedSchema, {
                    requestedBy: caller.subject,
                    reason: request.reason,
                  }),
                },
              ],
              { correlationId: state.requestId },
            );
            // Reopen the saga so the sweeper also watches the compensation.
            await tx`update order_sagas set completed_at = null where order_id = ${id}`;
            return toOrderView(next);
          });
          deps.drive?.(id);
          return { order };
        } catch (error) {
          if (error instanceof OrderConcurrencyError) continue;
          throw error;
        }
      }
      throw new ConflictError("the order changed concurrently; retry", "ORDER_CONCURRENT_UPDATE");
    },

    async *watchOrder(request, ctx) {
      // Errors of a server stream surface while it is iterated, after the
      // platform interceptor returned: map domain errors here.
      try {
        yield* watch(request, ctx);
      } catch (error) {
        throw toConnectError(error);
      }
    },
  };
}
