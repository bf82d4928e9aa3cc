import { isIP } from "node:net";
import type { Redis } from "ioredis";
import { ResourceExhaustedError, UnavailableError } from "../../platform/errors/domain-errors.js";

export interface SignInThrottleOptions {
  redis: Redis;
  keyPrefix: string;
  windowMs: number;
  maxFailuresPerAccount: number;
  maxFailuresPerAddress: number;
}

export interface SignInThrottle {
  /** Throws RESOURCE_EXHAUSTED (with the wait) when either limit is reached. */
  check(accountKey: string, address: string): Promise<void>;
  recordFailure(accountKey: string, address: string): Promise<void>;
  /** A successful sign-in clears the account's counter (not the address's). */
  recordSuccess(accountKey: string): Promise<void>;
}

/**
 * Fixed-window failure counters in Redis, per account (keyed by the email's
 * blind index, so unknown emails are throttled exactly like known ones — the
 * throttle itself reveals nothing) and per client address. When Redis is
 * unreachable sign-in fails closed with UNAVAILABLE: without the counters,
 * password guessing would be unlimited.
 */
export function createSignInThrottle(options: SignInThrottleOptions): SignInThrottle {
  const { redis, windowMs } = options;
  const accountKey = (key: string) => `${options.keyPrefix}identity:signin:fail:account:${key}`;
  const addressKey = (address: string) =>
    `${options.keyPrefix}identity:signin:fail:address:${address}`;
  const guard = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (cause) {
      if (cause instanceof ResourceExhaustedError) throw cause;
      throw new UnavailableError(
        "sign-in is temporarily unavailable",
        "THROTTLE_UNAVAILABLE",
        cause,
      );
    }
  };
  return {
    check: (account, address) =>
      guard(async () => {
        const keys = [accountKey(account), addressKey(address)];
        const limits = [options.maxFailuresPerAccount, options.maxFailuresPerAddress];
        const pipeline = redis.pipeline();
        for (const key of keys) pipeline.get(key).pttl(key);
        const results = (await pipeline.exec()) ?? [];
        let retryAfterMs = 0;
        for (let i = 0; i < keys.length; i++) {
          const [countError, count] = results[i * 2] ?? [];
          const [ttlError, ttl] = results[i * 2 + 1] ?? [];
          if (countError || ttlError) throw countError ?? ttlError;
          if (Number(count ?? 0) >= limits[i]!) {
            retryAfterMs = Math.max(retryAfterMs, Number(ttl) > 0 ? Number(ttl) : windowMs);
          }
        }
        if (retryAfterMs > 0) {
          throw new ResourceExhaustedError(
            "too many failed sign-in attempts, try again later",
            "SIGN_IN_THROTTLED",
            retryAfterMs,
          );
        }
      }),
    recordFailure: (account, address) =>
      guard(async () => {
        const multi = redis.multi();
        for (const key of [accountKey(account), addressKey(address)]) {
          // The window starts at the first failure; later failures do not extend it.
          multi.set(key, "0", "PX", windowMs, "NX").incr(key);
        }
        await multi.exec();
      }),
    recordSuccess: (account) =>
      guard(async () => {
        await redis.del(accountKey(account));
      }),
  };
}

/**
 * The client's address as the edge saw it: the edge appends the peer address
 * to `x-forwarded-for`, so the right-most entry is the one a trusted hop
 * wrote (left entries are client-supplied and spoofable). Services are only
 * reachable through the edge (NetworkPolicy); a direct caller without the
 * header shares the "direct" bucket.
 */
export function clientAddress(headers: Headers): string {
  const forwarded = headers.get("x-forwarded-for");
  if (forwarded) {
    const last = forwarded.slice(-128).split(",").pop()?.trim() ?? "";
    const host = last.startsWith("[") ? last.slice(1, last.indexOf("]")) : last;
    if (isIP(host)) return host.toLowerCase();
  }
  return "direct";
}
