import type { HandlerContext } from "@connectrpc/connect";
import { hasRole, requireCaller } from "../../../platform/auth/caller.js";
import { PermissionDeniedError } from "../../../platform/errors/domain-errors.js";

export interface OrdersCaller {
  /** The token's subject: a user id, or "service:<name>" for mesh services. */
  subject: string;
  isAdmin: boolean;
  isUser: boolean;
}

/**
 * The verified caller of an RPC (the access-policy interceptor put it into
 * the context). The one place this service reads identity from a call.
 */
export function callerOf(ctx: Pick<HandlerContext, "values">): OrdersCaller {
  const caller = requireCaller(ctx);
  return {
    subject: caller.subject,
    isAdmin: hasRole(caller, "admin"),
    isUser: caller.kind === "user",
  };
}

/** Orders belong to users: a service token cannot place one. */
export function requireUserCaller(ctx: Pick<HandlerContext, "values">): OrdersCaller {
  const caller = callerOf(ctx);
  if (!caller.isUser) throw new PermissionDeniedError("a user token is required", "USER_REQUIRED");
  return caller;
}
