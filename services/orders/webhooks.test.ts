import { Code } from "@connectrpc/connect";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Product } from "../../gen/commerce/catalog/v1/product_pb.js";
import { WebhookDeliveryState } from "../../gen/commerce/orders/v1/webhook_pb.js";
import {
  type CheckoutWorld,
  rpcError,
  startCheckoutWorld,
  violatedFields,
} from "./test-support/checkout-world.js";
import { startWebhookReceiver, type WebhookReceiver } from "./test-support/webhook-receiver.js";

let world: CheckoutWorld;
let product: Product;
let adminToken: string;
let userToken: string;
const receivers: WebhookReceiver[] = [];

beforeAll(async () => {
  world = await startCheckoutWorld({
    ordersEnv: {
      WEBHOOK_BREAKER_THRESHOLD: "4",
      WEBHOOK_BREAKER_COOLDOWN_MS: "1000",
      WEBHOOK_RETRY_PERIOD_MS: "4000",
      WEBHOOK_SECRET_GRACE_MS: "60000",
    },
  });
  product = await world.createProduct({ stock: 1_000 });
  adminToken = await world.auth.adminToken();
  userToken = await world.auth.userToken();
});

afterAll(async () => {
  await world?.stop();
  await Promise.all(receivers.map((r) => r.close()));
});

async function receiver(): Promise<WebhookReceiver> {
  const r = await startWebhookReceiver();
  receivers.push(r);
  return r;
}

async function subscribe(url: string, eventTypes = ["order.placed"]) {
  return world
    .webhookClient(adminToken)
    .createWebhookSubscription({ subscription: { url, eventTypes } });
}

async function placeOrder(): Promise<string> {
  const { order } = await world
    .orderClient(userToken)
    .createOrder(world.orderRequest([{ product, quantity: 1 }]));
  return order!.id;
}

async function deliveriesOf(subscriptionId: string) {
  const { deliveries } = await world
    .webhookClient(adminToken)
    .listWebhookDeliveries({ subscriptionId, pageSize: 100 });
  return deliveries;
}

