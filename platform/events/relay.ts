import { type NatsConnection, headers as natsHeaders } from "@nats-io/nats-core";
import type { Tracer } from "@opentelemetry/api";
import type { Sql, TransactionSql } from "postgres";
import type { Registry } from "prom-client";
import { plainArray } from "../db/pg-array.js";
import { type EventLogger, stderrLogger } from "./logger.js";
import { EventHeader } from "./message-format.js";
import { relayMetrics } from "./metrics.js";
import { outboxChannel } from "./outbox.js";
import { type AckPublisher, createAckPublisher } from "./publish-acks.js";
import { endSpan, eventsTracer, injectCarrier, startPublishSpan } from "./tracing.js";

export interface RelayOptions {
  /** postgres.js client whose search_path starts with the service schema. */
  sql: Sql;
  schema: string;
  nc: NatsConnection;
  batchSize?: number;
  /** Polling fallback when no NOTIFY arrives (lost notification, LISTEN reconnecting). */
  pollIntervalMs?: number;
  /**
   * After publishing, keep polling this often for busyWindowMs (defaults 25 ms
   * and 2 s): under load the relay finds new rows without waiting for a NOTIFY,
   * which lets high-rate writers turn NOTIFY off (see appendEvents `notify`).
   */
  busyPollMs?: number;
  busyWindowMs?: number;
  publishTimeoutMs?: number;
  retryInitialMs?: number;
  /** Cap of the retry backoff; keep well below the streams' duplicate window. */
  retryMaxMs?: number;
  /** Sent rows are deleted after this long (default 24 h). */
  retentionMs?: number;
  pruneIntervalMs?: number;
  registry?: Registry;
  logger?: EventLogger;
  tracer?: Tracer;
  /**
   * Fault injection for tests: runs after the batch was published and before
   * it is marked sent. Throwing aborts the batch exactly like a relay crash
   * at that point (the rows stay pending, the messages are already stored).
   */
  hooks?: { beforeMarkSent?: (eventIds: string[]) => void | Promise<void> };
}

export interface BatchResult {
  selected: number;
  published: number;
  failed: number;
  /** Rows left for later because an earlier event of their aggregate was not sent yet. */
  blocked: number;
}

export interface OutboxRelay {
  start(): Promise<void>;
  /** Stops the loop after the batch in flight; pending rows stay for the next start. */
  stop(): Promise<void>;
  /** Publishes one batch now (tests, shutdown flush). */
  publishBatch(): Promise<BatchResult>;
  /** Deletes sent rows older than the retention; returns how many. */
  pruneSent(): Promise<number>;
  readonly stats: { published: number; failed: number; lastError: string | undefined };
}

interface OutboxRow {
  position: string;
  event_id: string;
  subject: string;
  event_type: string;
  schema_version: number;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_seq: string;
  payload: Buffer;
  trace_context: Record<string, string> | null;
  occurred_at: string;
  blocked: boolean;
}

/*
 * Rows are locked with SKIP LOCKED so replicas share the work. A row is
 * publishable only when no earlier event of its aggregate is still unsent
 * outside this batch: such an event is either being published by another
 * replica (its lock made us skip it) or failed earlier in this relay, and
 * publishing past it would reorder the aggregate.
 */
const SELECT_BATCH = `
with candidates as materialized (
  select position, event_id, subject, event_type, schema_version, aggregate_type,
         aggregate_id, aggregate_seq, payload, trace_context, occurred_at
  from outbox
  where sent_at is null
  order by position
  limit $1
  for update skip locked
)
select c.position::text as position, c.event_id::text as event_id, c.subject, c.event_type,
       c.schema_version, c.aggregate_type, c.aggregate_id, c.aggregate_seq::text as aggregate_seq,
       c.payload, c.trace_context,
       to_char(c.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as occurred_at,
       exists (
         select 1 from outbox p
         where p.aggregate_type = c.aggregate_type
           and p.aggregate_id = c.aggregate_id
           and p.aggregate_seq < c.aggregate_seq
           and p.sent_at is null
           and p.position not in (select position from candidates)
       ) as blocked
from candidates c
order by c.position`;

