/**
 * Settings and the writer load shared by the event benches
 * (events-throughput, events-stages, events-floor), so their figures stay
 * comparable: the same event count, writers, events per transaction and
 * aggregates unless the environment overrides them.
 */
export const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);

export const EVENTS = env("EVENTS", 20_000);
export const WRITERS = env("WRITERS", 8);
export const TX_EVENTS = env("TX_EVENTS", 10);
export const AGGREGATES = env("AGGREGATES", 1_000);
export const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const NATS_URL = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

/**
 * WRITERS concurrent writers take the next TX_EVENTS of `events` until all
 * are written; `write(from, count)` commits events [from, from + count).
 */
export async function runWriters(
  events: number,
  write: (from: number, count: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      while (next < events) {
        const from = next;
        next += TX_EVENTS;
        await write(from, Math.min(TX_EVENTS, events - from));
      }
    }),
  );
}
