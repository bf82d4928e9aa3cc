import type { Interceptor } from "@connectrpc/connect";
import {
  PreconditionFailureSchema,
  ResourceInfoSchema,
} from "../../../gen/google/rpc/error_details_pb.js";
import { NotFoundError } from "../../../platform/errors/domain-errors.js";
import { toConnectError } from "../../../platform/errors/to-connect-error.js";
import { StockUnavailableError } from "../inventory/stock-errors.js";

const RESOURCE_TYPES: Record<string, string> = {
  product: "commerce.catalog.v1.Product",
  category: "commerce.catalog.v1.Category",
  reservation: "commerce.catalog.v1.Reservation",
};

/**
 * Adds the google.rpc details the catalog contract promises on top of the
 * platform's mapping (ErrorInfo, BadRequest): PreconditionFailure for stock
 * that cannot be reserved, ResourceInfo for unknown ids. The platform
 * interceptor passes the resulting ConnectError through unchanged.
 */
export function catalogErrorDetails(): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (error) {
      if (error instanceof StockUnavailableError) {
        const connectError = toConnectError(error);
        connectError.details.push({
          desc: PreconditionFailureSchema,
          value: { violations: error.violations },
        });
        throw connectError;
      }
      if (error instanceof NotFoundError) {
        const connectError = toConnectError(error);
        const resource = error.metadata.resource ?? "";
        connectError.details.push({
          desc: ResourceInfoSchema,
          value: {
            resourceType: RESOURCE_TYPES[resource] ?? resource,
            resourceName: error.metadata.id ?? "",
            description: error.message,
          },
        });
        throw connectError;
      }
      throw error;
    }
  };
}
