/**
 * Event backbone building blocks a service composes (see README.md): tables
 * for its drizzle schema, the outbox API, the relay, stream provisioning, and
 * idempotent consumers with dead letters.
 */
export {
  type BatchEventHandler,
  type ConsumerOptions,
  consumerConfig,
  createEventConsumer,
  drizzleTransactions,
  type EventConsumer,
  type EventHandler,
  EventHandlers,
  ensureConsumer,
  eventHandlers,
  type HandlerContext,
  postgresTransactions,
  pruneInbox,
  type TransactionRunner,
} from "./consumer.js";
export {
  type DeadLetter,
  DeadLetterHeader,
  type DeadLetterReason,
  getDeadLetter,
  listDeadLetters,
  ReplayError,
  replayDeadLetter,
  replayStreamRange,
} from "./dead-letters.js";
export {
  EventError,
  EventTooLargeError,
  InvalidEventError,
  MalformedEventError,
  UnknownEventTypeError,
} from "./errors.js";
export type { EventLogger } from "./logger.js";
export {
  type DecodedEvent,
  decodeEvent,
  defaultEventName,
  defaultSchemaVersion,
  EventHeader,
  eventSubject,
  isEventOf,
} from "./message-format.js";
export { connectNats, type NatsOptions } from "./nats.js";
export {
  type AppendedEvent,
  type AppendOptions,
  appendEvents,
  createOutbox,
  DEFAULT_MAX_EVENT_BYTES,
  type Outbox,
  type OutboxEvent,
  outboxChannel,
  outboxEvent,
} from "./outbox.js";
export {
  type BatchResult,
  createOutboxRelay,
  type OutboxRelay,
  type RelayOptions,
} from "./relay.js";
export type { SqlExecutor } from "./sql-executor.js";
export {
  DEFAULT_DUPLICATE_WINDOW_MS,
  type DeadLetterStreamSpec,
  deadLetterStream,
  domainStream,
  provisionStreams,
  type StreamLimits,
  StreamProvisioningError,
  type StreamSpec,
} from "./streams.js";
export { inbox, outbox, outboxAggregates } from "./tables.js";
