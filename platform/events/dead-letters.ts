import type { JetStreamClient, JetStreamManager, PubAck, StoredMsg } from "@nats-io/jetstream";
import { type MsgHdrs, headers as natsHeaders } from "@nats-io/nats-core";
import { v7 as uuidv7 } from "uuid";
import { EventError } from "./errors.js";
import { EventHeader } from "./message-format.js";

/**
 * A dead letter is the original payload and headers plus these, published to
 * `<prefix>.<stream>.<consumer>` on the DLQ stream.
 */
export const DeadLetterHeader = {
  reason: "Dlq-Reason",
  error: "Dlq-Error",
  attempts: "Dlq-Attempts",
  consumer: "Dlq-Consumer",
  stream: "Dlq-Stream",
  streamSeq: "Dlq-Stream-Seq",
  subject: "Dlq-Subject",
  msgId: "Dlq-Msg-Id",
  failedAt: "Dlq-Failed-At",
} as const;

export type DeadLetterReason =
  /** The handler threw on every attempt. */
  | "handler_failed"
  /** Deliveries ran out without a recorded failure (crashes, ack timeouts). */
  | "attempts_exhausted"
  /** Event-Type names a type the consumer's registry does not know. */
  | "unknown_type"
  /** Payload or required headers cannot be decoded. */
  | "malformed";

export interface DeadLetterSource {
  subject: string;
  headers: MsgHdrs | undefined;
  data: Uint8Array;
  stream: string;
  streamSeq: number;
}

export interface DeadLetterDetails {
  reason: DeadLetterReason;
  error: string;
  attempts: number;
  consumer: string;
}

const MAX_ERROR_CHARS = 2_000;

