import { Code, ConnectError } from "@connectrpc/connect";
import {
  ErrorInfoSchema,
  PreconditionFailureSchema,
} from "../../../gen/google/rpc/error_details_pb.js";

/**
 * A saga step could not finish because a dependency failed in a way that may
 * pass (down, slow, busy, answer still pending). The step is retried later
 * with the same idempotency keys.
 */
export class RetryableStepError extends Error {
  override name = "RetryableStepError";
}

const TRANSIENT = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.Internal,
  Code.Unknown,
  Code.ResourceExhausted,
  Code.Canceled,
  Code.Unauthenticated,
]);

/**
 * Errors that say nothing about the request itself. UNAUTHENTICATED counts:
 * a rotating service secret or an unreachable key set must not reject orders.
 */
export function isTransient(error: unknown): boolean {
  if (error instanceof ConnectError) return TRANSIENT.has(error.code);
  return true;
}

export function hasCode(error: unknown, code: Code): error is ConnectError {
  return error instanceof ConnectError && error.code === code;
}

/** google.rpc.ErrorInfo reason of an upstream error, if any. */
export function reasonOf(error: unknown): string | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  return error.findDetails(ErrorInfoSchema)[0]?.reason;
}

export interface StockProblem {
  /** "STOCK" (not enough available) or "PRODUCT_UNAVAILABLE" (deleted/inactive). */
  type: string;
  productId: string;
}

/**
 * Reads the catalog's reservation refusal: a google.rpc.PreconditionFailure
 * violation of type STOCK or PRODUCT_UNAVAILABLE with subject
 * "products/<id>" (ErrorInfo metadata is accepted as a fallback).
 */
export function stockProblem(error: unknown): StockProblem | undefined {
  if (!(error instanceof ConnectError) || error.code !== Code.FailedPrecondition) return undefined;
  for (const failure of error.findDetails(PreconditionFailureSchema)) {
    for (const violation of failure.violations) {
      if (violation.type === "STOCK" || violation.type === "PRODUCT_UNAVAILABLE") {
        return { type: violation.type, productId: violation.subject.replace(/^products\//, "") };
      }
    }
  }
  for (const info of error.findDetails(ErrorInfoSchema)) {
    const productId = info.metadata.product_id ?? info.metadata.productId ?? "";
    if (/STOCK/i.test(info.reason)) return { type: "STOCK", productId };
    if (/UNAVAILABLE|INACTIVE|DELETED/i.test(info.reason)) {
      return { type: "PRODUCT_UNAVAILABLE", productId };
    }
  }
  return undefined;
}
