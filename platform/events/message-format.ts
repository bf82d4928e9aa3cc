import {
  type DescMessage,
  fromBinary,
  type Message,
  type MessageShape,
  type Registry,
} from "@bufbuild/protobuf";
import { MalformedEventError, UnknownEventTypeError } from "./errors.js";

/**
 * Wire format of a domain event on JetStream (see README.md):
 * subject `<domain>.<aggregate>.<event>`, payload = binary protobuf, and these
 * headers. `Nats-Msg-Id` is the event id when the relay publishes (JetStream
 * dedup); a replay uses a fresh one and keeps `Event-Id`.
 */
export const EventHeader = {
  type: "Event-Type",
  id: "Event-Id",
  time: "Event-Time",
  aggregateType: "Aggregate-Type",
  aggregateId: "Aggregate-Id",
  aggregateSeq: "Aggregate-Seq",
  schemaVersion: "Schema-Version",
  traceparent: "traceparent",
  tracestate: "tracestate",
  /** Set by a replay aimed at one consumer; other consumers ack and skip. */
  replayConsumer: "Replay-Consumer",
  msgId: "Nats-Msg-Id",
} as const;

const TOKEN = /^[A-Za-z0-9_-]+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isSubjectToken(value: string): boolean {
  return TOKEN.test(value);
}

/** `OrderPlaced` → `order_placed`. */
export function defaultEventName(schema: DescMessage): string {
  return schema.name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
    .toLowerCase();
}

/** `commerce.orders.v2` → 2; packages without a version suffix are version 1. */
export function defaultSchemaVersion(schema: DescMessage): number {
  const match = /(?:^|\.)v(\d+)(?:[a-z]+\d*)?$/.exec(schema.file.proto.package ?? "");
  return match ? Number(match[1]) : 1;
}

export function eventSubject(domain: string, aggregateType: string, eventName: string): string {
  return `${domain}.${aggregateType}.${eventName}`;
}

/** Read-only view of NATS message headers (MsgHdrs satisfies it). */
export interface HeaderReader {
  get(key: string): string;
  has(key: string): boolean;
}

/** HeaderReader that can also list its keys (trace context extraction). */
export interface HeaderMap extends HeaderReader {
  keys(): string[];
}

/**
 * First value of every header, read once. MsgHdrs copies and filters all of
 * its keys on each get/has, and a consumer asks ~20 times per message.
 * Lookups stay exact-case, as MsgHdrs' default.
 */
export function readHeaders(headers: Iterable<[string, string[]]> | undefined): HeaderMap {
  const map = new Map<string, string>();
  if (headers) {
    for (const [key, values] of headers) {
      if (values.length > 0) map.set(key, values[0]!);
    }
  }
  return new FirstValues(map);
}

// A class rather than closures: no per-message function objects.
class FirstValues implements HeaderMap {
  constructor(private readonly map: Map<string, string>) {}
  get(key: string): string {
    return this.map.get(key) ?? "";
  }
  has(key: string): boolean {
    return this.map.has(key);
  }
  keys(): string[] {
    return [...this.map.keys()];
  }
}

export interface EventEnvelope {
  subject: string;
  headers: HeaderReader | undefined;
  data: Uint8Array;
}

export interface DecodedEvent<Desc extends DescMessage = DescMessage> {
  type: string;
  schema: Desc;
  message: MessageShape<Desc>;
  eventId: string;
  occurredAt: Date;
  aggregateType: string;
  aggregateId: string;
  aggregateSeq: number;
  schemaVersion: number;
  subject: string;
}

function header(headers: HeaderReader | undefined, key: string): string | undefined {
  if (!headers?.has(key)) return undefined;
  const value = headers.get(key);
  return value === "" ? undefined : value;
}

/**
 * Decodes a message to the generated type named by its `Event-Type` header.
 * Throws UnknownEventTypeError / MalformedEventError; the consumer turns those
 * into dead letters instead of retrying.
 */
export function decodeEvent(envelope: EventEnvelope, registry: Registry): DecodedEvent {
  const type = header(envelope.headers, EventHeader.type);
  if (type === undefined) throw new UnknownEventTypeError(undefined);
  const schema = registry.getMessage(type);
  if (!schema) throw new UnknownEventTypeError(type);
  const eventId = header(envelope.headers, EventHeader.id);
  if (eventId === undefined || !UUID.test(eventId)) {
    throw new MalformedEventError(`${type}: ${EventHeader.id} is missing or not a UUID`);
  }
  let message: Message;
  try {
    message = fromBinary(schema, envelope.data);
  } catch (cause) {
    throw new MalformedEventError(`${type}: payload is not a valid ${type} protobuf`, { cause });
  }
  const time = header(envelope.headers, EventHeader.time);
  const occurredAt = time ? new Date(time) : new Date(Number.NaN);
  const seq = Number(header(envelope.headers, EventHeader.aggregateSeq) ?? "0");
  return {
    type,
    schema,
    message,
    eventId,
    occurredAt,
    aggregateType: header(envelope.headers, EventHeader.aggregateType) ?? "",
    aggregateId: header(envelope.headers, EventHeader.aggregateId) ?? "",
    aggregateSeq: Number.isFinite(seq) ? seq : 0,
    schemaVersion: Number(header(envelope.headers, EventHeader.schemaVersion) ?? "1"),
    subject: envelope.subject,
  };
}

/** Narrows a decoded event to one generated type. */
export function isEventOf<Desc extends DescMessage>(
  event: DecodedEvent,
  schema: Desc,
): event is DecodedEvent<Desc> {
  return event.type === schema.typeName;
}