/** Header values cannot carry CR/LF; keep error text on one bounded line. */
export function headerSafe(text: string, max = MAX_ERROR_CHARS): string {
  const flat = text.replace(/[\r\n]+/g, " ⏎ ");
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export function deadLetterSubject(prefix: string, stream: string, consumer: string): string {
  return `${prefix}.${stream}.${consumer}`;
}

export async function publishDeadLetter(
  js: JetStreamClient,
  prefix: string,
  source: DeadLetterSource,
  details: DeadLetterDetails,
  timeoutMs = 5_000,
): Promise<PubAck> {
  const h = natsHeaders();
  if (source.headers) {
    for (const key of source.headers.keys()) {
      if (key === EventHeader.msgId) continue;
      for (const value of source.headers.values(key)) h.append(key, value);
    }
  }
  if (source.headers?.has(EventHeader.msgId)) {
    h.set(DeadLetterHeader.msgId, source.headers.get(EventHeader.msgId));
  }
  h.set(DeadLetterHeader.reason, details.reason);
  h.set(DeadLetterHeader.error, headerSafe(details.error));
  h.set(DeadLetterHeader.attempts, String(details.attempts));
  h.set(DeadLetterHeader.consumer, details.consumer);
  h.set(DeadLetterHeader.stream, source.stream);
  h.set(DeadLetterHeader.streamSeq, String(source.streamSeq));
  h.set(DeadLetterHeader.subject, source.subject);
  h.set(DeadLetterHeader.failedAt, new Date().toISOString());
  return js.publish(deadLetterSubject(prefix, source.stream, details.consumer), source.data, {
    // A retried dead-lettering of the same delivery is stored once.
    msgID: `dlq:${source.stream}:${details.consumer}:${source.streamSeq}`,
    headers: h,
    timeout: timeoutMs,
  });
}

export interface DeadLetter {
  seq: number;
  time: Date;
  subject: string;
  reason: string;
  error: string;
  attempts: number;
  consumer: string;
  originalStream: string;
  originalSeq: number;
  originalSubject: string;
  eventType: string | undefined;
  eventId: string | undefined;
  sizeBytes: number;
  headers: Record<string, string[]>;
  data: Uint8Array;
}

function get(h: MsgHdrs | undefined, key: string): string | undefined {
  return h?.has(key) ? h.get(key) : undefined;
}

export function toDeadLetter(stored: StoredMsg): DeadLetter {
  const h = stored.header;
  const all: Record<string, string[]> = {};
  for (const key of h?.keys() ?? []) all[key] = h.values(key);
  return {
    seq: stored.seq,
    time: stored.time,
    subject: stored.subject,
    reason: get(h, DeadLetterHeader.reason) ?? "",
    error: get(h, DeadLetterHeader.error) ?? "",
    attempts: Number(get(h, DeadLetterHeader.attempts) ?? 0),
    consumer: get(h, DeadLetterHeader.consumer) ?? "",
    originalStream: get(h, DeadLetterHeader.stream) ?? "",
    originalSeq: Number(get(h, DeadLetterHeader.streamSeq) ?? 0),
    originalSubject: get(h, DeadLetterHeader.subject) ?? "",
    eventType: get(h, EventHeader.type),
    eventId: get(h, EventHeader.id),
    sizeBytes: stored.data.byteLength,
    headers: all,
    data: stored.data,
  };
}

async function getStored(
  jsm: JetStreamManager,
  stream: string,
  seq: number,
): Promise<StoredMsg | null> {
  try {
    return await jsm.streams.getMessage(stream, { seq });
  } catch (err) {
    // Deleted or expired sequences are holes, not failures.
    if (err instanceof Error && /no message found|not found/i.test(err.message)) return null;
    throw err;
  }
}

export interface ListDeadLettersOptions {
  stream: string;
  consumer?: string;
  originalStream?: string;
  limit?: number;
  /** Start at this DLQ sequence (default: the stream's first). */
  fromSeq?: number;
}

export async function listDeadLetters(
  jsm: JetStreamManager,
  options: ListDeadLettersOptions,
): Promise<DeadLetter[]> {
  const info = await jsm.streams.info(options.stream);
  const limit = options.limit ?? 100;
  const out: DeadLetter[] = [];
  const first = Math.max(options.fromSeq ?? 0, info.state.first_seq);
  for (let seq = first; seq <= info.state.last_seq && out.length < limit; seq++) {
    const stored = await getStored(jsm, options.stream, seq);
    if (!stored) continue;
    const letter = toDeadLetter(stored);
    if (options.consumer && letter.consumer !== options.consumer) continue;
    if (options.originalStream && letter.originalStream !== options.originalStream) continue;
    out.push(letter);
  }
  return out;
}

export async function getDeadLetter(
  jsm: JetStreamManager,
  stream: string,
  seq: number,
): Promise<DeadLetter | undefined> {
  const stored = await getStored(jsm, stream, seq);
  return stored ? toDeadLetter(stored) : undefined;
}

export class ReplayError extends EventError {
  override name = "ReplayError";
}

function replayHeaders(source: MsgHdrs | undefined, consumer: string | undefined): MsgHdrs {
  const h = natsHeaders();
  for (const key of source?.keys() ?? []) {
    if (key.startsWith("Dlq-") || key === EventHeader.msgId) continue;
    if (key === EventHeader.replayConsumer) continue;
    for (const value of source!.values(key)) h.append(key, value);
  }
  if (consumer) h.set(EventHeader.replayConsumer, consumer);
  return h;
}

export interface ReplayResult {
  subject: string;
  eventId: string | undefined;
  ack: PubAck;
}

/**
 * Republishes a dead letter to its original subject with a fresh Nats-Msg-Id
 * (JetStream would drop the old one as a duplicate) and the same Event-Id, so
 * the inbox applies it at most once. By default only the consumer that gave up
 * processes it; others on the stream ack and skip.
 */
export async function replayDeadLetter(
  jsm: JetStreamManager,
  js: JetStreamClient,
  options: { stream: string; seq: number; allConsumers?: boolean; keep?: boolean },
): Promise<ReplayResult> {
  const stored = await getStored(jsm, options.stream, options.seq);
  if (!stored) throw new ReplayError(`no dead letter ${options.stream}#${options.seq}`);
  const letter = toDeadLetter(stored);
  if (!letter.originalSubject) {
    throw new ReplayError(`${options.stream}#${options.seq} has no ${DeadLetterHeader.subject}`);
  }
  const target = options.allConsumers ? undefined : letter.consumer || undefined;
  const ack = await js.publish(letter.originalSubject, stored.data, {
    msgID: `replay:${uuidv7()}`,
    headers: replayHeaders(stored.header, target),
  });
  if (!options.keep) await jsm.streams.deleteMessage(options.stream, options.seq, false);
  return { subject: letter.originalSubject, eventId: letter.eventId, ack };
}

/**
 * Replays stream messages `fromSeq..toSeq` (inclusive) to their own subjects,
 * e.g. after a consumer bug was fixed. With `consumer` only that consumer
 * applies them; without it every consumer sees them and its inbox decides.
 */
export async function replayStreamRange(
  jsm: JetStreamManager,
  js: JetStreamClient,
  options: { stream: string; fromSeq: number; toSeq: number; consumer?: string },
): Promise<ReplayResult[]> {
  if (options.toSeq < options.fromSeq) throw new ReplayError("toSeq is before fromSeq");
  const out: ReplayResult[] = [];
  for (let seq = options.fromSeq; seq <= options.toSeq; seq++) {
    const stored = await getStored(jsm, options.stream, seq);
    if (!stored) continue;
    const ack = await js.publish(stored.subject, stored.data, {
      msgID: `replay:${uuidv7()}`,
      headers: replayHeaders(stored.header, options.consumer),
    });
    out.push({ subject: stored.subject, eventId: get(stored.header, EventHeader.id), ack });
  }
  return out;
}
