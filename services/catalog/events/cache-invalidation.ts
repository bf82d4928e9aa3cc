import { createRegistry } from "@bufbuild/protobuf";
import { type ConsumerMessages, DeliverPolicy, jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import {
  ProductCreatedSchema,
  ProductDeletedSchema,
  ProductUndeletedSchema,
  ProductUpdatedSchema,
} from "../../../gen/commerce/catalog/v1/events_pb.js";
import type { CacheAside } from "../../../platform/cache/cache-aside.js";
import { decodeEvent } from "../../../platform/events/message-format.js";
import type { BackgroundTask } from "../../../platform/service/run-service.js";

const registry = createRegistry(
  ProductCreatedSchema,
  ProductUpdatedSchema,
  ProductDeletedSchema,
  ProductUndeletedSchema,
);

export interface CacheInvalidatorOptions {
  /** Read at start: the platform connects NATS before background tasks start. */
  nats: () => NatsConnection | undefined;
  stream: string;
  /** `<domain>.product.>` */
  subject: string;
  cache: CacheAside<unknown>;
  logger?: { warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
}

export interface CacheInvalidator extends BackgroundTask {
  readonly invalidated: number;
}

/**
 * Drops cached products when product events arrive, covering writes this
 * replica did not make or could not invalidate itself (another replica
 * crashed between commit and invalidation, Redis hiccup, the bulk import).
 *
 * Every replica must see every event, so this is an ephemeral ordered
 * consumer (no durable state to clean up, gap-free while connected, recreated
 * by the client after a reconnect) starting at "new": older writes are
 * already bounded by the cache TTL.
 *
 * The tombstone version is the event's aggregate sequence: every change of a
 * product row bumps its version by one and appends exactly one product event
 * in the same transaction, so sequence N describes version N.
 */
export function createCacheInvalidator(options: CacheInvalidatorOptions): CacheInvalidator {
  let messages: ConsumerMessages | undefined;
  let loop: Promise<void> = Promise.resolve();
  let stopping = false;
  let invalidated = 0;

  async function subscribe(nc: NatsConnection): Promise<ConsumerMessages> {
    const consumer = await jetstream(nc).consumers.get(options.stream, {
      // One subject as a string: nats-server 2.9 has no multi-filter consumers.
      filter_subjects: options.subject,
      deliver_policy: DeliverPolicy.New,
    });
    return consumer.consume();
  }

  async function run(nc: NatsConnection, first: ConsumerMessages): Promise<void> {
    let current: ConsumerMessages | undefined = first;
    while (!stopping) {
      try {
        current ??= await subscribe(nc);
        messages = current;
        for await (const msg of current) {
          try {
            const event = decodeEvent(msg, registry);
            if (event.aggregateType === "product" && event.aggregateId !== "") {
              await options.cache.invalidate(event.aggregateId, event.aggregateSeq);
              invalidated++;
            }
          } catch (error) {
            options.logger?.warn(
              { err: error, subject: msg.subject },
              "cache invalidation skipped an event",
            );
          }
        }
      } catch (error) {
        if (stopping) return;
        options.logger?.error({ err: error }, "cache invalidation consumer failed; restarting");
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      current = undefined;
    }
  }

  return {
    name: "cache-invalidation",
    get invalidated() {
      return invalidated;
    },
    async start() {
      const nc = options.nats();
      if (!nc) throw new Error("cache invalidation needs a NATS connection");
      stopping = false;
      // Subscribed before start() returns: events of writes after readiness are seen.
      const first = await subscribe(nc);
      messages = first;
      loop = run(nc, first);
    },
    async stop() {
      stopping = true;
      await messages?.close();
      await loop;
    },
  };
}
