import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { jetstreamManager } from "@nats-io/jetstream";
import { CatalogService } from "../../gen/commerce/catalog/v1/catalog_service_pb.js";
import { InventoryService } from "../../gen/commerce/catalog/v1/inventory_service_pb.js";
import { ProductSchema } from "../../gen/commerce/catalog/v1/product_pb.js";
import type { TokenVerifier } from "../../platform/auth/token-verifier.js";
import { createCacheAside } from "../../platform/cache/cache-aside.js";
import type { Env } from "../../platform/config/env.js";
import { createOutboxRelay, type OutboxRelay } from "../../platform/events/relay.js";
import { domainStream, provisionStreams } from "../../platform/events/streams.js";
import { registerService } from "../../platform/server/rpc-server.js";
import type {
  BackgroundTask,
  ServiceDefinition,
  ServiceRuntime,
} from "../../platform/service/run-service.js";
import { createPageTokens } from "./domain/page-token.js";
import { createCacheInvalidator } from "./events/cache-invalidation.js";
import { createCatalogEvents } from "./events/catalog-events.js";
import { createInventoryHandlers } from "./inventory/inventory-handlers.js";
import { createReservationSweeper } from "./inventory/reservation-sweeper.js";
import { createCatalogHandlers } from "./products/catalog-handlers.js";
import type { VersionedProduct } from "./products/product-row.js";
import { loadCatalogSettings } from "./settings.js";

/**
 * The catalog service: CatalogService + InventoryService, the outbox relay,
 * the cache-invalidation consumer and the reservation sweeper. `env` is read
 * for catalog settings (tests pass their own to isolate keys and streams).
 */
export function createCatalogDefinition(
  options: { env?: Env; tokenVerifier?: TokenVerifier } = {},
): ServiceDefinition {
  return {
    name: "catalog",
    migrations: new URL("./migrations/", import.meta.url),
    needs: { postgres: true, redis: true, nats: true },
    build(runtime: ServiceRuntime) {
      const settings = loadCatalogSettings(options.env ?? process.env);
      const database = runtime.database;
      if (!database) throw new Error("catalog needs Postgres");
      const { logger } = runtime;
      const registry = runtime.metrics.registry;
      if (settings.pageTokenSecretIsDefault) {
        logger.warn("PAGE_TOKEN_SECRET is not set; using the local development secret");
      }
      const events = createCatalogEvents(settings.eventDomain);
      const cache = createCacheAside<VersionedProduct>({
        name: "product",
        redis: runtime.redis,
        keyPrefix: settings.redisKeyPrefix,
        ttlSeconds: settings.cacheTtlSeconds,
        timeoutMs: settings.cacheTimeoutMs,
        codec: {
          encode: (value) => toBinary(ProductSchema, value.product),
          decode: (bytes, version) => ({
            product: fromBinary(ProductSchema, bytes),
            version,
            encoded: bytes,
          }),
          version: (value) => value.version,
        },
        registry,
        logger,
      });
      const nats = () => runtime.nats;

      const stream: BackgroundTask = {
        name: "catalog-stream",
        async start() {
          if (!settings.provisionStream) return;
          const jsm = await jetstreamManager(nats()!);
          const limits = settings.streamMaxBytes ? { maxBytes: settings.streamMaxBytes } : {};
          await provisionStreams(jsm, [
            domainStream(settings.eventDomain, limits, settings.eventStream),
          ]);
        },
        stop() {},
      };
      let relay: OutboxRelay | undefined;
      const outboxRelay: BackgroundTask = {
        name: "outbox-relay",
        async start() {
          relay = createOutboxRelay({
            sql: database.sql,
            schema: database.schema,
            nc: nats()!,
            registry,
            logger,
          });
          await relay.start();
        },
        async stop() {
          await relay?.stop();
        },
      };
      const invalidator = createCacheInvalidator({
        nats,
        stream: settings.eventStream,
        subject: `${settings.eventDomain}.product.>`,
        cache,
        logger,
      });
      const sweeper = createReservationSweeper({
        sql: database.sql,
        events,
        intervalMs: settings.sweepIntervalMs,
        registry,
        logger,
      });

      return {
        services: [
          registerService(
            CatalogService,
            createCatalogHandlers({
              sql: database.sql,
              readSql: database.readSql,
              events,
              cache,
              tokens: createPageTokens(settings.pageTokenSecret),
              searchRankWindow: settings.searchRankWindow,
            }),
          ),
          registerService(
            InventoryService,
            createInventoryHandlers({
              sql: database.sql,
              readSql: database.readSql,
              events,
              reservationTtlSeconds: settings.reservationTtlSeconds,
              lowStockThreshold: settings.lowStockThreshold,
            }),
          ),
        ],
        background: [stream, outboxRelay, invalidator, sweeper],
        ...(options.tokenVerifier ? { tokenVerifier: options.tokenVerifier } : {}),
      };
    },
  };
}

export const catalogDefinition = createCatalogDefinition();
