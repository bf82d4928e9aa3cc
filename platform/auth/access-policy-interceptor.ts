import { type DescMethod, getOption } from "@bufbuild/protobuf";
import {
  type ContextKey,
  type ContextValues,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import type { Logger } from "pino";
import { access } from "../../gen/commerce/options/v1/access_pb.js";
import { PermissionDeniedError, UnauthenticatedError } from "../errors/domain-errors.js";
import { type Caller, callerKey } from "./caller.js";
import type { TokenVerifier } from "./token-verifier.js";

export type AccessPolicy =
  | { kind: "public" }
  | { kind: "authenticated" }
  | { kind: "roles"; roles: readonly string[] }
  /** No policy, or more than one kind: a contract error, refused at run time. */
  | { kind: "invalid"; problem: string };

/**
 * Platform services that carry no access option because their protos are not
 * ours; both are read-only and expected to be reachable by probes and tools.
 */
export const PLATFORM_PUBLIC_SERVICES: readonly string[] = [
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
];

/** Reads the `(commerce.options.v1.access)` option of a method. */
export function accessPolicyOf(
  method: DescMethod,
  publicServices: readonly string[] = PLATFORM_PUBLIC_SERVICES,
): AccessPolicy {
  let policy: AccessPolicy;
  if (publicServices.includes(method.parent.typeName)) {
    policy = { kind: "public" };
  } else {
    const option = getOption(method, access);
    const kinds = [option.public, option.authenticated, option.roles.length > 0].filter(Boolean);
    if (kinds.length === 0) policy = { kind: "invalid", problem: "no access policy declared" };
    else if (kinds.length > 1)
      policy = { kind: "invalid", problem: "more than one access policy kind" };
    else if (option.public) policy = { kind: "public" };
    else if (option.authenticated) policy = { kind: "authenticated" };
    else policy = { kind: "roles", roles: Object.freeze([...option.roles]) };
  }
  return policy;
}

export interface AccessPolicyOptions {
  verifier: TokenVerifier;
  logger?: Pick<Logger, "error" | "debug">;
  publicServices?: readonly string[];
}

/**
 * Enforces the access policy declared in the contract, on every service
 * (defense in depth behind the edge). The verified caller is handed to
 * handlers through `ctx.values.get(callerKey)`.
 */
export function createAccessPolicyInterceptor(options: AccessPolicyOptions): Interceptor {
  const { verifier, logger } = options;
  const publicServices = options.publicServices ?? PLATFORM_PUBLIC_SERVICES;
  const reported = new WeakSet<DescMethod>();
  // Descriptors are immutable: read each method's option once.
  const policies = new WeakMap<DescMethod, AccessPolicy>();
  return (next) => async (req) => {
    let policy = policies.get(req.method);
    if (!policy) {
      policy = accessPolicyOf(req.method, publicServices);
      policies.set(req.method, policy);
    }
    if (policy.kind === "invalid") {
      if (!reported.has(req.method)) {
        reported.add(req.method);
        logger?.error(
          { rpc: `/${req.service.typeName}/${req.method.name}`, problem: policy.problem },
          "RPC refused: its contract has no valid access policy",
        );
      }
      throw new PermissionDeniedError("this method has no access policy", "ACCESS_POLICY_MISSING");
    }
    const header = req.header.get("authorization");
    let caller: Caller | undefined;
    if (policy.kind === "public") {
      // A public RPC still learns who is calling when a valid token comes
      // along; a bad token does not make a public call fail.
      if (header !== null) {
        caller = await Promise.resolve()
          .then(() => verifier.verify(bearerToken(header) ?? ""))
          .catch((error: unknown) => {
            logger?.debug({ err: error }, "ignored invalid token on a public RPC");
            return undefined;
          });
      }
    } else {
      const token = bearerToken(header);
      if (token === undefined)
        throw new UnauthenticatedError("authentication required", "TOKEN_MISSING");
      caller = await verifier.verify(token);
      if (policy.kind === "roles" && !policy.roles.some((role) => caller!.roles.includes(role))) {
        throw new PermissionDeniedError(
          "the caller lacks a role this method requires",
          "ROLE_REQUIRED",
        );
      }
    }
    if (caller === undefined) return next(req);
    return next({ ...req, contextValues: withValue(req.contextValues, callerKey, caller) });
  };
}

/**
 * `Bearer <token>` (scheme case-insensitive, RFC 7235). Absent header →
 * undefined; a present but malformed header is an error, not anonymous.
 */
export function bearerToken(header: string | null): string | undefined {
  if (header === null) return undefined;
  const match = /^Bearer +([^\s]+) *$/i.exec(header);
  if (!match) throw new UnauthenticatedError("malformed authorization header", "TOKEN_MALFORMED");
  return match[1];
}

/**
 * A copy-on-write view: the gRPC fast path shares one empty ContextValues
 * between calls, so it must never be mutated.
 */
function withValue<T>(base: ContextValues, key: ContextKey<T>, value: T): ContextValues {
  const own = createContextValues().set(key, value);
  const shadowed = new Set<symbol>([key.id]);
  const view: ContextValues = {
    get: (k) => (shadowed.has(k.id) ? own.get(k) : base.get(k)),
    set(k, v) {
      shadowed.add(k.id);
      own.set(k, v);
      return view as never;
    },
    delete(k) {
      shadowed.add(k.id);
      own.delete(k);
      return view as never;
    },
  };
  return view;
}
