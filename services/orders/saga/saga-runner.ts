import type { TransactionSql } from "postgres";
import { Counter, type Registry } from "prom-client";
import type { OrderEvent } from "../../../gen/commerce/orders/v1/events_pb.js";
import { OrderStatus } from "../../../gen/commerce/orders/v1/order_pb.js";
import { fromPgTime, fromPgTimeOrNull } from "../../../platform/db/pg-time.js";
import type { OrderState } from "../domain/order-state.js";
import { isTerminal } from "../domain/order-state.js";
import { nextSagaAction } from "../domain/saga-plan.js";
import type { OrderStore, SagaRow } from "../store/order-store.js";
import type { CheckoutSteps } from "./checkout-steps.js";

export type AdvanceOutcome =
  /** The order does not exist (yet). */
  | "missing"
  /** Another transaction holds the order (sweeper only). */
  | "locked"
  /** The triggering event is no longer the order's latest: its step was taken. */
  | "stale"
  /** Nothing to do (terminal). */
  | "idle"
  | "advanced";

export interface SagaRunner {
  /**
   * Takes the order's next saga step inside `tx`: locks the order, folds its
   * events, decides (pure), performs the remote calls and appends what
   * happened. Safe to repeat at any point: the decision only depends on the
   * recorded events and every remote call is idempotent on the order id.
   */
  advance(
    tx: TransactionSql,
    orderId: string,
    options?: { trigger?: OrderEvent; skipLocked?: boolean },
  ): Promise<AdvanceResult>;
}

export interface AdvanceResult {
  outcome: AdvanceOutcome;
  /** The order's last sequence after the call (0 when unknown). */
  sequence: number;
}

export function createSagaRunner(deps: {
  store: OrderStore;
  steps: CheckoutSteps;
  registry?: Registry;
}): SagaRunner {
  const { store, steps } = deps;
  const outcomes = new Counter({
    name: "orders_saga_outcomes_total",
    help: "Checkouts that reached a terminal status, by status.",
    labelNames: ["status"] as const,
    registers: deps.registry ? [deps.registry] : [],
  });
  const actions = new Counter({
    name: "orders_saga_steps_total",
    help: "Saga steps taken, by action.",
    labelNames: ["action"] as const,
    registers: deps.registry ? [deps.registry] : [],
  });

  return {
    async advance(tx, orderId, options = {}) {
      const trigger = options.trigger;
      if (trigger) {
        // Most deliveries find their step already taken (the fast path ran
        // ahead, or a batch appended several events): tell without a lock.
        if (isTerminal(trigger.status))
          return { outcome: "idle", sequence: Number(trigger.sequence) };
        const [head] = await tx<{ last_sequence: string }[]>`
          select last_sequence::text from orders where id = ${orderId}`;
        if (head && Number(head.last_sequence) > Number(trigger.sequence)) {
          return { outcome: "stale", sequence: Number(head.last_sequence) };
        }
      }
      let state: OrderState;
      let saga: SagaRow | undefined;
      if (options.skipLocked) {
        const found = await store.loadState(tx, orderId, "skip");
        if (found === "locked") return { outcome: "locked", sequence: 0 };
        if (!found) return { outcome: "missing", sequence: 0 };
        state = found;
        const [row] = await tx<
          {
            payment_method_token: string | null;
            deadline_at: string;
            completed_at: string | null;
          }[]
        >`
          select payment_method_token, deadline_at, completed_at
          from order_sagas where order_id = ${orderId}`;
        saga = row && {
          paymentMethodToken: row.payment_method_token,
          deadlineAt: fromPgTime(row.deadline_at),
          completedAt: fromPgTimeOrNull(row.completed_at),
        };
      } else {
        const found = await store.lockForSaga(tx, orderId);
        if (!found) return { outcome: "missing", sequence: 0 };
        ({ state, saga } = found);
      }
      if (trigger && Number(trigger.sequence) !== state.lastSequence) {
        return { outcome: "stale", sequence: state.lastSequence };
      }
      const action = nextSagaAction(state, {
        now: new Date(),
        deadline: saga?.deadlineAt,
      });
      if (action.kind === "none") {
        if (saga && !saga.completedAt && isTerminal(state.status)) {
          await tx`update order_sagas set completed_at = now(), payment_method_token = null
                   where order_id = ${orderId}`;
        }
        return { outcome: "idle", sequence: state.lastSequence };
      }
      actions.inc({
        action: action.kind === "compensate" ? `compensate_${action.why}` : action.kind,
      });
      const changes = await steps.run(state, action, saga?.paymentMethodToken ?? null);
      if (changes.length === 0) return { outcome: "idle", sequence: state.lastSequence };
      const { state: next } = await store.append(tx, state, orderId, changes, {
        causationId: trigger?.eventId,
        correlationId: state.requestId,
      });
      if (isTerminal(next.status)) {
        outcomes.inc({ status: OrderStatus[next.status] });
        // The payment token is needed no more: it leaves the database.
        await tx`update order_sagas set completed_at = now(), payment_method_token = null
                 where order_id = ${orderId}`;
      }
      return { outcome: "advanced", sequence: next.lastSequence };
    },
  };
}
