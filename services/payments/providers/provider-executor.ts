import {
  BrokenCircuitError,
  type CircuitBreakerPolicy,
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  retry,
  TaskCancelledError,
  TimeoutStrategy,
  timeout,
} from "cockatiel";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { v7 as uuidv7 } from "uuid";
import type { PaymentsConfig } from "../payments-config.js";
import {
  ProviderRejectedError,
  type ProviderResult,
  ProviderUnavailableError,
} from "./provider.js";

export type AttemptOutcome = "SUCCEEDED" | "PENDING" | "DECLINED" | "FAILED";

/** One provider call, as the ledger records it. */
export interface AttemptRecord {
  id: string;
  attemptTime: Date;
  latencyUs: number;
  outcome: AttemptOutcome;
  providerCode: string | undefined;
  providerReference: string | undefined;
  error: string | undefined;
}

export type Execution =
  /** The provider gave a final answer (success, pending or decline). */
  | { kind: "answered"; result: ProviderResult; final: AttemptRecord }
  /** The provider refused the operation for good. */
  | { kind: "rejected"; error: ProviderRejectedError }
  /**
   * No final answer after every attempt. `ambiguous`: at least one attempt
   * timed out, so the provider may have executed it.
   */
  | { kind: "unavailable"; ambiguous: boolean; circuitOpen: boolean; code: string };

export interface ProviderExecutor {
  /**
   * Calls `call` with bounded retries (backoff, same provider idempotency key
   * — the caller closes over it), a per-call timeout and the provider's
   * circuit breaker. Failed and refused attempts are handed to `onFailure`
   * as they happen so the ledger keeps them even if the process dies later;
   * the final answered attempt is returned for the caller's transaction.
   */
  execute(
    provider: string,
    operation: string,
    call: (signal: AbortSignal) => Promise<ProviderResult>,
    onFailure: (attempt: AttemptRecord) => Promise<void>,
  ): Promise<Execution>;
  breakerState(provider: string): "closed" | "open" | "half-open" | "isolated";
}

const isTransient = (error: unknown) =>
  error instanceof ProviderUnavailableError || error instanceof TaskCancelledError;

function outcomeOf(result: ProviderResult): AttemptOutcome {
  if (result.status === "succeeded") return "SUCCEEDED";
  if (result.status === "pending") return "PENDING";
  return "DECLINED";
}

function providerMetrics(registry: Registry | undefined) {
  const registers = registry ? [registry] : [];
  return {
    calls: new Counter({
      name: "payments_provider_calls_total",
      help: "Calls to payment providers by outcome (SUCCEEDED, PENDING, DECLINED, FAILED)",
      labelNames: ["provider", "operation", "outcome", "code"] as const,
      registers,
    }),
    latency: new Histogram({
      name: "payments_provider_call_duration_seconds",
      help: "Latency of payment provider calls (until the answer or the timeout)",
      labelNames: ["provider", "operation"] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    circuitOpen: new Gauge({
      name: "payments_provider_circuit_open",
      help: "1 while a provider's circuit breaker is open (calls fail fast)",
      labelNames: ["provider"] as const,
      registers,
    }),
  };
}

export function createProviderExecutor(
  config: PaymentsConfig["provider"],
  registry?: Registry,
): ProviderExecutor {
  const metrics = providerMetrics(registry);
  const breakers = new Map<string, CircuitBreakerPolicy>();
  const breakerOf = (provider: string) => {
    let breaker = breakers.get(provider);
    if (!breaker) {
      breaker = circuitBreaker(handleWhen(isTransient), {
        halfOpenAfter: config.breakerHalfOpenMs,
        breaker: new ConsecutiveBreaker(config.breakerThreshold),
      });
      breaker.onBreak(() => metrics.circuitOpen.set({ provider }, 1));
      breaker.onReset(() => metrics.circuitOpen.set({ provider }, 0));
      breakers.set(provider, breaker);
    }
    return breaker;
  };
  const retries = retry(handleWhen(isTransient), {
    maxAttempts: config.maxAttempts - 1,
    backoff: new ExponentialBackoff({
      initialDelay: config.retryInitialMs,
      maxDelay: config.retryMaxMs,
    }),
  });
  const perCall = timeout(config.timeoutMs, TimeoutStrategy.Aggressive);

  return {
    breakerState(provider) {
      const state = breakerOf(provider).state;
      return (["closed", "open", "half-open", "isolated"] as const)[state] ?? "closed";
    },

    async execute(provider, operation, call, onFailure) {
      const observe = (record: AttemptRecord) => {
        metrics.calls.inc({
          provider,
          operation,
          outcome: record.outcome,
          code: record.providerCode ?? "",
        });
        metrics.latency.observe({ provider, operation }, record.latencyUs / 1e6);
      };
      const breaker = breakerOf(provider);
      let ambiguous = false;
      let lastCode = "unavailable";
      try {
        return await retries.execute(async () => {
          const attemptTime = new Date();
          const started = performance.now();
          const latencyUs = () => Math.round((performance.now() - started) * 1000);
          try {
            const result = await breaker.execute(() =>
              perCall.execute((_context, signal) => call(signal)),
            );
            const final: AttemptRecord = {
              id: uuidv7(),
              attemptTime,
              latencyUs: latencyUs(),
              outcome: outcomeOf(result),
              providerCode: result.status === "declined" ? result.code : undefined,
              providerReference: result.reference,
              error: undefined,
            };
            observe(final);
            return { kind: "answered", result, final } as const;
          } catch (error) {
            // An open circuit made no call: nothing to record.
            if (error instanceof BrokenCircuitError) throw error;
            const refused = error instanceof ProviderRejectedError;
            if (error instanceof TaskCancelledError) {
              ambiguous = true;
              lastCode = "timeout";
            } else if (error instanceof ProviderUnavailableError) {
              lastCode = error.code;
            } else if (!refused) {
              // An adapter bug or unexpected transport error: the provider may
              // or may not have acted, and retrying it blindly is not safe.
              ambiguous = true;
              lastCode = "provider_error";
            }
            const failed: AttemptRecord = {
              id: uuidv7(),
              attemptTime,
              latencyUs: latencyUs(),
              outcome: refused ? "DECLINED" : "FAILED",
              providerCode: refused ? error.code : lastCode,
              providerReference: undefined,
              error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
            };
            observe(failed);
            await onFailure(failed);
            throw error;
          }
        });
      } catch (error) {
        if (error instanceof ProviderRejectedError) return { kind: "rejected", error };
        if (error instanceof BrokenCircuitError) {
          return { kind: "unavailable", ambiguous, circuitOpen: true, code: "circuit_open" };
        }
        return { kind: "unavailable", ambiguous, circuitOpen: false, code: lastCode };
      }
    },
  };
}
