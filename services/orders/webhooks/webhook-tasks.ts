import { toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import type { Sql, TransactionSql } from "postgres";
import { Counter, type Registry } from "prom-client";
import { v7 as uuidv7 } from "uuid";
import { type OrderEvent, OrderEventSchema } from "../../../gen/commerce/orders/v1/events_pb.js";
import { WebhookDeliveryState } from "../../../gen/commerce/orders/v1/webhook_pb.js";
import { fromPgTime, fromPgTimeOrNull, toPgTime } from "../../../platform/db/pg-time.js";
import type { BackgroundTask } from "../../../platform/service/run-service.js";
import type { OrdersSettings } from "../orders-settings.js";
import { retryDelayMs } from "./backoff.js";
import { subscribedTo, webhookEventType } from "./event-types.js";
import { signatureHeader } from "./signing.js";
import { sendWebhook, type WebhookResult } from "./webhook-sender.js";

/** NOTIFY channel that wakes delivery workers (one per schema). */
export function webhookChannel(schema: string): string {
  return `webhooks_${schema}`.slice(0, 63);
}

/** NOTIFY channel telling every replica that subscriptions changed. */
export function subscriptionsChannel(schema: string): string {
  return `webhook_subs_${schema}`.slice(0, 63);
}

/** Upper bound on how stale a replica's subscription list can get if a notification is lost. */
const SUBSCRIPTION_CACHE_MS = 5_000;

interface ClaimedDelivery {
  id: string;
  subscription_id: string;
  event_id: string;
  body: string;
  attempt_count: number;
  give_up_at: string;
}

interface SubscriptionRow {
  url: string;
  enabled: boolean;
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: string | null;
  circuit_open_until: string | null;
  deleted_at: string | null;
}

export interface WebhookTasks {
  tasks: BackgroundTask[];
  /** Drops the cached subscription list (after a create or delete here). */
  subscriptionsChanged(): void;
  /** The order store's append hook: fan-out of new events into deliveries. */
  fanOut(tx: TransactionSql, events: OrderEvent[]): Promise<void>;
  /** Wakes local workers at once (new or redelivered deliveries). */
  wake(): void;
  /** One claim-and-send round; returns how many deliveries it handled (tests). */
  deliverDue(): Promise<number>;
}

/**
 * Partner webhooks: every appended order event is fanned out into one
 * delivery row per matching subscription in the append transaction itself
 * (so exactly once, and only for subscriptions that existed when the event
 * happened), and workers send due deliveries with Standard Webhooks signatures,
 * retrying with backoff and a per-endpoint circuit breaker. Delivery is at
 * least once; `webhook-id` (the event id) lets receivers deduplicate.
 */
export function createWebhookTasks(deps: {
  sql: Sql;
  schema: string;
  settings: OrdersSettings;
  logger: Logger;
  registry?: Registry;
}): WebhookTasks {
  const { sql, settings, logger } = deps;
  const hooks = settings.webhooks;
  const channel = webhookChannel(deps.schema);
  const attempts = new Counter({
    name: "orders_webhook_attempts_total",
    help: "Webhook delivery attempts, by result.",
    labelNames: ["result"] as const,
    registers: deps.registry ? [deps.registry] : [],
  });

  // Every append consults the subscriptions; they change rarely, so the list
  // is cached and dropped on a NOTIFY from whichever replica changed it.
  let cached: { rows: { id: string; event_types: string[] }[]; at: number } | undefined;
  let generation = 0;
  const subscriptionsChanged = () => {
    generation++;
    cached = undefined;
  };
  async function liveSubscriptions(tx: TransactionSql) {
    if (cached && Date.now() - cached.at < SUBSCRIPTION_CACHE_MS) return cached.rows;
    const at = Date.now();
    const loading = generation;
    const rows = [
      ...(await tx<{ id: string; event_types: string[] }[]>`
        select id, event_types from webhook_subscriptions where deleted_at is null and enabled`),
    ];
    // A change announced while loading may not be in this snapshot: do not keep it.
    if (loading === generation) cached = { rows, at };
    return rows;
  }

  /** Creates one delivery per matching subscription, inside the append transaction. */
  async function fanOut(tx: TransactionSql, events: OrderEvent[]): Promise<void> {
    const subscriptions = await liveSubscriptions(tx);
    if (subscriptions.length === 0) return;
    const now = new Date();
    const rows = [];
    for (const event of events) {
      const type = webhookEventType(event);
      const matching = subscriptions.filter((s) => subscribedTo(s.event_types, type));
      if (matching.length === 0) continue;
      const occurred = event.occurTime ? timestampDate(event.occurTime) : now;
      const body = JSON.stringify({
        type,
        timestamp: occurred.toISOString(),
        data: toJson(OrderEventSchema, event),
      });
      for (const s of matching) {
        rows.push({
          id: uuidv7(),
          subscription_id: s.id,
          event_id: event.eventId,
          event_type: type,
          order_id: event.orderId,
          body,
          state: WebhookDeliveryState.PENDING,
          attempt_count: 0,
          // (postgres.js row helpers pass values untyped: dates go as ISO text.)
          next_attempt_at: toPgTime(now),
          give_up_at: toPgTime(new Date(now.getTime() + hooks.retryPeriodMs)),
          created_at: toPgTime(now),
          updated_at: toPgTime(now),
        });
      }
    }
    if (rows.length === 0) return;
    await tx`insert into webhook_deliveries ${tx(rows)} on conflict do nothing`;
    await tx`select pg_notify(${channel}, '')`;
  }

  // ---- delivery ----
  let stopped = true;
  let wakeLoop: (() => void) | undefined;
  let pendingWake = false;
  let loop: Promise<void> = Promise.resolve();
  let unlisten: (() => Promise<void>) | undefined;
  const wake = () => {
    pendingWake = true;
    wakeLoop?.();
  };

  async function record(
    delivery: ClaimedDelivery,
    lease: string,
    result: WebhookResult,
    breaker: "success" | "failure" | "skip",
    retryAt?: Date,
  ): Promise<void> {
    const attemptNumber = delivery.attempt_count + 1;
    const ok = result.status >= 200 && result.status < 300;
    const next = ok
      ? null
      : (retryAt ??
        new Date(
          Date.now() + retryDelayMs(attemptNumber, hooks.retryBaseDelayMs, hooks.retryMaxDelayMs),
        ));
    const state = ok
      ? WebhookDeliveryState.SUCCEEDED
      : next!.getTime() > fromPgTime(delivery.give_up_at).getTime()
        ? WebhookDeliveryState.FAILED
        : WebhookDeliveryState.RETRYING;
    attempts.inc({ result: ok ? "success" : result.error || `http_${result.status}` });
    await sql.begin(async (tx) => {
      const updated = await tx`
        update webhook_deliveries set
          state = ${state}, attempt_count = ${attemptNumber},
          next_attempt_at = ${state === WebhookDeliveryState.RETRYING ? toPgTime(next!) : null},
          lease_until = null, updated_at = now()
        where id = ${delivery.id} and lease_until = ${lease}`;
      // Lost the lease (this attempt outlived it): the new owner records its own.
      if (updated.count === 0) return;
      await tx`
        insert into webhook_attempts (delivery_id, attempt_number, attempted_at, http_status,
                                      latency_us, error)
        values (${delivery.id}, ${attemptNumber}, ${toPgTime(new Date(Date.now() - result.latencyUs / 1000))},
                ${result.status}, ${result.latencyUs}, ${result.error})
        on conflict do nothing`;
      if (breaker === "success") {
        await tx`update webhook_subscriptions set consecutive_failures = 0, circuit_open_until = null
                 where id = ${delivery.subscription_id}`;
      } else if (breaker === "failure") {
        await tx`
          update webhook_subscriptions set
            consecutive_failures = consecutive_failures + 1,
            circuit_open_until = case
              when consecutive_failures + 1 >= ${hooks.breakerThreshold}
              then now() + ${hooks.breakerCooldownMs} * interval '1 millisecond'
              else circuit_open_until end
          where id = ${delivery.subscription_id}`;
      }
    });
  }

  async function deliver(delivery: ClaimedDelivery, lease: string): Promise<void> {
    const [subscription] = await sql<SubscriptionRow[]>`
      select url, enabled, secret, previous_secret, previous_secret_expires_at,
             circuit_open_until, deleted_at
      from webhook_subscriptions where id = ${delivery.subscription_id}`;
    if (!subscription || subscription.deleted_at || !subscription.enabled) {
      await sql`update webhook_deliveries set state = ${WebhookDeliveryState.FAILED},
                  next_attempt_at = null, lease_until = null, updated_at = now()
                where id = ${delivery.id} and lease_until = ${lease}`;
      return;
    }
    const now = Date.now();
    const openUntil = fromPgTimeOrNull(subscription.circuit_open_until)?.getTime() ?? 0;
    if (openUntil > now) {
      // Half-open after the cooldown: the first due delivery then probes.
      const retryAt = new Date(openUntil + Math.round(Math.random() * hooks.pollIntervalMs));
      await record(
        delivery,
        lease,
        { status: 0, latencyUs: 0, error: "circuit open" },
        "skip",
        retryAt,
      );
      return;
    }
    const timestamp = new Date(Math.floor(now / 1000) * 1000);
    const secrets = [subscription.secret];
    if (
      subscription.previous_secret &&
      (fromPgTimeOrNull(subscription.previous_secret_expires_at)?.getTime() ?? 0) > now
    ) {
      secrets.push(subscription.previous_secret);
    }
    const result = await sendWebhook(
      {
        url: subscription.url,
        headers: {
          "webhook-id": delivery.event_id,
          "webhook-timestamp": String(timestamp.getTime() / 1000),
          "webhook-signature": signatureHeader(
            secrets,
            delivery.event_id,
            timestamp,
            delivery.body,
          ),
        },
        body: delivery.body,
      },
      {
        allowedHosts: hooks.allowedHosts,
        timeoutMs: hooks.requestTimeoutMs,
        maxResponseBytes: hooks.maxResponseBytes,
      },
    );
    const ok = result.status >= 200 && result.status < 300;
    await record(delivery, lease, result, ok ? "success" : "failure");
  }

  async function deliverDue(): Promise<number> {
    const lease = toPgTime(new Date(Date.now() + hooks.requestTimeoutMs + 30_000));
    const claimed = await sql<ClaimedDelivery[]>`
      update webhook_deliveries d set lease_until = ${lease}
      from (
        select id from webhook_deliveries
        where state in (${WebhookDeliveryState.PENDING}, ${WebhookDeliveryState.RETRYING})
          and next_attempt_at <= now()
          and (lease_until is null or lease_until < now())
        order by next_attempt_at
        limit ${hooks.concurrency}
        for update skip locked
      ) due
      where d.id = due.id
      returning d.id, d.subscription_id, d.event_id::text as event_id, d.body, d.attempt_count,
                d.give_up_at`;
    await Promise.all(
      claimed.map((delivery) =>
        deliver(delivery, lease).catch((error) =>
          logger.warn({ err: error, deliveryId: delivery.id }, "webhook delivery failed to run"),
        ),
      ),
    );
    return claimed.length;
  }

  async function run(): Promise<void> {
    while (!stopped) {
      let handled = 0;
      try {
        handled = await deliverDue();
      } catch (error) {
        logger.warn({ err: error }, "webhook worker round failed");
      }
      if (handled > 0 || stopped) continue;
      if (pendingWake) {
        pendingWake = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, hooks.pollIntervalMs);
        function done() {
          clearTimeout(timer);
          wakeLoop = undefined;
          resolve();
        }
        wakeLoop = done;
      });
      pendingWake = false;
    }
  }

  const tasks: BackgroundTask[] = [
    {
      name: "orders-webhook-worker",
      async start() {
        const listener = await sql.listen(channel, wake, wake);
        const subscriptionsListener = await sql.listen(
          subscriptionsChannel(deps.schema),
          subscriptionsChanged,
          subscriptionsChanged,
        );
        unlisten = async () => {
          await listener.unlisten();
          await subscriptionsListener.unlisten();
        };
        stopped = false;
        loop = run();
      },
      async stop() {
        stopped = true;
        wakeLoop?.();
        await loop;
        await unlisten?.().catch(() => {});
      },
    },
  ];

  return { tasks, fanOut, subscriptionsChanged, wake, deliverDue };
}
