import { createHash, timingSafeEqual } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Sql } from "postgres";
import { v7 as uuidv7 } from "uuid";
import {
  type WebhookDelivery,
  WebhookDeliveryAttemptSchema,
  WebhookDeliverySchema,
  WebhookDeliveryState,
  type WebhookSubscription,
  WebhookSubscriptionSchema,
} from "../../../gen/commerce/orders/v1/webhook_pb.js";
import {
  CreateWebhookSubscriptionRequestSchema,
  type WebhookService,
} from "../../../gen/commerce/orders/v1/webhook_service_pb.js";
import { fromPgTime, fromPgTimeOrNull, toPgTime } from "../../../platform/db/pg-time.js";
import {
  FailedPreconditionError,
  type FieldViolation,
  InvalidArgumentError,
  NotFoundError,
} from "../../../platform/errors/domain-errors.js";
import { hasControlCharacters, isUuid } from "../domain/create-order-input.js";
import type { WebhookSettings } from "../orders-settings.js";
import { WEBHOOK_EVENT_TYPES } from "../webhooks/event-types.js";
import { generateWebhookSecret } from "../webhooks/signing.js";
import { checkWebhookTarget, parseWebhookUrl, WebhookTargetError } from "../webhooks/ssrf-guard.js";
import { callerOf } from "./caller.js";
import { decodePageToken, encodePageToken, filterFingerprint, pageSize } from "./page-token.js";

interface SubscriptionRow {
  id: string;
  url: string;
  event_types: string[];
  description: string;
  enabled: boolean;
  secret: string;
  secret_created_at: string;
  previous_secret_expires_at: string | null;
  request_hash: Buffer | null;
  created_at: string;
  updated_at: string;
}

interface DeliveryRow {
  id: string;
  subscription_id: string;
  event_id: string;
  event_type: string;
  order_id: string;
  state: number;
  next_attempt_at: string | null;
  created_at: string;
  updated_at: string;
}

interface AttemptRow {
  delivery_id: string;
  attempt_number: number;
  attempted_at: string;
  http_status: number;
  latency_us: number;
  error: string;
}

const MAX_EVENT_TYPES = WEBHOOK_EVENT_TYPES.length;
const MAX_ATTEMPTS_SHOWN = 50;

const ts = (value: string) => timestampFromDate(fromPgTime(value));

function toSubscription(row: SubscriptionRow): WebhookSubscription {
  const previousExpires = fromPgTimeOrNull(row.previous_secret_expires_at);
  return create(WebhookSubscriptionSchema, {
    id: row.id,
    url: row.url,
    eventTypes: row.event_types,
    description: row.description,
    enabled: row.enabled,
    secretCreateTime: ts(row.secret_created_at),
    previousSecretExpireTime:
      previousExpires && previousExpires.getTime() > Date.now()
        ? timestampFromDate(previousExpires)
        : undefined,
    createTime: ts(row.created_at),
    updateTime: ts(row.updated_at),
  });
}

function toDelivery(row: DeliveryRow, attempts: AttemptRow[]): WebhookDelivery {
  return create(WebhookDeliverySchema, {
    id: row.id,
    subscriptionId: row.subscription_id,
    eventId: row.event_id,
    eventType: row.event_type,
    orderId: row.order_id,
    state: row.state as WebhookDeliveryState,
    attempts: attempts.slice(-MAX_ATTEMPTS_SHOWN).map((a) =>
      create(WebhookDeliveryAttemptSchema, {
        attemptNumber: a.attempt_number,
        attemptTime: ts(a.attempted_at),
        httpStatus: a.http_status,
        latency: create(DurationSchema, {
          seconds: BigInt(Math.floor(a.latency_us / 1e6)),
          nanos: (a.latency_us % 1e6) * 1000,
        }),
        error: a.error,
      }),
    ),
    nextAttemptTime:
      row.state === WebhookDeliveryState.RETRYING && row.next_attempt_at
        ? ts(row.next_attempt_at)
        : undefined,
    createTime: ts(row.created_at),
    updateTime: ts(row.updated_at),
  });
}

function requireId(value: string, field: string): string {
  if (!isUuid(value)) throw InvalidArgumentError.field(field, "must be a UUID");
  return value.toLowerCase();
}

