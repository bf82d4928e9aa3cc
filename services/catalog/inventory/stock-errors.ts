import {
  FailedPreconditionError,
  type PreconditionViolation,
} from "../../../platform/errors/domain-errors.js";

/** One item that blocked a reservation (google.rpc.PreconditionFailure.Violation). */
export interface StockViolation extends PreconditionViolation {
  /** "STOCK" (not enough available) or "PRODUCT_UNAVAILABLE" (deleted, inactive, unknown). */
  type: "STOCK" | "PRODUCT_UNAVAILABLE";
  /** "products/<product_id>" */
  subject: string;
  description: string;
}

/**
 * ReserveStock failed for the listed items; nothing was reserved. Carried to
 * clients as FAILED_PRECONDITION with a PreconditionFailure detail (the
 * platform's error mapping adds it from `violations`).
 */
export class StockUnavailableError extends FailedPreconditionError {
  override name = "StockUnavailableError";
  declare readonly violations: readonly StockViolation[];
  constructor(violations: StockViolation[]) {
    super(
      violations.length === 1
        ? `${violations[0]!.subject}: ${violations[0]!.description}`
        : `${violations.length} items cannot be reserved`,
      violations.every((x) => x.type === "STOCK") ? "INSUFFICIENT_STOCK" : "PRODUCT_UNAVAILABLE",
      { products: violations.map((x) => x.subject).join(",") },
      violations,
    );
  }
}
