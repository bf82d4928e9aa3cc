import { createInbox, type Msg, type MsgHdrs, type NatsConnection } from "@nats-io/nats-core";

export interface PublishAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

export class PublishAckError extends Error {
  override name = "PublishAckError";
}

interface Waiter {
  resolve(ack: PublishAck): void;
  reject(err: Error): void;
  deadline: number;
}

export interface AckPublisher {
  /** Publishes to JetStream and resolves with the stream's ack (rejects on error or timeout). */
  publish(subject: string, payload: Uint8Array, headers: MsgHdrs): Promise<PublishAck>;
  close(): void;
}

const decoder = new TextDecoder();

/**
 * JetStream publish with every ack arriving on one wildcard reply
 * subscription and one sweep timer for timeouts. `js.publish` is a request
 * that allocates, per message, an Error with a captured stack (async traces)
 * plus a timeout Error and timer: at relay volume that was ~40% of the relay's
 * CPU. Semantics are the same: an ack means the stream stored (or
 * deduplicated) the message; anything else rejects.
 */
export function createAckPublisher(nc: NatsConnection, timeoutMs: number): AckPublisher {
  const prefix = createInbox();
  const waiters = new Map<string, Waiter>();
  let next = 0;
  let sweeper: NodeJS.Timeout | undefined;
  let closed = false;

  const settle = (msg: Msg) => {
    const token = msg.subject.slice(prefix.length + 1);
    const waiter = waiters.get(token);
    if (!waiter) return; // timed out already
    waiters.delete(token);
    if (msg.headers?.hasError) {
      // 503 = no responders: no stream listens on the subject (or JetStream is down).
      waiter.reject(
        new PublishAckError(
          msg.headers.code === 503
            ? "no responders: no stream accepted the message"
            : `publish failed: ${msg.headers.code} ${msg.headers.description}`,
        ),
      );
      return;
    }
    let ack: {
      stream?: string;
      seq?: number;
      duplicate?: boolean;
      error?: { description?: string; err_code?: number };
    };
    try {
      ack = JSON.parse(decoder.decode(msg.data));
    } catch (cause) {
      waiter.reject(new PublishAckError("invalid publish ack", { cause }));
      return;
    }
    if (ack.error || !ack.stream) {
      waiter.reject(
        new PublishAckError(
          ack.error
            ? `${ack.error.description ?? "publish rejected"} (${ack.error.err_code ?? "?"})`
            : "invalid publish ack",
        ),
      );
      return;
    }
    waiter.resolve({ stream: ack.stream, seq: ack.seq ?? 0, duplicate: ack.duplicate === true });
  };

  const sub = nc.subscribe(`${prefix}.*`, {
    callback: (err, msg) => {
      if (!err) settle(msg);
    },
  });

  const sweep = () => {
    const now = performance.now();
    // Insertion order is deadline order (a fixed timeout), so stop at the first live one.
    for (const [token, waiter] of waiters) {
      if (waiter.deadline > now) break;
      waiters.delete(token);
      waiter.reject(new PublishAckError(`no publish ack within ${timeoutMs} ms`));
    }
    if (waiters.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  };

  return {
    publish(subject, payload, headers) {
      if (closed) return Promise.reject(new PublishAckError("publisher closed"));
      return new Promise<PublishAck>((resolve, reject) => {
        const token = (next++).toString(36);
        waiters.set(token, { resolve, reject, deadline: performance.now() + timeoutMs });
        try {
          nc.publish(subject, payload, { reply: `${prefix}.${token}`, headers });
        } catch (err) {
          // Closed or draining connection.
          waiters.delete(token);
          reject(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        sweeper ??= setInterval(sweep, Math.max(10, Math.min(250, timeoutMs / 4)));
      });
    },
    close() {
      closed = true;
      clearInterval(sweeper);
      sweeper = undefined;
      for (const waiter of waiters.values()) waiter.reject(new PublishAckError("publisher closed"));
      waiters.clear();
      if (!sub.isClosed()) sub.unsubscribe();
    },
  };
}