export function createWebhookService(deps: {
  sql: Sql;
  settings: WebhookSettings;
  /** Channel that wakes delivery workers in every replica. */
  channel: string;
  /** Channel that tells every replica the subscriptions changed. */
  subscriptionsChannel: string;
  wake(): void;
  subscriptionsChanged(): void;
}): Partial<ServiceImpl<typeof WebhookService>> {
  const { sql, settings } = deps;

  /** A new subscription must see the next events: drop every replica's cached list. */
  async function announce(): Promise<void> {
    deps.subscriptionsChanged();
    await sql`select pg_notify(${deps.subscriptionsChannel}, '')`;
  }

  async function attemptsOf(ids: string[]): Promise<Map<string, AttemptRow[]>> {
    const byDelivery = new Map<string, AttemptRow[]>();
    if (ids.length === 0) return byDelivery;
    const rows = await sql<AttemptRow[]>`
      select delivery_id, attempt_number, attempted_at, http_status, latency_us, error
      from webhook_attempts where delivery_id in ${sql(ids)}
      order by delivery_id, attempt_number`;
    for (const row of rows) {
      const list = byDelivery.get(row.delivery_id) ?? [];
      list.push(row);
      byDelivery.set(row.delivery_id, list);
    }
    return byDelivery;
  }

  return {
    async createWebhookSubscription(request, ctx) {
      const caller = callerOf(ctx);
      const input = request.subscription;
      if (!input) throw InvalidArgumentError.field("subscription", "is required");
      const violations: FieldViolation[] = [];
      let url: URL | undefined;
      try {
        url = parseWebhookUrl(input.url);
      } catch (error) {
        if (!(error instanceof WebhookTargetError)) throw error;
        violations.push({ field: "subscription.url", description: error.message });
      }
      const eventTypes = [...new Set(input.eventTypes)];
      if (eventTypes.length > MAX_EVENT_TYPES) {
        violations.push({ field: "subscription.event_types", description: "has too many entries" });
      }
      eventTypes.forEach((type, i) => {
        if (!WEBHOOK_EVENT_TYPES.includes(type)) {
          violations.push({
            field: `subscription.event_types[${i}]`,
            description: `unknown event type; one of ${WEBHOOK_EVENT_TYPES.join(", ")}`,
          });
        }
      });
      if ([...input.description].length > 200 || hasControlCharacters(input.description)) {
        violations.push({
          field: "subscription.description",
          description: "must be at most 200 characters without control characters",
        });
      }
      if (request.requestId !== "" && !isUuid(request.requestId)) {
        violations.push({ field: "request_id", description: "must be a UUID" });
      }
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      try {
        await checkWebhookTarget(url!, settings);
      } catch (error) {
        if (!(error instanceof WebhookTargetError)) throw error;
        throw InvalidArgumentError.field("subscription.url", error.message);
      }

      const requestId = request.requestId === "" ? null : request.requestId.toLowerCase();
      const hash = createHash("sha256")
        .update(toBinary(CreateWebhookSubscriptionRequestSchema, request))
        .digest();
      const secret = generateWebhookSecret();
      const now = toPgTime(new Date());
      const rows = await sql<SubscriptionRow[]>`
        insert into webhook_subscriptions (id, url, event_types, description, enabled, secret,
          secret_created_at, created_by, request_id, request_hash, created_at, updated_at)
        values (${uuidv7()}, ${url!.href}, ${eventTypes}, ${input.description}, true, ${secret},
                ${now}, ${caller.subject}, ${requestId}, ${requestId ? hash : null}, ${now}, ${now})
        on conflict (created_by, request_id) where request_id is not null do nothing
        returning *`;
      let row = rows[0];
      if (row) await announce();
      if (!row) {
        [row] = await sql<SubscriptionRow[]>`
          select * from webhook_subscriptions
          where created_by = ${caller.subject} and request_id = ${requestId}`;
        const stored = row?.request_hash;
        if (!row || !stored || stored.length !== hash.length || !timingSafeEqual(stored, hash)) {
          throw new FailedPreconditionError(
            "request_id was already used for a different request",
            "REQUEST_ID_REUSED",
          );
        }
      }
      return { subscription: toSubscription(row), secret: row.secret };
    },

    async listWebhookSubscriptions(request) {
      const size = pageSize(request.pageSize, 50, 100);
      const fingerprint = filterFingerprint(["subscriptions"]);
      const after = decodePageToken(request.pageToken, fingerprint);
      const rows = await sql<SubscriptionRow[]>`
        select * from webhook_subscriptions
        where deleted_at is null ${after ? sql`and id < ${after}` : sql``}
        order by id desc limit ${size + 1}`;
      const page = rows.slice(0, size);
      return {
        subscriptions: page.map(toSubscription),
        nextPageToken: rows.length > size ? encodePageToken(page.at(-1)!.id, fingerprint) : "",
      };
    },

    async deleteWebhookSubscription(request) {
      const id = requireId(request.id, "id");
      await sql.begin(async (tx) => {
        const deleted = await tx`
          update webhook_subscriptions set deleted_at = now(), updated_at = now()
          where id = ${id} and deleted_at is null returning 1`;
        if (deleted.length === 0) throw new NotFoundError("webhook_subscription", id);
        await tx`select pg_notify(${deps.subscriptionsChannel}, '')`;
        await tx`
          update webhook_deliveries set state = ${WebhookDeliveryState.FAILED},
            next_attempt_at = null, updated_at = now()
          where subscription_id = ${id}
            and state in (${WebhookDeliveryState.PENDING}, ${WebhookDeliveryState.RETRYING})`;
      });
      deps.subscriptionsChanged();
      return {};
    },

    async rotateWebhookSecret(request) {
      const id = requireId(request.id, "id");
      const secret = generateWebhookSecret();
      const [row] = await sql<SubscriptionRow[]>`
        update webhook_subscriptions set
          previous_secret = secret,
          previous_secret_expires_at = now() + ${settings.secretGraceMs} * interval '1 millisecond',
          secret = ${secret}, secret_created_at = now(), updated_at = now()
        where id = ${id} and deleted_at is null
        returning *`;
      if (!row) throw new NotFoundError("webhook_subscription", id);
      return { subscription: toSubscription(row), secret };
    },

    async listWebhookDeliveries(request) {
      const subscriptionId = requireId(request.subscriptionId, "subscription_id");
      const size = pageSize(request.pageSize, 50, 100);
      if (!Object.values(WebhookDeliveryState).includes(request.state)) {
        throw InvalidArgumentError.field("state", "unknown state");
      }
      const fingerprint = filterFingerprint([subscriptionId, request.state]);
      const after = decodePageToken(request.pageToken, fingerprint);
      // The log outlives a deleted subscription (retention), so deleted ones are found too.
      const exists = await sql`select 1 from webhook_subscriptions where id = ${subscriptionId}`;
      if (exists.length === 0) throw new NotFoundError("webhook_subscription", subscriptionId);
      const rows = await sql<DeliveryRow[]>`
        select id, subscription_id, event_id::text as event_id, event_type, order_id::text as order_id,
               state, next_attempt_at, created_at, updated_at
        from webhook_deliveries
        where subscription_id = ${subscriptionId}
          ${request.state === WebhookDeliveryState.UNSPECIFIED ? sql`` : sql`and state = ${request.state}`}
          ${after ? sql`and id < ${after}` : sql``}
        order by id desc limit ${size + 1}`;
      const page = rows.slice(0, size);
      const attempts = await attemptsOf(page.map((r) => r.id));
      return {
        deliveries: page.map((row) => toDelivery(row, attempts.get(row.id) ?? [])),
        nextPageToken: rows.length > size ? encodePageToken(page.at(-1)!.id, fingerprint) : "",
      };
    },

    async redeliverWebhook(request) {
      const id = requireId(request.deliveryId, "delivery_id");
      const [row] = await sql<(DeliveryRow & { deleted: boolean })[]>`
        select d.id, (s.deleted_at is not null) as deleted
        from webhook_deliveries d join webhook_subscriptions s on s.id = d.subscription_id
        where d.id = ${id}`;
      if (!row) throw new NotFoundError("webhook_delivery", id);
      if (row.deleted) {
        throw new FailedPreconditionError("the subscription was deleted", "SUBSCRIPTION_DELETED");
      }
      const [updated] = await sql<DeliveryRow[]>`
        with d as (
          update webhook_deliveries set
            state = ${WebhookDeliveryState.PENDING}, next_attempt_at = now(), lease_until = null,
            give_up_at = greatest(give_up_at, now()), updated_at = now()
          where id = ${id}
          returning id, subscription_id, event_id::text as event_id, event_type,
                    order_id::text as order_id, state, next_attempt_at, created_at, updated_at
        ), n as (select pg_notify(${deps.channel}, ''))
        select d.* from d, n`;
      deps.wake();
      const attempts = await attemptsOf([id]);
      return { delivery: toDelivery(updated!, attempts.get(id) ?? []) };
    },
  };
}
