import { createRegistry, type DescMessage, type Registry } from "@bufbuild/protobuf";
import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerMessages,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { type NatsConnection, nanos } from "@nats-io/nats-core";
import { context, type Tracer } from "@opentelemetry/api";
import type { Sql, TransactionSql } from "postgres";
import type { Registry as MetricsRegistry } from "prom-client";
import { deadLetterSubject, type DeadLetterReason, publishDeadLetter } from "./dead-letters.js";
import { MalformedEventError, UnknownEventTypeError } from "./errors.js";
import { type EventLogger, stderrLogger } from "./logger.js";
import { type DecodedEvent, decodeEvent, EventHeader } from "./message-format.js";
import { type ConsumerOutcome, consumerMetrics } from "./metrics.js";
import { runQuery, type SqlExecutor } from "./sql-executor.js";
import { endSpan, eventsTracer, startProcessSpan } from "./tracing.js";

/** Runs `fn` in one Postgres transaction and commits when it resolves. */
export type TransactionRunner<Tx> = <T>(fn: (tx: Tx) => Promise<T>) => Promise<T>;

export function postgresTransactions(sql: Sql): TransactionRunner<TransactionSql> {
  return <T>(fn: (tx: TransactionSql) => Promise<T>) => sql.begin(fn) as Promise<T>;
}

interface DrizzleLike {
  // biome-ignore lint/suspicious/noExplicitAny: drizzle's transaction callback type varies per driver
  transaction(fn: (tx: any) => Promise<any>): Promise<any>;
}

type DrizzleTx<DB extends DrizzleLike> = Parameters<Parameters<DB["transaction"]>[0]>[0];

export function drizzleTransactions<DB extends DrizzleLike>(db: DB): TransactionRunner<DrizzleTx<DB>> {
  return <T>(fn: (tx: DrizzleTx<DB>) => Promise<T>) => db.transaction(fn) as Promise<T>;
}

export interface HandlerContext<Tx> {
  /** The transaction that also records the event in the inbox. */
  tx: Tx;
  /** 1 on first delivery. */
  attempt: number;
  /** Stream sequence of this delivery (a replay has a new one). */
  streamSeq: number;
}

export type EventHandler<Desc extends DescMessage, Tx> = (
  event: DecodedEvent<Desc>,
  ctx: HandlerContext<Tx>,
) => Promise<void>;

interface Entry<Tx> {
  schema: DescMessage;
  handle: EventHandler<DescMessage, Tx>;
}

/** Typed handler table: `eventHandlers<Tx>().on(OrderPlacedSchema, async (e, ctx) => …)`. */
export class EventHandlers<Tx> {
  readonly entries = new Map<string, Entry<Tx>>();

  on<Desc extends DescMessage>(schema: Desc, handle: EventHandler<Desc, Tx>): this {
    this.entries.set(schema.typeName, {
      schema,
      handle: handle as unknown as EventHandler<DescMessage, Tx>,
    });
    return this;
  }
}

export function eventHandlers<Tx>(): EventHandlers<Tx> {
  return new EventHandlers<Tx>();
}

export interface ConsumerOptions<Tx extends SqlExecutor> {
  nc: NatsConnection;
  stream: string;
  /** Durable consumer name; also the inbox key. Must be stable across deploys. */
  name: string;
  filterSubject?: string;
  transaction: TransactionRunner<Tx>;
  handlers: EventHandlers<Tx>;
  /**
   * Types this consumer can decode. Defaults to the handled types. A known
   * type without a handler is acked and skipped; an unknown one is dead-lettered.
   */
  registry?: Registry;
  /** Handler attempts before the message is dead-lettered (default 5). */
  maxAttempts?: number;
  /** Retry delays after a handler error, by attempt; the last repeats. */
  backoffMs?: number[];
  /** Redelivery after a silent consumer (crash, hang without heartbeat); default 30 s. */
  ackWaitMs?: number;
  /** Interval of in-progress heartbeats while a handler runs (default ackWait / 3). */
  heartbeatMs?: number;
  /** Handlers running at once in this process (default 16); one aggregate runs in order. */
  concurrency?: number;
  /** Unacked messages across all replicas (default 1000). */
  maxAckPending?: number;
  deliverPolicy?: "all" | "new";
  deadLetters: { subjectPrefix: string };
  metricsRegistry?: MetricsRegistry;
  logger?: EventLogger;
  tracer?: Tracer;
}

export interface EventConsumer {
  start(): Promise<void>;
  /** Stops pulling, waits for in-flight handlers; unstarted messages are redelivered. */
  stop(): Promise<void>;
  readonly stats: Record<ConsumerOutcome, number>;
}

