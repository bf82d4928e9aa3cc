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
import { type Context, context, type Span, type Tracer } from "@opentelemetry/api";
import type { Sql, TransactionSql } from "postgres";
import type { Registry as MetricsRegistry } from "prom-client";
import { plainArray } from "../db/pg-array.js";
import { type DeadLetterReason, deadLetterSubject, publishDeadLetter } from "./dead-letters.js";
import { MalformedEventError, UnknownEventTypeError } from "./errors.js";
import { type EventLogger, stderrLogger } from "./logger.js";
import {
  type DecodedEvent,
  decodeEvent,
  EventHeader,
  type HeaderMap,
  readHeaders,
} from "./message-format.js";
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

export function drizzleTransactions<DB extends DrizzleLike>(
  db: DB,
): TransactionRunner<DrizzleTx<DB>> {
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

/** Receives events of one type together, in delivery order (so each aggregate's in sequence). */
export type BatchEventHandler<Desc extends DescMessage, Tx> = (
  events: DecodedEvent<Desc>[],
  ctx: { tx: Tx },
) => Promise<void>;

interface Entry<Tx> {
  schema: DescMessage;
  handle: EventHandler<DescMessage, Tx>;
  handleBatch?: BatchEventHandler<DescMessage, Tx>;
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

  /**
   * A set-based handler: when a transaction's events are all of this type it
   * gets them in one call (one multi-row statement instead of one per event,
   * e.g. for projections); otherwise, and when a batch is retried event by
   * event after a failure, it is called with one event at a time.
   */
  onBatch<Desc extends DescMessage>(schema: Desc, handleBatch: BatchEventHandler<Desc, Tx>): this {
    const batch = handleBatch as unknown as BatchEventHandler<DescMessage, Tx>;
    this.entries.set(schema.typeName, {
      schema,
      handle: (event, ctx) => batch([event], { tx: ctx.tx }),
      handleBatch: batch,
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
  /** Transactions running at once in this process (default 16); one aggregate runs in order. */
  concurrency?: number;
  /**
   * Events handled in one transaction when several are waiting (default 32).
   * On any failure the batch is rolled back and its events run one by one.
   */
  batchSize?: number;
  /**
   * Handlers of different aggregates in one batch run concurrently in the
   * batch's transaction (default false: one after another). postgres.js then
   * pipelines their statements on the connection instead of paying a round
   * trip each, which roughly halves the consumer's CPU per event. Events of
   * one aggregate still run in order. Enable it only when handlers of
   * different aggregates never read-modify-write the same rows in JavaScript
   * (single SQL statements such as `update … set n = n + 1` are fine): they
   * share one transaction, so no lock keeps them apart.
   */
  parallelAggregates?: boolean;
  /** Unacked messages across all replicas (default 1000). */
  maxAckPending?: number;
  deliverPolicy?: "all" | "new";
  deadLetters: { subjectPrefix: string };
  /** Inbox rows of this consumer older than this are deleted hourly (default 30 days). */
  inboxRetentionMs?: number;
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
  // Retry backoff is applied per failure with a delayed NAK. No consumer
  // `backoff` list: nats-server 2.9 adds backoff[n] - ack_wait to every NAK
  // delay (a 100 ms retry became 30 s), and it would replace ack_wait.
  return {
    durable_name: options.name,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(options.ackWaitMs),
    max_deliver: options.maxAttempts + 2,
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
    const keys = ["ack_wait", "max_deliver", "max_ack_pending", "filter_subject"] as const;
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

/**
 * Deletes inbox rows older than the retention. Keep it longer than any event
 * can come back: stream max age, DLQ max age, and replays (default 30 days).
 */
export async function pruneInbox(
  executor: SqlExecutor,
  options: { consumer: string; olderThanMs: number; batch?: number },
): Promise<number> {
  const batch = options.batch ?? 5_000;
  let total = 0;
  for (;;) {
    const rows = await runQuery(
      executor,
      `delete from inbox where consumer = $1 and event_id in (
         select event_id from inbox
         where consumer = $1 and processed_at < now() - make_interval(secs => $2)
         limit $3)
       returning 1`,
      [options.consumer, options.olderThanMs / 1000, batch],
    );
    total += rows.length;
    if (rows.length < batch) return total;
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
    batchSize = 32,
    maxAckPending = 1_000,
    parallelAggregates = false,
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
  // Label children resolved once: a labelled inc/observe hashes its labels on every call.
  const outcomeCounters = new Map(
    (Object.keys(stats) as ConsumerOutcome[]).map((outcome) => [
      outcome,
      metrics.messages.labels({ consumer: name, outcome }),
    ]),
  );
  const handlerSeconds = metrics.handlerSeconds.labels({ consumer: name });
  const count = (outcome: ConsumerOutcome) => {
    stats[outcome]++;
    outcomeCounters.get(outcome)?.inc();
  };

  let stopping = false;
  let messages: ConsumerMessages | undefined;
  let loopDone: Promise<void> = Promise.resolve();
  let removeSampler: (() => void) | undefined;
  let pruneTimer: NodeJS.Timeout | undefined;
  const inFlight = new Set<Promise<void>>();

  // Concurrency slots.
  let free = concurrency;
  const waiters: (() => void)[] = [];
  const acquire = (): Promise<void> => {
    if (free > 0 && waiters.length === 0) {
      free--;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => waiters.push(resolve));
  };
  const release = () => {
    const next = waiters.shift();
    if (next) next();
    else free++;
  };

  // Per-aggregate chains keep one aggregate's events in delivery order: a
  // batch starts after every earlier batch that shares an aggregate with it.
  const chains = new Map<string, Promise<void>>();
  const runKeyed = (keys: string[], task: () => Promise<void>): Promise<void> => {
    const unique = [...new Set(keys)];
    const previous = unique.flatMap((key) => {
      const tail = chains.get(key);
      return tail ? [tail] : [];
    });
    const next = previous.length === 0 ? task() : Promise.all(previous).then(task, task);
    for (const key of unique) chains.set(key, next);
    void next.finally(() => {
      for (const key of unique) if (chains.get(key) === next) chains.delete(key);
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

  /** A delivery with its headers and info read once (JsMsg re-parses `info` on every access). */
  interface Delivery {
    msg: JsMsg;
    headers: HeaderMap;
    streamSeq: number;
    deliveryCount: number;
  }

  interface Work {
    msg: JsMsg;
    aggregateKey: string;
    attempt: number;
    streamSeq: number;
    event: DecodedEvent;
    entry: Entry<Tx>;
    span: Span;
    ctx: Context;
    started: number;
  }

  /**
   * Everything decided without a transaction: replays meant for another
   * consumer, undecodable messages, types without a handler, exhausted
   * deliveries. Returns the work left for a handler.
   */
  async function triage(delivery: Delivery): Promise<Work | undefined> {
    const { msg, headers, streamSeq, deliveryCount: attempt } = delivery;
    const replayFor = headers.get(EventHeader.replayConsumer);
    if (replayFor && replayFor !== name) {
      msg.ack();
      count("skipped");
      return undefined;
    }
    const { span, ctx } = startProcessSpan(tracer, headers, {
      "messaging.destination.name": msg.subject,
      "messaging.consumer.group.name": name,
    });
    // Built only for a sampled span: with tracing off this ran per message for nothing.
    if (span.isRecording()) {
      span.setAttributes({
        "messaging.message.id": headers.get(EventHeader.id),
        "messaging.message.body.size": msg.data.byteLength,
        "messaging.nats.stream": stream,
        "messaging.nats.stream.sequence": streamSeq,
        "messaging.nats.delivery.count": attempt,
      });
    }
    const started = performance.now();
    let event: DecodedEvent;
    try {
      event = decodeEvent({ subject: msg.subject, headers, data: msg.data }, registry);
    } catch (err) {
      if (err instanceof UnknownEventTypeError || err instanceof MalformedEventError) {
        const reason = err instanceof UnknownEventTypeError ? "unknown_type" : "malformed";
        await deadLetter(msg, reason, errorText(err), attempt);
        endSpan(span, err);
        return undefined;
      }
      endSpan(span, err);
      throw err;
    }
    if (span.isRecording()) span.setAttribute("messaging.nats.event.type", event.type);
    const entry = handlers.entries.get(event.type);
    if (!entry) {
      msg.ack();
      count("skipped");
      endSpan(span);
      return undefined;
    }
    if (attempt > maxAttempts) {
      const error = `delivered ${attempt} times; earlier attempts did not finish (crash or ack timeout)`;
      await deadLetter(msg, "attempts_exhausted", error, attempt);
      endSpan(span, new Error(error));
      return undefined;
    }
    return {
      msg,
      aggregateKey: aggregateKey(delivery),
      attempt,
      streamSeq,
      event,
      entry,
      span,
      ctx,
      started,
    };
  }

  function succeeded(work: Work, applied: boolean): void {
    work.msg.ack();
    count(applied ? "processed" : "duplicate");
    handlerSeconds.observe((performance.now() - work.started) / 1000);
    endSpan(work.span);
  }

  /** One event in its own transaction; a failure is retried or dead-lettered. */
  async function runOne(work: Work): Promise<void> {
    const { msg, attempt, streamSeq, event, entry } = work;
    try {
      const applied = await context.with(work.ctx, () =>
        transaction(async (tx) => {
          const claimed = await runQuery(
            tx,
            `insert into inbox (consumer, event_id) values ($1, $2::uuid)
             on conflict do nothing returning 1 as claimed`,
            [name, event.eventId],
          );
          if (claimed.length === 0) return false;
          await entry.handle(event, { tx, attempt, streamSeq });
          return true;
        }),
      );
      succeeded(work, applied);
    } catch (err) {
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
      endSpan(work.span, err);
    }
  }

  /**
   * Several events in one transaction (one inbox insert, one commit). If
   * anything fails, nothing of the batch is kept and each event runs alone,
   * so only the failing one is retried or dead-lettered.
   */
  async function runMany(batch: Work[]): Promise<void> {
    let applied: Set<string>;
    try {
      applied = await transaction(async (tx) => {
        const rows = await runQuery<{ event_id: string }>(
          tx,
          `insert into inbox (consumer, event_id)
           select $1, unnest($2::uuid[])
           on conflict do nothing returning event_id::text as event_id`,
          [name, plainArray(batch.map((w) => w.event.eventId))],
        );
        const claimed = new Set(rows.map((row) => row.event_id));
        const ran = new Set<string>();
        const runnable: Work[] = [];
        for (const work of batch) {
          const id = work.event.eventId;
          // The same event twice in one batch (a replay next to the original) runs once.
          if (!claimed.has(id) || ran.has(id)) continue;
          ran.add(id);
          runnable.push(work);
        }
        const batchEntry = runnable[0]?.entry;
        if (batchEntry?.handleBatch && runnable.every((work) => work.entry === batchEntry)) {
          // The first event's trace context stands for the whole call.
          await context.with(runnable[0]!.ctx, () =>
            batchEntry.handleBatch!(
              runnable.map((work) => work.event),
              { tx },
            ),
          );
          return ran;
        }
        const lanes = new Map<string, Work[]>();
        for (const work of runnable) {
          const lane = parallelAggregates ? work.aggregateKey : "";
          const queue = lanes.get(lane);
          if (queue) queue.push(work);
          else lanes.set(lane, [work]);
        }
        const runLane = async (lane: Work[]) => {
          for (const work of lane) {
            await context.with(work.ctx, () =>
              work.entry.handle(work.event, {
                tx,
                attempt: work.attempt,
                streamSeq: work.streamSeq,
              }),
            );
          }
        };
        // Wait for every lane before failing: a lane still issuing statements
        // while the transaction rolls back would run them outside of it.
        const outcomes = await Promise.allSettled([...lanes.values()].map(runLane));
        const failure = outcomes.find((outcome) => outcome.status === "rejected");
        if (failure) throw failure.reason;
        return ran;
      });
    } catch {
      for (const work of batch) await runOne(work);
      return;
    }
    const acked = new Set<string>();
    for (const work of batch) {
      const id = work.event.eventId;
      succeeded(work, applied.has(id) && !acked.has(id));
      acked.add(id);
    }
  }

  async function processBatch(deliveries: Delivery[]): Promise<void> {
    const heartbeat = setInterval(() => {
      for (const { msg } of deliveries) msg.working();
    }, heartbeatMs);
    try {
      const work: Work[] = [];
      for (const delivery of deliveries) {
        const { msg } = delivery;
        try {
          const item = await triage(delivery);
          if (item) work.push(item);
        } catch (err) {
          logger.error({ err, consumer: name, subject: msg.subject }, "event triage failed");
          msg.nak(backoffMs[0] ?? 1_000);
          count("retried");
        }
      }
      if (work.length === 1) await runOne(work[0]!);
      else if (work.length > 1) await runMany(work);
    } catch (err) {
      // Unexpected (e.g. the database is down before any transaction began):
      // leave the messages for redelivery.
      logger.error({ err, consumer: name }, "event handling failed");
      for (const { msg } of deliveries) msg.nak(backoffMs[0] ?? 1_000);
      count("retried");
    } finally {
      clearInterval(heartbeat);
    }
  }

  function aggregateKey({ headers, streamSeq }: Delivery): string {
    return headers.has(EventHeader.aggregateId)
      ? `${headers.get(EventHeader.aggregateType)}\u0000${headers.get(EventHeader.aggregateId)}`
      : `seq:${streamSeq}`;
  }

  // Messages yielded in one burst form a batch; a batch starts when it is
  // full or when the burst ends (setImmediate runs after the buffered ones).
  let batch: Delivery[] = [];
  let flushScheduled = false;

  async function dispatch(): Promise<void> {
    const current = batch;
    batch = [];
    if (current.length === 0) return;
    await acquire();
    if (stopping) {
      // Never started: JetStream redelivers them after ack_wait.
      release();
      return;
    }
    const task = runKeyed(current.map(aggregateKey), () => processBatch(current)).finally(() => {
      release();
      inFlight.delete(task);
    });
    inFlight.add(task);
  }

  async function pull(): Promise<void> {
    const consumer = await js.consumers.get(stream, name);
    while (!stopping) {
      messages = await consumer.consume({ max_messages: Math.max(64, concurrency * batchSize) });
      for await (const msg of messages) {
        if (stopping) break;
        const { streamSequence, deliveryCount } = msg.info;
        batch.push({
          msg,
          headers: readHeaders(msg.headers),
          streamSeq: streamSequence,
          deliveryCount,
        });
        if (batch.length >= batchSize) {
          await dispatch();
        } else if (!flushScheduled) {
          flushScheduled = true;
          setImmediate(() => {
            flushScheduled = false;
            void dispatch();
          });
        }
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
      const inboxRetentionMs = options.inboxRetentionMs ?? 30 * 24 * 3_600_000;
      pruneTimer = setInterval(() => {
        transaction((tx) =>
          pruneInbox(tx, { consumer: name, olderThanMs: inboxRetentionMs }),
        ).catch((err) => logger.warn({ err, consumer: name }, "inbox prune failed"));
      }, 3_600_000);
      pruneTimer.unref();
      loopDone = pull().catch((err) => {
        if (!stopping) logger.error({ err, consumer: name }, "event consumer stopped");
      });
    },
    async stop() {
      stopping = true;
      removeSampler?.();
      clearInterval(pruneTimer);
      // Wake anyone waiting for a slot so the pull loop can exit.
      for (const waiter of waiters.splice(0)) waiter();
      await messages?.close();
      await Promise.allSettled([...inFlight]);
      await loopDone;
    },
  };
}
