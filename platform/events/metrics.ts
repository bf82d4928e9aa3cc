import { Counter, Gauge, register as globalRegistry, Histogram, type Registry } from "prom-client";

/**
 * Metrics are shared per registry: several relays/consumers in one process
 * (replicas in tests, several consumers per service) report under labels of
 * the same metric instead of colliding on registration.
 */

type Sampler = () => Promise<void>;

const samplers = new WeakMap<object, Set<Sampler>>();

function samplersOf(metric: object): Set<Sampler> {
  let set = samplers.get(metric);
  if (!set) {
    set = new Set();
    samplers.set(metric, set);
  }
  return set;
}

async function runSamplers(metric: object): Promise<void> {
  // A failed sample (database briefly unreachable) must not break /metrics.
  await Promise.allSettled([...samplersOf(metric)].map((sample) => sample()));
}

/**
 * One sample feeds several gauges; they are collected concurrently on a
 * scrape, so the first collect starts the sample and the others await it.
 */
function attach<T>(metrics: object[], sample: () => Promise<T>, apply: (value: T) => void) {
  let inFlight: Promise<void> | undefined;
  const refresh: Sampler = () => {
    inFlight ??= sample()
      .then(apply)
      .finally(() => {
        setTimeout(() => {
          inFlight = undefined;
        }, 50).unref();
      });
    return inFlight;
  };
  for (const metric of metrics) samplersOf(metric).add(refresh);
  return () => {
    for (const metric of metrics) samplersOf(metric).delete(refresh);
  };
}

function gauge(registry: Registry, name: string, help: string, labelNames: string[]): Gauge {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Gauge;
  return new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      await runSamplers(this);
    },
  });
}

function counter(registry: Registry, name: string, help: string, labelNames: string[]): Counter {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

function histogram(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  buckets: number[],
): Histogram {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Histogram;
  return new Histogram({ name, help, labelNames, buckets, registers: [registry] });
}

export interface RelayMetrics {
  published: Counter;
  publishErrors: Counter;
  /** Registers a sampler run on every scrape; returns its removal. */
  sampleLag(sample: () => Promise<{ pending: number; oldestAgeSeconds: number }>): () => void;
}

export function relayMetrics(registry: Registry = globalRegistry, schema: string): RelayMetrics {
  const pending = gauge(
    registry,
    "events_outbox_pending",
    "Outbox rows not yet published to JetStream.",
    ["schema"],
  );
  const oldest = gauge(
    registry,
    "events_outbox_oldest_pending_age_seconds",
    "Age of the oldest unpublished outbox row (0 when none).",
    ["schema"],
  );
  const published = counter(
    registry,
    "events_outbox_published_total",
    "Outbox rows published and marked sent.",
    ["schema"],
  );
  const publishErrors = counter(
    registry,
    "events_outbox_publish_errors_total",
    "Failed publish attempts (the row stays pending and is retried).",
    ["schema"],
  );
  return {
    published,
    publishErrors,
    sampleLag(sample) {
      return attach([pending, oldest], sample, ({ pending: count, oldestAgeSeconds }) => {
        pending.set({ schema }, count);
        oldest.set({ schema }, oldestAgeSeconds);
      });
    },
  };
}

export type ConsumerOutcome = "processed" | "duplicate" | "skipped" | "retried" | "dead_lettered";

export interface ConsumerMetrics {
  messages: Counter;
  handlerSeconds: Histogram;
  sampleLag(sample: () => Promise<{ pending: number; ackPending: number }>): () => void;
}

export function consumerMetrics(
  registry: Registry = globalRegistry,
  consumer: string,
): ConsumerMetrics {
  const messages = counter(
    registry,
    "events_consumer_messages_total",
    "Messages seen by an event consumer, by outcome.",
    ["consumer", "outcome"],
  );
  const handlerSeconds = histogram(
    registry,
    "events_consumer_handler_seconds",
    "Time from delivery to commit of the handler transaction.",
    ["consumer"],
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  );
  const pending = gauge(
    registry,
    "events_consumer_pending",
    "Messages in the stream not yet delivered to the consumer (JetStream num_pending).",
    ["consumer"],
  );
  const ackPending = gauge(
    registry,
    "events_consumer_ack_pending",
    "Messages delivered but not yet acknowledged.",
    ["consumer"],
  );
  return {
    messages,
    handlerSeconds,
    sampleLag(sample) {
      return attach([pending, ackPending], sample, (lag) => {
        pending.set({ consumer }, lag.pending);
        ackPending.set({ consumer }, lag.ackPending);
      });
    },
  };
}
