import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  ResourceInfoSchema,
  RetryInfoSchema,
} from "../../gen/google/rpc/error_details_pb.js";
import {
  AlreadyExistsError,
  type AnyDomainError,
  ConflictError,
  FailedPreconditionError,
  InvalidArgumentError,
  isDomainError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
} from "./domain-errors.js";

/** google.rpc.ErrorInfo.domain for every error this mesh raises. */
export const ERROR_DOMAIN = "commerce-mesh";

function codeOf(error: AnyDomainError): Code {
  if (error instanceof InvalidArgumentError) return Code.InvalidArgument;
  if (error instanceof NotFoundError) return Code.NotFound;
  if (error instanceof AlreadyExistsError) return Code.AlreadyExists;
  if (error instanceof FailedPreconditionError) return Code.FailedPrecondition;
  if (error instanceof ConflictError) return Code.Aborted;
  if (error instanceof PermissionDeniedError) return Code.PermissionDenied;
  if (error instanceof UnauthenticatedError) return Code.Unauthenticated;
  if (error instanceof ResourceExhaustedError) return Code.ResourceExhausted;
  if (error instanceof UnavailableError) return Code.Unavailable;
  return Code.Internal;
}

/**
 * Turns anything thrown by a handler into a ConnectError that is safe to send:
 * domain errors keep their message and gain google.rpc details; ConnectErrors
 * pass through; everything else becomes INTERNAL with a fixed message and the
 * original error kept only as `cause` for logs.
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (!isDomainError(error)) {
    return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
  }
  const details: ConstructorParameters<typeof ConnectError>[3] = [
    {
      desc: ErrorInfoSchema,
      value: { reason: error.reason, domain: ERROR_DOMAIN, metadata: error.metadata },
    },
  ];
  if (error instanceof InvalidArgumentError) {
    details.push({
      desc: BadRequestSchema,
      value: {
        fieldViolations: error.violations.map((v) => ({
          field: v.field,
          description: v.description,
        })),
      },
    });
  }
  if (error instanceof FailedPreconditionError && error.violations.length > 0) {
    details.push({
      desc: PreconditionFailureSchema,
      value: { violations: error.violations.map((v) => ({ ...v })) },
    });
  }
  if (error instanceof NotFoundError) {
    details.push({
      desc: ResourceInfoSchema,
      value: {
        resourceType: error.resourceType,
        resourceName: error.id,
        description: error.message,
      },
    });
  }
  if (error instanceof ResourceExhaustedError && error.retryAfterMs !== undefined) {
    const ms = Math.max(0, Math.ceil(error.retryAfterMs));
    details.push({
      desc: RetryInfoSchema,
      value: {
        retryDelay: create(DurationSchema, {
          seconds: BigInt(Math.floor(ms / 1000)),
          nanos: (ms % 1000) * 1_000_000,
        }),
      },
    });
  }
  return new ConnectError(error.message, codeOf(error), undefined, details, error.cause ?? error);
}
