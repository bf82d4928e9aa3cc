import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Sql, TransactionSql } from "postgres";
import { v7 as uuidv7 } from "uuid";
import { type OrderEvent, OrderEventSchema } from "../../../gen/commerce/orders/v1/events_pb.js";
import { type Order, OrderSchema } from "../../../gen/commerce/orders/v1/order_pb.js";
import { fromPgTime, fromPgTimeOrNull, toPgTime } from "../../../platform/db/pg-time.js";
import { createOutbox, type Outbox, outboxEvent } from "../../../platform/events/outbox.js";
import {
  applyChange,
  foldEvents,
  type OrderChange,
  type OrderChangeKind,
  type OrderState,
} from "../domain/order-state.js";
import { toOrderView } from "../domain/order-view.js";

/** Thrown when another writer appended to the order first (optimistic concurrency). */
export class OrderConcurrencyError extends Error {
  override name = "OrderConcurrencyError";
  constructor(
    readonly orderId: string,
    readonly expectedSequence: number,
    options?: { cause?: unknown },
  ) {
    super(`order ${orderId} changed after version ${expectedSequence}`, options);
  }
}

export class EventStoreIntegrityError extends Error {
  override name = "EventStoreIntegrityError";
}

export interface AppendMeta {
  /** Event (or request) that caused these events. */
  causationId?: string | undefined;
  /** The checkout's correlation id (kept from the first event). */
  correlationId?: string | undefined;
  now?: Date;
}

export interface AppendResult {
  state: OrderState;
  events: OrderEvent[];
}

export type Executor = Sql | TransactionSql;

/** Private saga data of an order (see db/schema.ts `order_sagas`). */
export interface SagaRow {
  paymentMethodToken: string | null;
  deadlineAt: Date;
  completedAt: Date | null;
}

