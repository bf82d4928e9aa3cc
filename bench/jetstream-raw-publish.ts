import { jetstream } from "@nats-io/jetstream";
import { type NatsConnection, headers as natsHeaders } from "@nats-io/nats-core";
import { v7 as uuidv7 } from "uuid";

interface RawPublishOptions {
  subject: string;
  payload: Uint8Array;
  count: number;
  aggregates: number;
}

/**
 * The event benches' ceiling: raw JetStream async publish from Node with the
 * stock `js.publish` (same payload, 7 event headers and Nats-Msg-Id as a
 * relayed event), 2,000 in flight. Returns a run function (label → msg/s,
 * printing a line), so a bench can measure before and after its own run.
 */
export function rawPublishBaseline(
  nc: NatsConnection,
  options: RawPublishOptions,
): (label: string) => Promise<number> {
  return (label) => rawPublishRate(nc, { ...options, label });
}

async function rawPublishRate(
  nc: NatsConnection,
  options: RawPublishOptions & { label: string },
): Promise<number> {
  const js = jetstream(nc);
  const window = 2_000;
  let inFlight: Promise<unknown>[] = [];
  const started = performance.now();
  for (let i = 0; i < options.count; i++) {
    const h = natsHeaders();
    const eventId = uuidv7();
    h.set("Event-Type", "google.protobuf.Struct");
    h.set("Event-Id", eventId);
    h.set("Event-Time", new Date().toISOString());
    h.set("Aggregate-Type", "thing");
    h.set("Aggregate-Id", `agg-${i % options.aggregates}`);
    h.set("Aggregate-Seq", String(i));
    h.set("Schema-Version", "1");
    inFlight.push(js.publish(options.subject, options.payload, { msgID: eventId, headers: h }));
    if (inFlight.length >= window) {
      await Promise.all(inFlight);
      inFlight = [];
    }
  }
  await Promise.all(inFlight);
  const seconds = (performance.now() - started) / 1000;
  const rate = options.count / seconds;
  console.log(
    `raw JetStream async publish (${options.label}): ${options.count} msgs in ${seconds.toFixed(2)} s = ${rate.toFixed(0)} msg/s (payload ${options.payload.byteLength} B, 7 headers, msgID)`,
  );
  return rate;
}
