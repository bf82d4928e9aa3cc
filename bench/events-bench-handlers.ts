import { StructSchema } from "@bufbuild/protobuf/wkt";
import type { TransactionSql } from "postgres";
import { type EventHandlers, eventHandlers } from "../platform/events/consumer.js";

/**
 * The event benches' consumer effect: one `effects` row per event, written
 * either by a per-event handler (one statement per event, the common shape)
 * or by a set-based `onBatch` handler (one statement per transaction).
 */
export type BenchHandlerKind = "event" | "batch";

export function benchHandlers(kind: BenchHandlerKind): EventHandlers<TransactionSql> {
  if (kind === "batch") {
    return eventHandlers<TransactionSql>().onBatch(StructSchema, async (events, { tx }) => {
      // Array literals: uuids and ISO timestamps need no quoting.
      const ids = `{${events.map((e) => e.eventId).join(",")}}`;
      const times = `{${events.map((e) => e.occurredAt.toISOString()).join(",")}}`;
      await tx`insert into effects (event_id, occurred_at)
               select * from unnest(${ids}::uuid[], ${times}::timestamptz[])`;
    });
  }
  return eventHandlers<TransactionSql>().on(StructSchema, async (event, { tx }) => {
    await tx`insert into effects (event_id, occurred_at)
             values (${event.eventId}, ${event.occurredAt.toISOString()}::timestamptz)`;
  });
}
