import type { Sql } from "postgres";
import type { OrderEvent } from "../../../gen/commerce/orders/v1/events_pb.js";
import type { OrderStatus } from "../../../gen/commerce/orders/v1/order_pb.js";
import { isTerminal } from "../domain/order-state.js";
import { EventStoreIntegrityError, type OrderStore } from "../store/order-store.js";

/** A wake-up signal for one order: "something may have been appended". */
export interface WatchSubscription {
  /** Resolves on a notification (or one that came since the last wait), a timeout or abort. */
  wait(timeoutMs: number, signal: AbortSignal): Promise<void>;
  close(): void;
}

export interface WatchHub {
  start(): Promise<void>;
  stop(): Promise<void>;
  subscribe(orderId: string): WatchSubscription;
  readonly watchers: number;
}

interface Waiter {
  dirty: boolean;
  wake: (() => void) | undefined;
}

/**
 * One LISTEN connection per process fans Postgres notifications (sent in the
 * same transaction as the append, so delivered only after commit) out to the
 * streams watching each order. Notifications only say "look again"; the
 * events themselves are always read from the table, in sequence order.
 */
export function createWatchHub(sql: Sql, channel: string): WatchHub {
  const byOrder = new Map<string, Set<Waiter>>();
  let unlisten: (() => Promise<void>) | undefined;
  let count = 0;

  const wake = (waiter: Waiter) => {
    waiter.dirty = true;
    const resolve = waiter.wake;
    waiter.wake = undefined;
    resolve?.();
  };
  const wakeAll = () => {
    for (const set of byOrder.values()) for (const waiter of set) wake(waiter);
  };

  return {
    get watchers() {
      return count;
    },
    async start() {
      const listener = await sql.listen(
        channel,
        (orderId) => {
          const set = byOrder.get(orderId);
          if (set) for (const waiter of set) wake(waiter);
        },
        // (Re)connected: anything may have been missed while disconnected.
        wakeAll,
      );
      unlisten = listener.unlisten;
    },
    async stop() {
      wakeAll();
      await unlisten?.().catch(() => {});
    },
    subscribe(orderId) {
      const waiter: Waiter = { dirty: false, wake: undefined };
      let set = byOrder.get(orderId);
      if (!set) {
        set = new Set();
        byOrder.set(orderId, set);
      }
      set.add(waiter);
      count++;
      let closed = false;
      return {
        wait(timeoutMs, signal) {
          if (waiter.dirty || signal.aborted) {
            waiter.dirty = false;
            return Promise.resolve();
          }
          return new Promise<void>((resolve) => {
            const done = () => {
              clearTimeout(timer);
              signal.removeEventListener("abort", done);
              waiter.wake = undefined;
              waiter.dirty = false;
              resolve();
            };
            const timer = setTimeout(done, timeoutMs);
            signal.addEventListener("abort", done, { once: true });
            waiter.wake = done;
          });
        },
        close() {
          if (closed) return;
          closed = true;
          count--;
          set.delete(waiter);
          if (set.size === 0 && byOrder.get(orderId) === set) byOrder.delete(orderId);
        },
      };
    },
  };
}

export interface WatchOptions {
  sql: Sql;
  store: OrderStore;
  hub: WatchHub;
  orderId: string;
  afterSequence: number;
  signal: AbortSignal;
  pollIntervalMs: number;
  /** Current status and last sequence of the order (from the projection). */
  readHead(): Promise<{ status: OrderStatus; lastSequence: number } | undefined>;
}

const BATCH = 500;

/**
 * The order's events after `afterSequence`, then live ones, strictly in
 * sequence. Subscribing BEFORE the first read means an event committed
 * between the replay and the wait still wakes us; every read asks the table
 * for `sequence > last`, so nothing is skipped or repeated across the switch
 * from replay to live. Ends after a terminal event when nothing follows it.
 */
export async function* watchOrderEvents(options: WatchOptions): AsyncGenerator<OrderEvent> {
  const { sql, store, hub, orderId, signal } = options;
  const subscription = hub.subscribe(orderId);
  try {
    let last = options.afterSequence;
    for (;;) {
      const batch = await store.loadEvents(sql, orderId, last, BATCH);
      for (const event of batch) {
        const sequence = Number(event.sequence);
        if (sequence !== last + 1) {
          throw new EventStoreIntegrityError(
            `order ${orderId}: sequence ${sequence} after ${last}`,
          );
        }
        last = sequence;
        yield event;
      }
      if (batch.length === BATCH) continue;
      const newest = batch.at(-1);
      if (newest) {
        if (isTerminal(newest.status)) return;
      } else {
        const head = await options.readHead();
        if (!head || (isTerminal(head.status) && last >= head.lastSequence)) return;
      }
      await subscription.wait(options.pollIntervalMs, signal);
      if (signal.aborted) return;
    }
  } finally {
    subscription.close();
  }
}
