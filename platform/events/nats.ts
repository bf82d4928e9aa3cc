import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";

export interface NatsOptions {
  servers: string | string[];
  name?: string;
  /** Keep retrying the first connection too (default true): the outbox holds events meanwhile. */
  waitOnFirstConnect?: boolean;
  reconnectTimeWaitMs?: number;
  /** Detects a dead connection after pingIntervalMs × maxPingOut. */
  pingIntervalMs?: number;
  maxPingOut?: number;
}

/**
 * A connection that never gives up reconnecting: publishers and consumers
 * ride out NATS restarts instead of crashing the service.
 */
export function connectNats(options: NatsOptions): Promise<NatsConnection> {
  return connect({
    servers: options.servers,
    name: options.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: options.reconnectTimeWaitMs ?? 1_000,
    waitOnFirstConnect: options.waitOnFirstConnect ?? true,
    pingInterval: options.pingIntervalMs ?? 10_000,
    maxPingOut: options.maxPingOut ?? 3,
  });
}
