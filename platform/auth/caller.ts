import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { PermissionDeniedError, UnauthenticatedError } from "../errors/domain-errors.js";

/**
 * Who is calling, as proven by a verified access token. `kind` tells user
 * tokens (issued by identity, EdDSA) from mesh-internal service tokens.
 */
export interface Caller {
  kind: "user" | "service";
  /** `sub` claim: a user id (UUID) for users, "service:<name>" for services. */
  subject: string;
  roles: readonly string[];
  /** `jti` claim, when present. */
  tokenId: string | undefined;
  /** `exp` claim in epoch seconds. */
  expiresAt: number;
}

/** Handlers read the verified caller with `ctx.values.get(callerKey)`. */
export const callerKey = createContextKey<Caller | undefined>(undefined, {
  description: "verified caller of the current RPC",
});

export function hasRole(caller: Caller | undefined, role: string): boolean {
  return caller?.roles.includes(role) ?? false;
}

/** The caller of an RPC whose policy guarantees one; throws if absent. */
export function requireCaller(ctx: Pick<HandlerContext, "values">): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new UnauthenticatedError();
  return caller;
}

/** The calling user (not a service). */
export function requireUser(ctx: Pick<HandlerContext, "values">): Caller {
  const caller = requireCaller(ctx);
  if (caller.kind !== "user") throw new PermissionDeniedError("a user token is required");
  return caller;
}