/** `stockReserved` → `stock_reserved`: subject token and webhook type suffix. */
export function changeName(kind: OrderChangeKind): string {
  return kind.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** NOTIFY channel telling watchers an order has new events (one per schema). */
export function orderEventsChannel(schema: string): string {
  return `order_events_${schema}`.slice(0, 63);
}

function isUniqueViolation(error: unknown, constraint: string): boolean {
  const e = error as { name?: string; code?: string; constraint_name?: string } | null;
  return e?.name === "PostgresError" && e.code === "23505" && e.constraint_name === constraint;
}

/** A row of order_events as JSON (bytea as "\\x<hex>" text). */
interface EventRow {
  order_id: string;
  sequence: number;
  event_id: string;
  event_type: string;
  payload: string;
  occurred_at: string;
  causation_id: string | null;
  correlation_id: string | null;
}

interface ProjectionItem {
  productId: string;
  sku: string;
  name: string;
  quantity: string;
  unitPriceMinor: string;
  lineTotalMinor: string;
}

export interface OrderStore {
  readonly outbox: Outbox;
  readonly channel: string;
  /** Stored events after `afterSequence`, in order. */
  loadEvents(
    executor: Executor,
    orderId: string,
    afterSequence?: number,
    limit?: number,
  ): Promise<OrderEvent[]>;
  /**
   * Folds the order's events. With `lock`, the order's projection row is
   * locked first (FOR UPDATE), which serialises the saga and commands on one
   * order; "skip" returns "locked" instead of waiting.
   */
  loadState(
    tx: Executor,
    orderId: string,
    lock?: "none" | "update" | "skip",
  ): Promise<OrderState | undefined | "locked">;
  /** Locks the order (FOR UPDATE) and returns its folded state with the private saga row. */
  lockForSaga(
    tx: Executor,
    orderId: string,
  ): Promise<{ state: OrderState; saga: SagaRow | undefined } | undefined>;
  /**
   * Appends changes after `current` (undefined for a new order): events,
   * outbox, projection and a watcher notification, all in `tx`. Throws
   * OrderConcurrencyError when the sequence was taken meanwhile.
   */
  append(
    tx: TransactionSql,
    current: OrderState | undefined,
    orderId: string,
    changes: OrderChange[],
    meta?: AppendMeta,
  ): Promise<AppendResult>;
  /** Writes the projection row from a folded state (used by append and the rebuild). */
  writeProjection(tx: Executor, state: OrderState, force?: boolean): Promise<void>;
  /** The read view from the projection. */
  getView(executor: Executor, orderId: string): Promise<Order | undefined>;
}

export interface OrderStoreOptions {
  domain: string;
  schema: string;
  /**
   * Runs in the append transaction after the events are written (webhook
   * fan-out): whatever it records commits exactly when the events do.
   */
  onAppend?(tx: TransactionSql, events: OrderEvent[]): Promise<void>;
}

export function createOrderStore(options: OrderStoreOptions): OrderStore {
  const outbox = createOutbox({ domain: options.domain });
  const channel = orderEventsChannel(options.schema);

  /**
   * Upserts the projection row and notifies watchers; with `events`, also
   * inserts those event rows in the same statement (one round trip).
   */
  async function writeProjection(
    tx: Executor,
    state: OrderState,
    force = false,
    events: EventRow[] = [],
  ): Promise<void> {
    const view = toOrderView(state);
    const items: ProjectionItem[] = state.items.map((item) => ({
      productId: item.productId,
      sku: item.sku,
      name: item.name,
      quantity: item.quantity.toString(),
      unitPriceMinor: (item.unitPrice?.amountMinor ?? 0n).toString(),
      lineTotalMinor: (item.lineTotal?.amountMinor ?? 0n).toString(),
    }));
    const viewBytes = Buffer.from(toBinary(OrderSchema, view));
    const rejection = state.rejection?.reason ?? null;
    // Only move forward: a late writer with an older state never overwrites a newer one.
    const guard = force ? tx`` : tx`where orders.last_sequence < excluded.last_sequence`;
    const insertEvents =
      events.length === 0
        ? tx``
        : tx`ev as (
            insert into order_events
            select * from json_populate_recordset(null::order_events, ${JSON.stringify(events)}::json)
          ),`;
    await tx`
      with ${insertEvents} p as (
        insert into orders (id, user_id, status, total_minor, currency, items, payment_id,
                            rejection_reason, last_sequence, view, created_at, updated_at)
        values (${state.id}, ${state.userId}, ${state.status}, ${state.total.amountMinor.toString()},
                ${state.total.currencyCode}, ${JSON.stringify(items)}::jsonb, ${state.paymentId},
                ${rejection}, ${state.lastSequence}, ${viewBytes}, ${toPgTime(state.createTime)},
                ${toPgTime(state.updateTime)})
        on conflict (id) do update set
          status = excluded.status, payment_id = excluded.payment_id,
          rejection_reason = excluded.rejection_reason, last_sequence = excluded.last_sequence,
          view = excluded.view, updated_at = excluded.updated_at
        ${guard}
        returning 1
      )
      select pg_notify(${channel}, ${state.id}) from p`;
  }

  async function loadEvents(
    executor: Executor,
    orderId: string,
    afterSequence = 0,
    limit = 10_000,
  ): Promise<OrderEvent[]> {
    const rows = await executor<{ payload: Buffer }[]>`
      select payload from order_events
      where order_id = ${orderId} and sequence > ${afterSequence}
      order by sequence limit ${limit}`;
    return rows.map((row) => fromBinary(OrderEventSchema, row.payload));
  }

  return {
    outbox,
    channel,
    loadEvents,
    writeProjection,

    async lockForSaga(tx, orderId) {
      // Lock first, read in the next statement: a statement that waited for
      // the lock still sees the snapshot it started with, so a single
      // "join … for update" would miss the events the lock holder committed.
      const locked = await tx`select 1 from orders where id = ${orderId} for update`;
      if (locked.length === 0) return undefined;
      const rows = await tx<
        {
          payload: Buffer;
          payment_method_token: string | null;
          deadline_at: string | null;
          completed_at: string | null;
        }[]
      >`
        select e.payload, s.payment_method_token, s.deadline_at, s.completed_at
        from order_events e
        left join order_sagas s on s.order_id = e.order_id
        where e.order_id = ${orderId}
        order by e.sequence`;
      const first = rows[0];
      if (!first) return undefined;
      const state = foldEvents(rows.map((row) => fromBinary(OrderEventSchema, row.payload)))!;
      const saga =
        first.deadline_at === null
          ? undefined
          : {
              paymentMethodToken: first.payment_method_token,
              deadlineAt: fromPgTime(first.deadline_at),
              completedAt: fromPgTimeOrNull(first.completed_at),
            };
      return { state, saga };
    },

    async loadState(tx, orderId, lock = "none") {
      if (lock !== "none") {
        const rows =
          lock === "skip"
            ? await tx`select 1 from orders where id = ${orderId} for update skip locked`
            : await tx`select 1 from orders where id = ${orderId} for update`;
        if (rows.length === 0) {
          if (lock === "skip") {
            const exists = await tx`select 1 from orders where id = ${orderId}`;
            if (exists.length > 0) return "locked";
          }
          return undefined;
        }
      }
      return foldEvents(await loadEvents(tx, orderId));
    },

    async append(tx, current, orderId, changes, meta = {}) {
      if (changes.length === 0) throw new Error("append needs at least one change");
      const now = meta.now ?? new Date();
      const occurTime = timestampFromDate(now);
      let state = current;
      const events: OrderEvent[] = [];
      for (const change of changes) {
        const sequence = (state?.lastSequence ?? 0) + 1;
        state = applyChange(state, change, sequence, now);
        if (state.id === "") state.id = orderId;
        events.push(
          create(OrderEventSchema, {
            eventId: uuidv7(),
            orderId,
            sequence: BigInt(sequence),
            occurTime,
            status: state.status,
            kind: change,
          }),
        );
      }
      const final = state!;
      const rows: EventRow[] = events.map((event) => ({
        order_id: orderId,
        sequence: Number(event.sequence),
        event_id: event.eventId,
        event_type: changeName(event.kind.case!),
        payload: `\\x${Buffer.from(toBinary(OrderEventSchema, event)).toString("hex")}`,
        occurred_at: toPgTime(now),
        causation_id: meta.causationId ?? null,
        correlation_id: meta.correlationId ?? null,
      }));
      try {
        // Events, projection and the watcher notification in one statement.
        await writeProjection(tx, final, false, rows);
      } catch (error) {
        if (isUniqueViolation(error, "order_events_pkey")) {
          throw new OrderConcurrencyError(orderId, current?.lastSequence ?? 0, { cause: error });
        }
        throw error;
      }
      const appended = await outbox.append(
        tx,
        events.map((event) =>
          outboxEvent(OrderEventSchema, event, {
            aggregateType: "order",
            aggregateId: orderId,
            eventName: changeName(event.kind.case!),
            eventId: event.eventId,
            occurredAt: now,
          }),
        ),
      );
      // The bus's Aggregate-Seq header must equal OrderEvent.sequence; both
      // count every event of the order from 1, so they can only differ if an
      // event bypassed this function.
      appended.forEach((entry, i) => {
        if (entry.aggregateSeq !== Number(events[i]!.sequence)) {
          throw new EventStoreIntegrityError(
            `outbox sequence ${entry.aggregateSeq} != order sequence ${events[i]!.sequence} for ${orderId}`,
          );
        }
      });
      await options.onAppend?.(tx, events);
      return { state: final, events };
    },

    async getView(executor, orderId) {
      const rows = await executor<
        { view: Buffer }[]
      >`select view from orders where id = ${orderId}`;
      const row = rows[0];
      return row ? fromBinary(OrderSchema, row.view) : undefined;
    },
  };
}
