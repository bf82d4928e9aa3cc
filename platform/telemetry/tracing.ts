import { context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, type SpanExporter, TracerProvider } from "@opentelemetry/sdk-trace";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";

export interface Tracing {
  /** Exports finished spans now. */
  flush(): Promise<void>;
  /** Flushes and stops exporting; safe to call when tracing is off. */
  shutdown(): Promise<void>;
}

/**
 * Installs W3C trace-context propagation always (so trace ids flow through a
 * service even when it exports nothing) and an OTLP exporter only when an
 * endpoint is configured.
 */
export function setupTracing(options: {
  service: string;
  otlpEndpoint?: string | undefined;
  exporter?: SpanExporter;
}): Tracing {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  const exporter =
    options.exporter ??
    (options.otlpEndpoint
      ? new OTLPTraceExporter({ url: `${options.otlpEndpoint.replace(/\/$/, "")}/v1/traces` })
      : undefined);
  if (!exporter) return { flush: async () => {}, shutdown: async () => {} };
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.service }),
    spanProcessors: [new BatchSpanProcessor({ exporter })],
  });
  trace.setGlobalTracerProvider(provider);
  return {
    async flush() {
      await provider.forceFlush();
    },
    async shutdown() {
      await provider.shutdown();
    },
  };
}
