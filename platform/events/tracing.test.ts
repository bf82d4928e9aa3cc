import { context, propagation, SpanKind, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createEventConsumer, postgresTransactions } from "./consumer.js";
import { silentLogger } from "./logger.js";
import { appendEvents } from "./outbox.js";
import { createOutboxRelay } from "./relay.js";
import {
  createEventsTestEnv,
  type EventsTestEnv,
  recordingHandlers,
  testEvent,
  waitFor,
} from "./test-support/harness.js";

// This file runs in its own worker process (vitest pool "forks"), so the
// global OpenTelemetry registration does not leak into other tests.
const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({
  spanProcessors: [new SimpleSpanProcessor({ exporter })],
});

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
});

afterAll(async () => {
  await provider.shutdown();
  trace.disable();
  propagation.disable();
  context.disable();
});

let env: EventsTestEnv;
const cleanups: (() => Promise<unknown>)[] = [];

beforeEach(async () => {
  env = await createEventsTestEnv();
  exporter.reset();
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  await env.close();
});

describe("event tracing", () => {
  it("continues the writer's trace through the publish span to the consumer span", async () => {
    const relay = createOutboxRelay({
      sql: env.database.sql,
      schema: env.schema,
      nc: env.nc,
      registry: new Registry(),
      logger: silentLogger,
    });
    await relay.start();
    cleanups.push(() => relay.stop());
    const name = `c_${env.id}`;
    let handlerTraceId: string | undefined;
    const consumer = createEventConsumer({
      nc: env.nc,
      stream: env.stream.name,
      name,
      transaction: postgresTransactions(env.database.sql),
      handlers: recordingHandlers(name, () => {
        handlerTraceId = trace.getActiveSpan()?.spanContext().traceId;
      }),
      deadLetters: { subjectPrefix: env.dlq.subjectPrefix },
      metricsRegistry: new Registry(),
      logger: silentLogger,
    });
    await consumer.start();
    cleanups.push(() => consumer.stop());

    const tracer = trace.getTracer("test");
    const request = await tracer.startActiveSpan("PlaceOrder", async (span) => {
      await env.database.sql.begin((tx) =>
        appendEvents(tx, [testEvent("order-1")], { domain: env.domain }),
      );
      span.end();
      return span.spanContext();
    });

    await waitFor("consumer span", () =>
      exporter.getFinishedSpans().some((s) => s.kind === SpanKind.CONSUMER),
    );
    const spans = exporter.getFinishedSpans();
    const send = spans.find((s) => s.kind === SpanKind.PRODUCER)!;
    const process = spans.find((s) => s.kind === SpanKind.CONSUMER)!;
    const subject = `${env.domain}.thing.struct`;

    expect(send.name).toBe(`send ${subject}`);
    expect(send.spanContext().traceId).toBe(request.traceId);
    expect(send.parentSpanContext?.spanId).toBe(request.spanId);
    expect(send.links.map((l) => l.context.spanId)).toEqual([request.spanId]);
    expect(send.attributes).toMatchObject({
      "messaging.system": "nats",
      "messaging.operation.type": "send",
      "messaging.destination.name": subject,
    });
    expect(send.attributes["messaging.message.id"]).toMatch(/^[0-9a-f-]{36}$/);

    expect(process.name).toBe(`process ${subject}`);
    expect(process.spanContext().traceId).toBe(request.traceId);
    expect(process.parentSpanContext?.spanId).toBe(send.spanContext().spanId);
    expect(process.attributes).toMatchObject({
      "messaging.system": "nats",
      "messaging.operation.type": "process",
      "messaging.destination.name": subject,
      "messaging.consumer.group.name": name,
      "messaging.message.id": send.attributes["messaging.message.id"],
    });
    expect(handlerTraceId).toBe(request.traceId);
  });
});
