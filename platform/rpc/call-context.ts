import { AsyncLocalStorage } from "node:async_hooks";

/**
 * What the platform knows about the RPC being served, available to any code
 * running on its behalf (outgoing clients read the deadline from here so it
 * propagates without handlers passing it along).
 */
export interface CallContext {
  /** Absolute deadline in epoch milliseconds, if the caller set one. */
  deadline: number | undefined;
  /** Fully qualified "/package.Service/Method". */
  procedure: string;
  requestId: string | undefined;
}

const storage = new AsyncLocalStorage<CallContext>();

export function runWithCallContext<T>(context: CallContext, fn: () => T): T {
  return storage.run(context, fn);
}

export function currentCallContext(): CallContext | undefined {
  return storage.getStore();
}

/** Milliseconds left before the current incoming call's deadline. */
export function remainingDeadlineMs(now = Date.now()): number | undefined {
  const deadline = storage.getStore()?.deadline;
  return deadline === undefined ? undefined : deadline - now;
}