/** Server config of a durable consumer as this module creates it. */
export function consumerConfig(options: {
  name: string;
  filterSubject?: string;
  maxAttempts: number;
  ackWaitMs: number;
  maxAckPending: number;
  deliverPolicy: "all" | "new";
}): Partial<ConsumerConfig> {
  // Deliveries past maxAttempts are dead-lettered without running the handler;
  // two spare deliveries let that happen even after crashes on the last attempt.
  const maxDeliver = options.maxAttempts + 2;
  // Ack-timeout redeliveries back off too (JetStream then uses backoff[0] as ack_wait).
  const backoff = Array.from({ length: maxDeliver - 1 }, (_, i) =>
    nanos(Math.min(options.ackWaitMs * 2 ** i, 15 * 60_000)),
  );
  return {
    durable_name: options.name,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(options.ackWaitMs),
    max_deliver: maxDeliver,
    backoff,
    max_ack_pending: options.maxAckPending,
    deliver_policy: options.deliverPolicy === "new" ? DeliverPolicy.New : DeliverPolicy.All,
    ...(options.filterSubject ? { filter_subject: options.filterSubject } : {}),
  };
}

export async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  config: Partial<ConsumerConfig> & { durable_name: string },
): Promise<void> {
  try {
    const current = await jsm.consumers.info(stream, config.durable_name);
    const keys = ["ack_wait", "max_deliver", "backoff", "max_ack_pending", "filter_subject"] as const;
    const changed = keys.some(
      (key) => JSON.stringify(current.config[key] ?? null) !== JSON.stringify(config[key] ?? null),
    );
    if (changed) {
      const { durable_name: _durable, deliver_policy: _deliver, ...update } = config;
      await jsm.consumers.update(stream, config.durable_name, update);
    }
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound)) {
      throw err;
    }
    await jsm.consumers.add(stream, config);
  }
}

