import {
  type Attributes,
  type Context,
  context,
  type Link,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import type { HeaderMap } from "./message-format.js";

/**
 * Only @opentelemetry/api here: the service's telemetry bootstrap installs the
 * SDK and W3C propagator; without one every call below is a cheap no-op and
 * the stored traceparent is forwarded unchanged.
 */
export const TRACER_NAME = "commerce-mesh/events";

export function eventsTracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}

const headerGetter: TextMapGetter<HeaderMap | undefined> = {
  keys: (carrier) => (carrier ? [...carrier.keys()] : []),
  get: (carrier, key) => {
    if (!carrier?.has(key)) return undefined;
    return carrier.get(key);
  },
};

export function contextFromHeaders(headers: HeaderMap | undefined): Context {
  return propagation.extract(ROOT_CONTEXT, headers, headerGetter);
}

export function contextFromCarrier(carrier: Record<string, string>): Context {
  return propagation.extract(ROOT_CONTEXT, carrier);
}

export function injectCarrier(ctx: Context): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

/**
 * Producer span for one outbox row: child of the transaction that wrote the
 * row (one trace per request) and linked to it, since it runs later and
 * possibly in another process.
 */
export function startPublishSpan(
  tracer: Tracer,
  stored: Record<string, string>,
  attributes: Attributes & { "messaging.destination.name": string },
): { span: Span; ctx: Context } {
  const parent = contextFromCarrier(stored);
  const parentSpan = trace.getSpanContext(parent);
  const links: Link[] = parentSpan ? [{ context: parentSpan }] : [];
  const span = tracer.startSpan(
    `send ${attributes["messaging.destination.name"]}`,
    {
      kind: SpanKind.PRODUCER,
      links,
      attributes: {
        "messaging.system": "nats",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        ...attributes,
      },
    },
    parent,
  );
  return { span, ctx: trace.setSpan(parent, span) };
}

/** Consumer span continuing the producer's trace from the message headers. */
export function startProcessSpan(
  tracer: Tracer,
  headers: HeaderMap | undefined,
  attributes: Attributes & { "messaging.destination.name": string },
): { span: Span; ctx: Context } {
  const parent = contextFromHeaders(headers);
  const span = tracer.startSpan(
    `process ${attributes["messaging.destination.name"]}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        ...attributes,
      },
    },
    parent,
  );
  return { span, ctx: trace.setSpan(parent, span) };
}

export function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({
      code: SpanStatusCode.ERROR,
      message: error instanceof Error ? error.message : String(error),
    });
  }
  span.end();
}

export function withContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}
