/**
 * Domain code throws these; it never sees gRPC codes. `toConnectError` is the
 * one place that maps them to status codes and google.rpc details.
 */

export interface FieldViolation {
  /** Path of the offending field in the request, e.g. "items[2].quantity". */
  field: string;
  description: string;
}

abstract class DomainError extends Error {
  /** Stable, machine-readable reason (google.rpc.ErrorInfo.reason). */
  readonly reason: string;
  readonly metadata: Record<string, string>;
  constructor(
    message: string,
    options: { reason: string; metadata?: Record<string, string>; cause?: unknown },
  ) {
    super(message, { cause: options.cause });
    this.reason = options.reason;
    this.metadata = options.metadata ?? {};
  }
}

export class InvalidArgumentError extends DomainError {
  override name = "InvalidArgumentError";
  readonly violations: FieldViolation[];
  constructor(violations: FieldViolation[], message = "request has invalid fields") {
    super(message, { reason: "INVALID_ARGUMENT" });
    this.violations = violations;
  }
  static field(field: string, description: string): InvalidArgumentError {
    return new InvalidArgumentError([{ field, description }]);
  }
}

export class NotFoundError extends DomainError {
  override name = "NotFoundError";
  /** google.rpc.ResourceInfo.resource_type, e.g. "commerce.catalog.v1.Product". */
  readonly resourceType: string;
  readonly id: string;
  constructor(resource: string, id: string, resourceType = resource) {
    super(`${resource} not found`, {
      reason: `${resource.toUpperCase()}_NOT_FOUND`,
      metadata: { resource, id },
    });
    this.resourceType = resourceType;
    this.id = id;
  }
}

/** One unmet precondition (google.rpc.PreconditionFailure.Violation). */
export interface PreconditionViolation {
  /** e.g. "STOCK" */
  type: string;
  /** e.g. "products/<id>" */
  subject: string;
  description: string;
}

export class AlreadyExistsError extends DomainError {
  override name = "AlreadyExistsError";
  constructor(message: string, reason: string, metadata?: Record<string, string>) {
    super(message, { reason, ...(metadata ? { metadata } : {}) });
  }
}

export class FailedPreconditionError extends DomainError {
  override name = "FailedPreconditionError";
  readonly violations: readonly PreconditionViolation[];
  constructor(
    message: string,
    reason: string,
    metadata?: Record<string, string>,
    violations: readonly PreconditionViolation[] = [],
  ) {
    super(message, { reason, ...(metadata ? { metadata } : {}) });
    this.violations = violations;
  }
}

/** A concurrent change won; the caller may retry the whole operation. */
export class ConflictError extends DomainError {
  override name = "ConflictError";
  constructor(message: string, reason: string, metadata?: Record<string, string>) {
    super(message, { reason, ...(metadata ? { metadata } : {}) });
  }
}

export class PermissionDeniedError extends DomainError {
  override name = "PermissionDeniedError";
  constructor(message = "permission denied", reason = "PERMISSION_DENIED") {
    super(message, { reason });
  }
}

export class UnauthenticatedError extends DomainError {
  override name = "UnauthenticatedError";
  constructor(message = "authentication required", reason = "UNAUTHENTICATED", cause?: unknown) {
    super(message, { reason, cause });
  }
}

export class ResourceExhaustedError extends DomainError {
  override name = "ResourceExhaustedError";
  readonly retryAfterMs: number | undefined;
  constructor(message: string, reason: string, retryAfterMs?: number) {
    super(message, { reason });
    this.retryAfterMs = retryAfterMs;
  }
}

export class UnavailableError extends DomainError {
  override name = "UnavailableError";
  constructor(message: string, reason: string, cause?: unknown) {
    super(message, { reason, cause });
  }
}

export type AnyDomainError =
  | InvalidArgumentError
  | NotFoundError
  | AlreadyExistsError
  | FailedPreconditionError
  | ConflictError
  | PermissionDeniedError
  | UnauthenticatedError
  | ResourceExhaustedError
  | UnavailableError;

export function isDomainError(error: unknown): error is AnyDomainError {
  return error instanceof DomainError;
}