async function waitForDelivery(
  subscriptionId: string,
  state: WebhookDeliveryState,
  timeoutMs = 30_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [delivery] = await deliveriesOf(subscriptionId);
    if (delivery?.state === state) return delivery;
    if (Date.now() > deadline) {
      throw new Error(
        `delivery not ${WebhookDeliveryState[state]}: ${JSON.stringify(delivery?.state)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("webhook deliveries", () => {
  it("retries an endpoint that fails 3 times and delivers once, with a valid signature", async () => {
    const endpoint = await receiver();
    endpoint.respond = ({ n }) => (n <= 3 ? 500 : 200);
    const { subscription, secret } = await subscribe(endpoint.url);
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    const orderId = await placeOrder();
    const delivery = await waitForDelivery(subscription!.id, WebhookDeliveryState.SUCCEEDED);
    // Nothing more after the success.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(endpoint.received.map((r) => r.status)).toEqual([500, 500, 500, 200]);
    expect(new Set(endpoint.received.map((r) => r.headers["webhook-id"])).size).toBe(1);
    const success = endpoint.received[3]!;
    const payload = new Webhook(secret).verify(success.body, success.headers) as {
      type: string;
      data: { orderId: string; sequence: string; status: string };
    };
    expect(payload).toMatchObject({
      type: "order.placed",
      data: { orderId, sequence: "1", status: "ORDER_STATUS_PENDING" },
    });
    // Every attempt signs the same body (only the timestamp header may differ).
    expect(new Set(endpoint.received.map((r) => r.body)).size).toBe(1);
    expect(delivery.eventId).toBe(success.headers["webhook-id"]);
    expect(delivery.orderId).toBe(orderId);
    expect(delivery.attempts.map((a) => a.httpStatus)).toEqual([500, 500, 500, 200]);
    expect(delivery.attempts.map((a) => a.attemptNumber)).toEqual([1, 2, 3, 4]);
    expect(delivery.attempts.every((a) => a.latency !== undefined)).toBe(true);
    expect(delivery.nextAttemptTime).toBeUndefined();
    await world.webhookClient(adminToken).deleteWebhookSubscription({ id: subscription!.id });
  });

  it("redelivers on request with the same webhook-id", async () => {
    const endpoint = await receiver();
    const { subscription, secret } = await subscribe(endpoint.url);
    await placeOrder();
    const delivery = await waitForDelivery(subscription!.id, WebhookDeliveryState.SUCCEEDED);
    const { delivery: again } = await world
      .webhookClient(adminToken)
      .redeliverWebhook({ deliveryId: delivery.id });
    expect(again?.state).toBe(WebhookDeliveryState.PENDING);
    await endpoint.waitFor((all) => all.length === 2);
    expect(endpoint.received[1]!.headers["webhook-id"]).toBe(
      endpoint.received[0]!.headers["webhook-id"],
    );
    expect(() =>
      new Webhook(secret).verify(endpoint.received[1]!.body, endpoint.received[1]!.headers),
    ).not.toThrow();
    const after = await waitForDelivery(subscription!.id, WebhookDeliveryState.SUCCEEDED);
    expect(after.attempts).toHaveLength(2);
    await world.webhookClient(adminToken).deleteWebhookSubscription({ id: subscription!.id });
  });

  it("signs with both secrets during a rotation", async () => {
    const endpoint = await receiver();
    const { subscription, secret: oldSecret } = await subscribe(endpoint.url);
    const { secret: newSecret, subscription: rotated } = await world
      .webhookClient(adminToken)
      .rotateWebhookSecret({ id: subscription!.id });
    expect(newSecret).not.toBe(oldSecret);
    expect(rotated?.previousSecretExpireTime).toBeDefined();
    await placeOrder();
    await endpoint.waitFor((all) => all.length >= 1);
    const request = endpoint.received[0]!;
    expect(request.headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    expect(() => new Webhook(oldSecret).verify(request.body, request.headers)).not.toThrow();
    expect(() => new Webhook(newSecret).verify(request.body, request.headers)).not.toThrow();
    await world.webhookClient(adminToken).deleteWebhookSubscription({ id: subscription!.id });
  });

  it("opens the circuit of a failing endpoint and gives up after the retry period", async () => {
    const endpoint = await receiver();
    endpoint.respond = () => 503;
    const { subscription } = await subscribe(endpoint.url);
    await placeOrder();
    const failed = await waitForDelivery(subscription!.id, WebhookDeliveryState.FAILED);
    const open = failed.attempts.filter((a) => a.error === "circuit open");
    expect(open.length).toBeGreaterThan(0);
    expect(open.every((a) => a.httpStatus === 0)).toBe(true);
    // Attempts skipped by the open circuit never reached the endpoint.
    expect(endpoint.received.length).toBe(failed.attempts.length - open.length);
    expect(failed.attempts.slice(0, 4).map((a) => a.httpStatus)).toEqual([503, 503, 503, 503]);
    const count = endpoint.received.length;
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(endpoint.received.length).toBe(count);
    await world.webhookClient(adminToken).deleteWebhookSubscription({ id: subscription!.id });
  });

  it("delivers only the subscribed event types", async () => {
    const endpoint = await receiver();
    const { subscription } = await subscribe(endpoint.url, ["order.confirmed"]);
    const orderId = await placeOrder();
    await world.waitForOrder(userToken, orderId);
    await endpoint.waitFor((all) => all.some((r) => r.body.includes(orderId)));
    const mine = endpoint.received.filter((r) => r.body.includes(orderId));
    expect(mine.map((r) => JSON.parse(r.body).type)).toEqual(["order.confirmed"]);
    await world.webhookClient(adminToken).deleteWebhookSubscription({ id: subscription!.id });
  });
});

describe("webhook subscriptions", () => {
  it("refuses private, loopback, link-local and unique-local targets, credentials and other schemes", async () => {
    const hooks = world.webhookClient(adminToken);
    const before = (await hooks.listWebhookSubscriptions({ pageSize: 100 })).subscriptions.length;
    for (const url of [
      "http://10.0.0.8/hook",
      "http://192.168.1.20/hook",
      "http://169.254.169.254/latest/meta-data",
      "http://[fd00::1]/hook",
      "http://[::ffff:10.0.0.1]/hook",
      "https://user:secret@example.com/hook",
      "ftp://example.com/hook",
      "file:///etc/passwd",
      "not a url",
    ]) {
      const error = await rpcError(hooks.createWebhookSubscription({ subscription: { url } }));
      expect(error.code, url).toBe(Code.InvalidArgument);
      expect(violatedFields(error), url).toEqual(["subscription.url"]);
    }
    const badType = await rpcError(
      hooks.createWebhookSubscription({
        subscription: { url: "http://127.0.0.1:9/hook", eventTypes: ["order.shipped"] },
      }),
    );
    expect(violatedFields(badType)).toEqual(["subscription.event_types[0]"]);
    const after = (await hooks.listWebhookSubscriptions({ pageSize: 100 })).subscriptions.length;
    expect(after).toBe(before);
  });

  it("is admin-only, never returns secrets in lists and is idempotent on request_id", async () => {
    const asUser = await rpcError(
      world
        .webhookClient(userToken)
        .createWebhookSubscription({ subscription: { url: "http://127.0.0.1:9/x" } }),
    );
    expect(asUser.code).toBe(Code.PermissionDenied);
    const hooks = world.webhookClient(adminToken);
    const requestId = crypto.randomUUID();
    const first = await hooks.createWebhookSubscription({
      subscription: { url: "http://127.0.0.1:9/x", description: "erp" },
      requestId,
    });
    const replay = await hooks.createWebhookSubscription({
      subscription: { url: "http://127.0.0.1:9/x", description: "erp" },
      requestId,
    });
    expect(replay.subscription?.id).toBe(first.subscription?.id);
    const conflict = await rpcError(
      hooks.createWebhookSubscription({ subscription: { url: "http://127.0.0.1:9/y" }, requestId }),
    );
    expect(conflict.code).toBe(Code.FailedPrecondition);
    const { subscriptions } = await hooks.listWebhookSubscriptions({});
    expect(
      JSON.stringify(subscriptions, (_k, v) => (typeof v === "bigint" ? String(v) : v)),
    ).not.toContain(first.secret);
    await hooks.deleteWebhookSubscription({ id: first.subscription!.id });
    const gone = await rpcError(hooks.deleteWebhookSubscription({ id: first.subscription!.id }));
    expect(gone.code).toBe(Code.NotFound);
  });
});
