import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create, fromBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  OrderEventSchema,
  OrderPlacedSchema,
  OrderRejectedSchema,
  OrderStockReservedSchema,
} from "../../../gen/commerce/orders/v1/events_pb.js";
import { OrderSchema, OrderStatus } from "../../../gen/commerce/orders/v1/order_pb.js";
import { createDatabase, type Database, migrateDatabase } from "../../../platform/db/postgres.js";
import { TEST_DATABASE_URL, uniqueSchema } from "../../../platform/testing/service-harness.js";
import type { OrderChange, OrderState } from "../domain/order-state.js";
import { createOrderStore, OrderConcurrencyError, type OrderStore } from "./order-store.js";
import { rebuildProjections } from "./rebuild-projections.js";

const MIGRATIONS = fileURLToPath(new URL("../migrations/", import.meta.url));
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

let database: Database;
let store: OrderStore;
const schema = uniqueSchema("t_ostore");

const placed = (userId = "user-a"): OrderChange => ({
  case: "placed",
  value: create(OrderPlacedSchema, {
    userId,
    requestId: randomUUID(),
    items: [{ productId: randomUUID(), sku: "S", name: "N", quantity: 1n }],
    total: { amountMinor: 700n, currencyCode: "EUR" },
  }),
});
const reserved: OrderChange = {
  case: "stockReserved",
  value: create(OrderStockReservedSchema, {}),
};
const rejected: OrderChange = {
  case: "rejected",
  value: create(OrderRejectedSchema, { rejection: { reason: 1, message: "no" } }),
};

async function newOrder(): Promise<{ id: string; state: OrderState }> {
  const id = randomUUID();
  const { state } = await database.sql.begin((tx) => store.append(tx, undefined, id, [placed()]));
  return { id, state };
}

beforeAll(async () => {
  await migrateDatabase({ url: TEST_DATABASE_URL, schema }, MIGRATIONS);
  database = createDatabase({ url: TEST_DATABASE_URL, schema, maxConnections: 6 });
  store = createOrderStore({ domain: "tstore", schema });
});

afterAll(async () => {
  await database.sql.unsafe(`drop schema if exists "${schema}" cascade`);
  await database.close();
});

