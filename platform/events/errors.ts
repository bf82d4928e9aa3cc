/** Base class so callers can catch every event-backbone failure at once. */
export class EventError extends Error {
  override name = "EventError";
}

/** Refused at append time: the event would not fit in one JetStream message. */
export class EventTooLargeError extends EventError {
  override name = "EventTooLargeError";
  constructor(
    readonly eventType: string,
    readonly sizeBytes: number,
    readonly limitBytes: number,
  ) {
    super(`event ${eventType} is ${sizeBytes} bytes, above the ${limitBytes}-byte limit`);
  }
}

/** The event cannot be turned into a valid message (bad subject token, …). */
export class InvalidEventError extends EventError {
  override name = "InvalidEventError";
}

/** A received message names a type the consumer's registry does not know. */
export class UnknownEventTypeError extends EventError {
  override name = "UnknownEventTypeError";
  constructor(readonly eventType: string | undefined) {
    super(
      eventType === undefined
        ? "message has no Event-Type header"
        : `unknown event type "${eventType}" (not in the consumer's registry)`,
    );
  }
}

/** A received message's payload or headers cannot be decoded. */
export class MalformedEventError extends EventError {
  override name = "MalformedEventError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
