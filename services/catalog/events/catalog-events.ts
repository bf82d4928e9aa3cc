import { create } from "@bufbuild/protobuf";
import { FieldMaskSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  ProductCreatedSchema,
  ProductDeletedSchema,
  ProductUndeletedSchema,
  ProductUpdatedSchema,
  ReservationExpiredSchema,
  StockAdjustedSchema,
  StockCommittedSchema,
  StockLowSchema,
  StockReleasedSchema,
  StockReservedSchema,
} from "../../../gen/commerce/catalog/v1/events_pb.js";
import type { Product } from "../../../gen/commerce/catalog/v1/product_pb.js";
import type {
  Stock,
  StockAdjustmentReason,
  StockItem,
} from "../../../gen/commerce/catalog/v1/stock_pb.js";
import { createOutbox, type OutboxEvent, outboxEvent } from "../../../platform/events/outbox.js";
import type { SqlExecutor } from "../../../platform/events/sql-executor.js";

/**
 * The catalog's events, on subjects `<domain>.product.<created|updated|…>`
 * and `<domain>.stock.<reserved|committed|…>` as events.proto describes.
 * Product events are keyed by product id; reservation events by order id;
 * stock level events (adjusted, low) by product id.
 */
export interface CatalogEvents {
  append(tx: SqlExecutor, events: readonly OutboxEvent[]): Promise<unknown>;
  productCreated(product: Product): OutboxEvent;
  productUpdated(product: Product, changedFields: string[]): OutboxEvent;
  productDeleted(product: Product): OutboxEvent;
  productUndeleted(product: Product): OutboxEvent;
  stockReserved(orderId: string, items: StockItem[], expireTime: Timestamp): OutboxEvent;
  stockCommitted(orderId: string, items: StockItem[]): OutboxEvent;
  stockReleased(orderId: string, items: StockItem[], reason: string): OutboxEvent;
  reservationExpired(orderId: string, items: StockItem[], expireTime: Timestamp): OutboxEvent;
  stockAdjusted(stock: Stock, delta: bigint, reason: StockAdjustmentReason): OutboxEvent;
  stockLow(productId: string, available: bigint, threshold: bigint): OutboxEvent;
}

export function createCatalogEvents(domain: string): CatalogEvents {
  const outbox = createOutbox({ domain });
  const product = (id: string, eventName: string) => ({
    aggregateType: "product",
    aggregateId: id,
    eventName,
  });
  const stock = (id: string, eventName: string) => ({
    aggregateType: "stock",
    aggregateId: id,
    eventName,
  });
  return {
    append: (tx, events) => outbox.append(tx, events),
    productCreated: (p) =>
      outboxEvent(
        ProductCreatedSchema,
        create(ProductCreatedSchema, { product: p }),
        product(p.id, "created"),
      ),
    productUpdated: (p, changedFields) =>
      outboxEvent(
        ProductUpdatedSchema,
        create(ProductUpdatedSchema, {
          product: p,
          changedFields: create(FieldMaskSchema, { paths: changedFields }),
        }),
        product(p.id, "updated"),
      ),
    productDeleted: (p) =>
      outboxEvent(
        ProductDeletedSchema,
        create(ProductDeletedSchema, {
          productId: p.id,
          sku: p.sku,
          ...(p.deleteTime ? { deleteTime: p.deleteTime } : {}),
        }),
        product(p.id, "deleted"),
      ),
    productUndeleted: (p) =>
      outboxEvent(
        ProductUndeletedSchema,
        create(ProductUndeletedSchema, { product: p }),
        product(p.id, "undeleted"),
      ),
    stockReserved: (orderId, items, expireTime) =>
      outboxEvent(
        StockReservedSchema,
        create(StockReservedSchema, { orderId, items, expireTime }),
        stock(orderId, "reserved"),
      ),
    stockCommitted: (orderId, items) =>
      outboxEvent(
        StockCommittedSchema,
        create(StockCommittedSchema, { orderId, items }),
        stock(orderId, "committed"),
      ),
    stockReleased: (orderId, items, reason) =>
      outboxEvent(
        StockReleasedSchema,
        create(StockReleasedSchema, { orderId, items, reason }),
        stock(orderId, "released"),
      ),
    reservationExpired: (orderId, items, expireTime) =>
      outboxEvent(
        ReservationExpiredSchema,
        create(ReservationExpiredSchema, { orderId, items, expireTime }),
        stock(orderId, "expired"),
      ),
    stockAdjusted: (level, delta, reason) =>
      outboxEvent(
        StockAdjustedSchema,
        create(StockAdjustedSchema, { productId: level.productId, delta, reason, stock: level }),
        stock(level.productId, "adjusted"),
      ),
    stockLow: (productId, available, threshold) =>
      outboxEvent(
        StockLowSchema,
        create(StockLowSchema, { productId, available, threshold }),
        stock(productId, "low"),
      ),
  };
}