function errorText(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

export function createEventConsumer<Tx extends SqlExecutor>(
  options: ConsumerOptions<Tx>,
): EventConsumer {
  const {
    nc,
    stream,
    name,
    transaction,
    handlers,
    maxAttempts = 5,
    backoffMs = [1_000, 5_000, 30_000, 120_000],
    ackWaitMs = 30_000,
    concurrency = 16,
    maxAckPending = 1_000,
    deliverPolicy = "all",
    logger = stderrLogger,
    tracer = eventsTracer(),
  } = options;
  const heartbeatMs = options.heartbeatMs ?? Math.max(100, Math.floor(ackWaitMs / 3));
  const registry =
    options.registry ?? createRegistry(...[...handlers.entries.values()].map((e) => e.schema));
  const js = jetstream(nc);
  const metrics = consumerMetrics(options.metricsRegistry, name);
  const stats: Record<ConsumerOutcome, number> = {
    processed: 0,
    duplicate: 0,
    skipped: 0,
    retried: 0,
    dead_lettered: 0,
  };
  const count = (outcome: ConsumerOutcome) => {
    stats[outcome]++;
    metrics.messages.inc({ consumer: name, outcome });
  };

  let stopping = false;
  let messages: ConsumerMessages | undefined;
  let loopDone: Promise<void> = Promise.resolve();
  let removeSampler: (() => void) | undefined;
  const inFlight = new Set<Promise<void>>();

  // Concurrency slots.
  let free = concurrency;
  const waiters: (() => void)[] = [];
  const acquire = () =>
    free > 0 && waiters.length === 0
      ? (free--, Promise.resolve())
      : new Promise<void>((resolve) => waiters.push(resolve));
  const release = () => {
    const next = waiters.shift();
    if (next) next();
    else free++;
  };

  // Per-aggregate chains keep one aggregate's events in delivery order.
  const chains = new Map<string, Promise<void>>();
  const runKeyed = (key: string, task: () => Promise<void>): Promise<void> => {
    const previous = chains.get(key) ?? Promise.resolve();
    const next = previous.then(task, task);
    chains.set(key, next);
    void next.finally(() => {
      if (chains.get(key) === next) chains.delete(key);
    });
    return next;
  };

  async function deadLetter(
    msg: JsMsg,
    reason: DeadLetterReason,
    error: string,
    attempts: number,
  ): Promise<void> {
    try {
      await publishDeadLetter(
        js,
        options.deadLetters.subjectPrefix,
        {
          subject: msg.subject,
          headers: msg.headers,
          data: msg.data,
          stream,
          streamSeq: msg.info.streamSequence,
        },
        { reason, error, attempts, consumer: name },
      );
      // 2.9 servers do not understand `+TERM <reason>`; the reason is in the DLQ.
      msg.term();
      count("dead_lettered");
      logger.warn(
        {
          consumer: name,
          reason,
          error,
          attempts,
          subject: msg.subject,
          streamSeq: msg.info.streamSequence,
          dlq: deadLetterSubject(options.deadLetters.subjectPrefix, stream, name),
        },
        "event dead-lettered",
      );
    } catch (err) {
      // Keep the message; the next delivery (past maxAttempts) tries again.
      msg.nak(backoffMs[backoffMs.length - 1] ?? ackWaitMs);
      count("retried");
      logger.error({ err, consumer: name, subject: msg.subject }, "dead-lettering failed");
    }
  }

  async function handle(msg: JsMsg): Promise<void> {
    const attempt = msg.info.deliveryCount;
    const replayFor = msg.headers?.has(EventHeader.replayConsumer)
      ? msg.headers.get(EventHeader.replayConsumer)
      : "";
    if (replayFor && replayFor !== name) {
      msg.ack();
      count("skipped");
      return;
    }
    const { span, ctx } = startProcessSpan(tracer, msg.headers, {
      "messaging.destination.name": msg.subject,
      "messaging.consumer.group.name": name,
      "messaging.message.id": msg.headers?.has(EventHeader.id)
        ? msg.headers.get(EventHeader.id)
        : "",
      "messaging.message.body.size": msg.data.byteLength,
      "messaging.nats.stream": stream,
      "messaging.nats.stream.sequence": msg.info.streamSequence,
      "messaging.nats.delivery.count": attempt,
    });
    let spanError: unknown;
    const started = performance.now();
    try {
      let event: DecodedEvent;
      try {
        event = decodeEvent(msg, registry);
      } catch (err) {
        if (err instanceof UnknownEventTypeError || err instanceof MalformedEventError) {
          spanError = err;
          const reason = err instanceof UnknownEventTypeError ? "unknown_type" : "malformed";
          await deadLetter(msg, reason, errorText(err), attempt);
          return;
        }
        throw err;
      }
      span.setAttribute("messaging.nats.event.type", event.type);
      const entry = handlers.entries.get(event.type);
      if (!entry) {
        msg.ack();
        count("skipped");
        return;
      }
      if (attempt > maxAttempts) {
        spanError = new Error("attempts exhausted");
        await deadLetter(
          msg,
          "attempts_exhausted",
          `delivered ${attempt} times; earlier attempts did not finish (crash or ack timeout)`,
          attempt,
        );
        return;
      }
      const heartbeat = setInterval(() => msg.working(), heartbeatMs);
      try {
        const applied = await context.with(ctx, () =>
          transaction(async (tx) => {
            const claimed = await runQuery(
              tx,
              `insert into inbox (consumer, event_id) values ($1, $2::uuid)
               on conflict do nothing returning 1 as claimed`,
              [name, event.eventId],
            );
            if (claimed.length === 0) return false;
            await entry.handle(event, { tx, attempt, streamSeq: msg.info.streamSequence });
            return true;
          }),
        );
        clearInterval(heartbeat);
        msg.ack();
        count(applied ? "processed" : "duplicate");
        metrics.handlerSeconds.observe({ consumer: name }, (performance.now() - started) / 1000);
      } catch (err) {
        clearInterval(heartbeat);
        spanError = err;
        if (attempt >= maxAttempts) {
          await deadLetter(msg, "handler_failed", errorText(err), attempt);
        } else {
          const delay = backoffMs[Math.min(attempt - 1, backoffMs.length - 1)] ?? 1_000;
          msg.nak(delay);
          count("retried");
          logger.warn(
            { err, consumer: name, subject: msg.subject, attempt, retryInMs: delay },
            "event handler failed; will retry",
          );
        }
      }
    } finally {
      endSpan(span, spanError);
    }
  }

  async function pull(): Promise<void> {
    const consumer = await js.consumers.get(stream, name);
    while (!stopping) {
      messages = await consumer.consume({ max_messages: Math.max(64, concurrency * 4) });
      for await (const msg of messages) {
        if (stopping) break;
        await acquire();
        if (stopping) {
          release();
          break;
        }
        const key =
          msg.headers?.has(EventHeader.aggregateId) === true
            ? `${msg.headers.get(EventHeader.aggregateType)}\u0000${msg.headers.get(EventHeader.aggregateId)}`
            : `seq:${msg.info.streamSequence}`;
        const task = runKeyed(key, () =>
          handle(msg).catch((err) => {
            // Unexpected (e.g. database down before the transaction began):
            // leave the message for redelivery.
            logger.error({ err, consumer: name, subject: msg.subject }, "event handling failed");
            msg.nak(backoffMs[0] ?? 1_000);
            count("retried");
          }),
        ).finally(() => {
          release();
          inFlight.delete(task);
        });
        inFlight.add(task);
      }
      if (!stopping) {
        logger.warn({ consumer: name, stream }, "consume ended unexpectedly; restarting");
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  }

  return {
    stats,
    async start() {
      stopping = false;
      const jsm = await jetstreamManager(nc);
      await ensureConsumer(jsm, stream, {
        ...consumerConfig({
          name,
          maxAttempts,
          ackWaitMs,
          maxAckPending,
          deliverPolicy,
          ...(options.filterSubject ? { filterSubject: options.filterSubject } : {}),
        }),
        durable_name: name,
      });
      removeSampler = metrics.sampleLag(async () => {
        const info = await jsm.consumers.info(stream, name);
        return { pending: info.num_pending, ackPending: info.num_ack_pending };
      });
      loopDone = pull().catch((err) => {
        if (!stopping) logger.error({ err, consumer: name }, "event consumer stopped");
      });
    },
    async stop() {
      stopping = true;
      removeSampler?.();
      // Wake anyone waiting for a slot so the pull loop can exit.
      for (const waiter of waiters.splice(0)) waiter();
      await messages?.close();
      await Promise.allSettled([...inFlight]);
      await loopDone;
    },
  };
}
