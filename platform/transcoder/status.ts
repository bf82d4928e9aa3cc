import { create, type Registry, toBinary, toJson } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";

/**
 * gRPC code → HTTP status, as grpc-gateway maps it (runtime.HTTPStatusFromCode).
 * DESIGN.md lists the common ones; CANCELLED (499) and OUT_OF_RANGE (400) are
 * grpc-gateway's too.
 */
const HTTP_STATUS: readonly number[] = [
  200, // OK
  499, // CANCELLED
  500, // UNKNOWN
  400, // INVALID_ARGUMENT
  504, // DEADLINE_EXCEEDED
  404, // NOT_FOUND
  409, // ALREADY_EXISTS
  403, // PERMISSION_DENIED
  429, // RESOURCE_EXHAUSTED
  400, // FAILED_PRECONDITION
  409, // ABORTED
  400, // OUT_OF_RANGE
  501, // UNIMPLEMENTED
  500, // INTERNAL
  503, // UNAVAILABLE
  500, // DATA_LOSS
  401, // UNAUTHENTICATED
];

export function httpStatusFromCode(code: number): number {
  return HTTP_STATUS[code] ?? 500;
}

/**
 * An error the transcoder raises itself, before or instead of calling the
 * upstream. It is a ConnectError (so the Status body is built the same way)
 * with an HTTP status that may differ from the code's default (405, 413, 415).
 */
export class HttpError extends ConnectError {
  // `name` stays "ConnectError": ConnectError's instanceof check is by name.
  readonly httpStatus: number;
  readonly headers: Record<string, string> | undefined;
  constructor(
    httpStatus: number,
    code: Code,
    message: string,
    options: {
      violations?: { field: string; description: string }[];
      headers?: Record<string, string>;
      cause?: unknown;
    } = {},
  ) {
    super(
      message,
      code,
      undefined,
      options.violations
        ? [{ desc: BadRequestSchema, value: { fieldViolations: options.violations } }]
        : undefined,
      options.cause,
    );
    this.httpStatus = httpStatus;
    this.headers = options.headers;
  }
}

export function badRequest(message: string, field?: string, description?: string): HttpError {
  return new HttpError(
    400,
    Code.InvalidArgument,
    message,
    field === undefined ? {} : { violations: [{ field, description: description ?? message }] },
  );
}

export interface StatusJson {
  code: number;
  message: string;
  details: unknown[];
}

/**
 * A google.rpc.Status in proto3 JSON. Details are Any values with "@type";
 * a detail whose type is not in the registry keeps its bytes as base64
 * `value` (lossless, and never a reason to fail the error response itself).
 */
export function statusJson(error: ConnectError, registry: Registry): StatusJson {
  const details: unknown[] = [];
  for (const detail of error.details) {
    let typeName: string;
    let bytes: Uint8Array;
    if ("desc" in detail) {
      typeName = detail.desc.typeName;
      bytes = toBinary(detail.desc, create(detail.desc, detail.value));
    } else {
      typeName = detail.type;
      bytes = detail.value;
    }
    const any = create(AnySchema, { typeUrl: `type.googleapis.com/${typeName}`, value: bytes });
    try {
      details.push(toJson(AnySchema, any, { registry }));
    } catch {
      details.push({ "@type": any.typeUrl, value: Buffer.from(bytes).toString("base64") });
    }
  }
  return { code: error.code, message: error.rawMessage, details };
}

/** Anything thrown becomes a ConnectError; unknown errors never leak their text. */
export function asConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/** ConnectError overrides instanceof (any ConnectError would pass); check the prototype. */
export function isHttpError(error: unknown): error is HttpError {
  return (
    typeof error === "object" &&
    error !== null &&
    Object.prototype.isPrototypeOf.call(HttpError.prototype, error)
  );
}

export function httpStatusOf(error: ConnectError): number {
  return isHttpError(error) ? error.httpStatus : httpStatusFromCode(error.code);
}