describe("order event store", () => {
  it("appends events, outbox rows and the projection in one transaction", async () => {
    const id = randomUUID();
    const { events } = await database.sql.begin((tx) =>
      store.append(tx, undefined, id, [placed(), reserved], { correlationId: "req-1" }),
    );
    expect(events.map((e) => [Number(e.sequence), e.status])).toEqual([
      [1, OrderStatus.PENDING],
      [2, OrderStatus.STOCK_RESERVED],
    ]);
    const rows = await database.sql<
      { sequence: string; event_type: string; payload: Buffer; correlation_id: string }[]
    >`
      select sequence::text, event_type, payload, correlation_id from order_events
      where order_id = ${id} order by sequence`;
    expect(rows.map((r) => r.event_type)).toEqual(["placed", "stock_reserved"]);
    expect(rows.every((r) => r.correlation_id === "req-1")).toBe(true);
    expect(fromBinary(OrderEventSchema, rows[1]!.payload).eventId).toBe(events[1]!.eventId);
    const outbox = await database.sql<
      { subject: string; aggregate_seq: string; event_id: string; event_type: string }[]
    >`
      select subject, aggregate_seq::text, event_id::text, event_type from outbox
      where aggregate_id = ${id} order by aggregate_seq`;
    expect(outbox).toEqual([
      {
        subject: "tstore.order.placed",
        aggregate_seq: "1",
        event_id: events[0]!.eventId,
        event_type: "commerce.orders.v1.OrderEvent",
      },
      {
        subject: "tstore.order.stock_reserved",
        aggregate_seq: "2",
        event_id: events[1]!.eventId,
        event_type: "commerce.orders.v1.OrderEvent",
      },
    ]);
    const view = await store.getView(database.sql, id);
    expect(view?.status).toBe(OrderStatus.STOCK_RESERVED);
    expect(view?.lastSequence).toBe(2n);
    const [projection] = await database.sql<
      { status: number; total_minor: string; items: unknown[] }[]
    >`
      select status, total_minor::text, items from orders where id = ${id}`;
    expect(projection).toMatchObject({ status: OrderStatus.STOCK_RESERVED, total_minor: "700" });
    expect(projection!.items).toHaveLength(1);
  });

  it("rolls everything back when the transaction fails", async () => {
    const id = randomUUID();
    await expect(
      database.sql.begin(async (tx) => {
        await store.append(tx, undefined, id, [placed()]);
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    const counts = await database.sql`
      select (select count(*) from order_events where order_id = ${id})::int as events,
             (select count(*) from outbox where aggregate_id = ${id})::int as outbox,
             (select count(*) from orders where id = ${id})::int as projection`;
    expect(counts[0]).toEqual({ events: 0, outbox: 0, projection: 0 });
  });

  it("lets only one of two writers append the same next sequence", async () => {
    const { id, state } = await newOrder();
    let releaseFirst!: () => void;
    const firstHolds = new Promise<void>((resolve) => {
      releaseFirst = resolve;
    });
    let firstAppended!: () => void;
    const appended = new Promise<void>((resolve) => {
      firstAppended = resolve;
    });
    const first = database.sql.begin(async (tx) => {
      await store.append(tx, state, id, [reserved]);
      firstAppended();
      await firstHolds;
    });
    await appended;
    // Same base version: blocks on the first writer's row, then conflicts.
    const second = database.sql.begin((tx) => store.append(tx, state, id, [rejected]));
    await new Promise((resolve) => setTimeout(resolve, 100));
    releaseFirst();
    await first;
    await expect(second).rejects.toBeInstanceOf(OrderConcurrencyError);
    const reread = await database.sql.begin((tx) => store.loadState(tx, id, "update"));
    expect(reread !== "locked" && reread?.status).toBe(OrderStatus.STOCK_RESERVED);
    expect(reread !== "locked" && reread?.lastSequence).toBe(2);
  });

  it("rebuilds projections from the events", async () => {
    const a = await newOrder();
    const b = await newOrder();
    await database.sql.begin((tx) => store.append(tx, b.state, b.id, [reserved]));
    // Break the projection in two ways: a wrong status and a missing row.
    await database.sql`update orders set status = 7, view = '\\x00'::bytea where id = ${a.id}`;
    await database.sql`delete from order_sagas where order_id = ${b.id}`;
    await database.sql`delete from orders where id = ${b.id}`;
    const result = await rebuildProjections(database.sql, store, { batchSize: 2 });
    expect(result.repaired).toBeGreaterThanOrEqual(2);
    const viewA = await store.getView(database.sql, a.id);
    const viewB = await store.getView(database.sql, b.id);
    expect(viewA?.status).toBe(OrderStatus.PENDING);
    expect(viewB?.status).toBe(OrderStatus.STOCK_RESERVED);
    const again = await rebuildProjections(database.sql, store);
    expect(again.repaired).toBe(0);
    expect(again.orders).toBe(result.orders);
  });

  it("runs as `npm run orders:rebuild-projections`", async () => {
    const { id } = await newOrder();
    await database.sql`update orders set status = 5 where id = ${id}`;
    const { stdout } = await promisify(execFile)(
      "npm",
      ["run", "--silent", "orders:rebuild-projections"],
      {
        cwd: ROOT,
        env: { ...process.env, DATABASE_URL: TEST_DATABASE_URL, DB_SCHEMA: schema },
      },
    );
    expect(JSON.parse(stdout.trim().split("\n").at(-1)!)).toMatchObject({ repaired: 1 });
    const [row] = await database.sql<{ status: number; view: Buffer }[]>`
      select status, view from orders where id = ${id}`;
    expect(row?.status).toBe(OrderStatus.PENDING);
    expect(fromBinary(OrderSchema, row!.view).status).toBe(OrderStatus.PENDING);
  });
});
