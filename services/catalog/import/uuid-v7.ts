import { randomUUID } from "node:crypto";

let lastMs = -1;
let prefix = "";

/**
 * A UUIDv7 (RFC 9562: 48-bit Unix milliseconds, version 7, variant 10, 74
 * random bits) made from `crypto.randomUUID()`, which draws from a cached
 * entropy pool. The `uuid` package's v7 asks the OS for 16 random bytes per
 * id: ~3.5 µs against ~0.7 µs here, a second of client CPU at the 300k ids
 * (products and their events) of a 100k-row import. Ids within one
 * millisecond are not ordered among themselves, which nothing relies on
 * (keyset orders use the id only as a tie-breaker; the outbox orders by
 * position).
 */
export function uuidV7(now = Date.now()): string {
  if (now !== lastMs) {
    const hex = now.toString(16).padStart(12, "0");
    prefix = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7`;
    lastMs = now;
  }
  // randomUUID(): xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx; keep its variant and random bits.
  return prefix + randomUUID().slice(15);
}