export function createOutboxRelay(options: RelayOptions): OutboxRelay {
  const {
    sql,
    schema,
    nc,
    batchSize = 500,
    pollIntervalMs = 1_000,
    busyPollMs = 25,
    busyWindowMs = 2_000,
    publishTimeoutMs = 5_000,
    retryInitialMs = 200,
    retryMaxMs = 30_000,
    retentionMs = 24 * 3_600_000,
    pruneIntervalMs = 60_000,
    logger = stderrLogger,
    tracer = eventsTracer(),
    hooks = {},
  } = options;
  // Created on first use: publishBatch() also runs without start().
  let acks: AckPublisher | undefined;
  const metrics = relayMetrics(options.registry, schema);
  const stats = { published: 0, failed: 0, lastError: undefined as string | undefined };

  let running = false;
  let stopping = false;
  let loopDone: Promise<void> = Promise.resolve();
  let unlisten: (() => Promise<void>) | undefined;
  let removeSampler: (() => void) | undefined;
  let statusIterator: { stop?: () => void } | undefined;
  let pruneTimer: NodeJS.Timeout | undefined;
  let pruning: Promise<unknown> = Promise.resolve();
  let connected = !nc.isClosed();

  // Wake-up plumbing: a NOTIFY (or reconnect, or stop) cuts the current sleep short.
  let pendingWake = false;
  let wakeSleeper: (() => void) | undefined;
  const wake = () => {
    pendingWake = true;
    wakeSleeper?.();
  };
  const sleep = (ms: number, wakeable: boolean) =>
    new Promise<void>((resolve) => {
      if (stopping || (wakeable && pendingWake)) {
        pendingWake = false;
        resolve();
        return;
      }
      const done = () => {
        clearTimeout(timer);
        wakeSleeper = undefined;
        pendingWake = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      wakeSleeper = wakeable ? done : () => stopping && done();
    });

  async function publishRow(row: OutboxRow): Promise<void> {
    const stored = row.trace_context ?? {};
    const { span, ctx } = startPublishSpan(tracer, stored, {
      "messaging.destination.name": row.subject,
      "messaging.message.id": row.event_id,
    });
    // Built only for a sampled span: with tracing off this ran per event for nothing.
    if (span.isRecording()) {
      span.setAttributes({
        "messaging.message.body.size": row.payload.byteLength,
        "messaging.nats.aggregate.type": row.aggregate_type,
        "messaging.nats.aggregate.id": row.aggregate_id,
      });
    }
    try {
      // A fresh header set: append, not set (set first deletes, scanning every key).
      const h = natsHeaders();
      h.append(EventHeader.type, row.event_type);
      h.append(EventHeader.id, row.event_id);
      h.append(EventHeader.time, row.occurred_at);
      h.append(EventHeader.aggregateType, row.aggregate_type);
      h.append(EventHeader.aggregateId, row.aggregate_id);
      h.append(EventHeader.aggregateSeq, row.aggregate_seq);
      h.append(EventHeader.schemaVersion, String(row.schema_version));
      // With an SDK the publish span becomes the consumer's parent; without
      // one, forward the writer's context unchanged.
      const injected = injectCarrier(ctx);
      const carrier = injected.traceparent ? injected : stored;
      if (carrier.traceparent) h.append(EventHeader.traceparent, carrier.traceparent);
      if (carrier.tracestate) h.append(EventHeader.tracestate, carrier.tracestate);
      h.append(EventHeader.msgId, row.event_id);
      acks ??= createAckPublisher(nc, publishTimeoutMs);
      const ack = await acks.publish(row.subject, row.payload, h);
      if (span.isRecording()) {
        span.setAttributes({
          "messaging.nats.stream": ack.stream,
          "messaging.nats.stream.sequence": ack.seq,
          "messaging.nats.duplicate": ack.duplicate,
        });
      }
      endSpan(span);
    } catch (err) {
      endSpan(span, err);
      throw err;
    }
  }

  async function runBatch(tx: TransactionSql): Promise<BatchResult> {
    const rows = (await tx.unsafe(SELECT_BATCH, [batchSize])) as unknown as OutboxRow[];
    const result: BatchResult = { selected: rows.length, published: 0, failed: 0, blocked: 0 };
    if (rows.length === 0) return result;
    const groups = new Map<string, OutboxRow[]>();
    for (const row of rows) {
      if (row.blocked) {
        result.blocked++;
        continue;
      }
      const key = `${row.aggregate_type}\u0000${row.aggregate_id}`;
      const group = groups.get(key);
      if (group) group.push(row);
      else groups.set(key, [row]);
    }
    const sent: OutboxRow[] = [];
    const failures: { row: OutboxRow; error: string }[] = [];
    // Aggregates publish concurrently; within one aggregate each publish waits
    // for its ack, so a lost message can never be overtaken by a later one.
    await Promise.all(
      [...groups.values()].map(async (group) => {
        group.sort((a, b) => Number(a.aggregate_seq) - Number(b.aggregate_seq));
        for (const row of group) {
          try {
            await publishRow(row);
            sent.push(row);
          } catch (err) {
            failures.push({ row, error: err instanceof Error ? err.message : String(err) });
            return;
          }
        }
      }),
    );
    if (sent.length > 0) {
      await hooks.beforeMarkSent?.(sent.map((row) => row.event_id));
      await tx.unsafe(
        `update outbox set sent_at = now(), publish_attempts = publish_attempts + 1, last_error = null
         where position = any($1::bigint[])`,
        [plainArray(sent.map((row) => row.position))],
      );
    }
    for (const failure of failures) {
      await tx.unsafe(
        `update outbox set publish_attempts = publish_attempts + 1, last_error = $2
         where position = $1::bigint`,
        [failure.row.position, failure.error.slice(0, 1000)],
      );
    }
    result.published = sent.length;
    result.failed = failures.length;
    if (failures.length > 0) stats.lastError = failures[0]!.error;
    return result;
  }

  async function publishBatch(): Promise<BatchResult> {
    const result = await sql.begin((tx) => runBatch(tx));
    stats.published += result.published;
    stats.failed += result.failed;
    if (result.published > 0) metrics.published.inc({ schema }, result.published);
    if (result.failed > 0) metrics.publishErrors.inc({ schema }, result.failed);
    return result;
  }

  async function loop(): Promise<void> {
    let failures = 0;
    let lastPublished = Number.NEGATIVE_INFINITY;
    const backoff = () => {
      const base = Math.min(retryMaxMs, retryInitialMs * 2 ** Math.min(failures, 20));
      return base / 2 + Math.random() * (base / 2);
    };
    while (!stopping) {
      if (!connected) {
        // Publishing now would only queue in the client; wait for the reconnect.
        failures++;
        await sleep(backoff(), true);
        continue;
      }
      let result: BatchResult;
      try {
        result = await publishBatch();
      } catch (err) {
        stats.lastError = err instanceof Error ? err.message : String(err);
        logger.error({ err, schema }, "outbox relay batch failed");
        result = { selected: 0, published: 0, failed: 1, blocked: 0 };
      }
      if (result.failed > 0) {
        failures++;
        logger.warn(
          {
            schema,
            failed: result.failed,
            retryInMs: Math.round(backoff()),
            error: stats.lastError,
          },
          "outbox publish failed; retrying with backoff",
        );
        await sleep(backoff(), false);
        continue;
      }
      failures = 0;
      if (result.published > 0) lastPublished = performance.now();
      if (result.published > 0 && result.selected >= batchSize) continue;
      // Rows held back behind another replica's batch become ready as soon as
      // it commits; look again soon instead of after a full poll interval.
      const busy = performance.now() - lastPublished < busyWindowMs;
      const wait = result.blocked > 0 ? 50 : busy ? busyPollMs : pollIntervalMs;
      await sleep(Math.min(wait, pollIntervalMs), true);
    }
  }

  async function pruneSent(): Promise<number> {
    let total = 0;
    for (;;) {
      const rows = await sql.unsafe(
        `delete from outbox where position in (
           select position from outbox
           where sent_at is not null and sent_at < now() - make_interval(secs => $1)
           limit 5000)
         returning 1`,
        [retentionMs / 1000],
      );
      total += rows.length;
      if (rows.length < 5000) return total;
    }
  }

  async function watchConnection(): Promise<void> {
    const iterator = nc.status();
    statusIterator = iterator as unknown as { stop?: () => void };
    for await (const status of iterator) {
      if (status.type === "disconnect") connected = false;
      if (status.type === "reconnect") {
        connected = true;
        wake();
      }
    }
  }

  return {
    stats,
    publishBatch,
    pruneSent,
    async start() {
      if (running) return;
      running = true;
      stopping = false;
      void watchConnection().catch(() => {});
      const listener = await sql.listen(outboxChannel(schema), wake, wake);
      unlisten = listener.unlisten;
      removeSampler = metrics.sampleLag(async () => {
        const [row] = await sql.unsafe(
          `select count(*)::int as pending,
                  coalesce(extract(epoch from now() - min(created_at)), 0)::float8 as age
           from outbox where sent_at is null`,
        );
        return { pending: Number(row?.pending ?? 0), oldestAgeSeconds: Number(row?.age ?? 0) };
      });
      pruneTimer = setInterval(() => {
        pruning = pruning.then(pruneSent).catch((err) => {
          logger.warn({ err, schema }, "outbox prune failed");
        });
      }, pruneIntervalMs);
      pruneTimer.unref();
      loopDone = loop();
    },
    async stop() {
      if (!running) return;
      stopping = true;
      wakeSleeper?.();
      clearInterval(pruneTimer);
      statusIterator?.stop?.();
      removeSampler?.();
      await loopDone;
      await pruning;
      acks?.close();
      acks = undefined;
      await unlisten?.().catch(() => {});
      running = false;
    },
  };
}
