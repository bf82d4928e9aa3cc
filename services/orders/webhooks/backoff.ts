/**
 * Delay before attempt `attempt + 1` after `attempt` failures: exponential
 * (base · 2^(attempt-1), capped) with "equal jitter" — half fixed, half
 * random — so endpoints recovering from an outage are not hit in lockstep
 * while the delay still grows.
 */
export function retryDelayMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const exponential = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(attempt - 1, 40)));
  const half = exponential / 2;
  return Math.round(half + random() * half);
}
