import { type OrderEvent, OrderEventSchema } from "../../../gen/commerce/orders/v1/events_pb.js";

const kindOneof = OrderEventSchema.oneofs.find((oneof) => oneof.name === "kind")!;

/** Webhook event types: "order." + the OrderEvent `kind` field name ("order.stock_reserved"). */
export const WEBHOOK_EVENT_TYPES: readonly string[] = kindOneof.fields.map(
  (f) => `order.${f.name}`,
);

const typeByLocalName = new Map(kindOneof.fields.map((f) => [f.localName, `order.${f.name}`]));

export function webhookEventType(event: OrderEvent): string {
  const type = event.kind.case ? typeByLocalName.get(event.kind.case) : undefined;
  if (!type) throw new Error(`order event ${event.eventId} has no kind`);
  return type;
}

/** An empty list subscribes to every type. */
export function subscribedTo(eventTypes: readonly string[], type: string): boolean {
  return eventTypes.length === 0 || eventTypes.includes(type);
}
