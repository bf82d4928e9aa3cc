import type { IncomingHttpHeaders } from "node:http";
import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { Counter, type Registry } from "prom-client";
import {
  type AccessPolicy,
  accessPolicyOf,
  bearerToken,
} from "../../platform/auth/access-policy-interceptor.js";
import type { Caller } from "../../platform/auth/caller.js";
import type { TokenVerifier } from "../../platform/auth/token-verifier.js";
import {
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
} from "../../platform/errors/domain-errors.js";
import { toConnectError } from "../../platform/errors/to-connect-error.js";
import type { RateLimitConfig, RouteClass } from "./edge-config.js";
import { type Decision, type Limit, type RateLimiter, rateLimitHeaders } from "./rate-limiter.js";

/**
 * The one place where the edge decides whether a call may go upstream, for
 * REST and pass-through alike: access policy from the contract, bearer token
 * verification, then the rate limit of the route class — per user when the
 * token is valid, per client address otherwise. A request with a bad token is
 * counted against its address, so token guessing is limited too.
 */

export type AdmissionResult =
  | { ok: true; caller: Caller | undefined; headers: Record<string, string> }
  | { ok: false; error: ConnectError; headers: Record<string, string> };

export interface Admission {
  /** Synchronous when no token is to be verified and the limiter decides from leased tokens. */
  admit(
    method: DescMethod,
    headers: IncomingHttpHeaders,
    clientAddress: string,
  ): AdmissionResult | Promise<AdmissionResult>;
}

export interface AdmissionOptions {
  verifier: TokenVerifier;
  rateLimiter: RateLimiter;
  rateLimits: RateLimitConfig;
  registry: Registry;
}

export function routeClassOf(method: DescMethod, policy: AccessPolicy): RouteClass {
  if (method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS) return "read";
  if (policy.kind === "public") return "auth";
  return "write";
}

export function createAdmission(options: AdmissionOptions): Admission {
  const { verifier, rateLimiter, rateLimits } = options;
  const cache = new WeakMap<DescMethod, { policy: AccessPolicy; routeClass: RouteClass }>();
  const limited = new Counter({
    name: "edge_rate_limited_total",
    help: "Requests refused by the edge rate limiter, by route class and caller kind.",
    labelNames: ["route_class", "caller"] as const,
    registers: [options.registry],
  });
  const refusedAuth = new Counter({
    name: "edge_auth_refused_total",
    help: "Requests refused by the edge's access checks, by gRPC code.",
    labelNames: ["code"] as const,
    registers: [options.registry],
  });

  const refuse = (error: unknown, headers: Record<string, string>): AdmissionResult => {
    const connectError = error instanceof ConnectError ? error : toConnectError(error);
    if (connectError.code !== Code.ResourceExhausted)
      refusedAuth.inc({ code: Code[connectError.code] });
    return { ok: false, error: connectError, headers };
  };

  /** The rate limit, then the access policy, for a caller known (or not) by now. */
  const decide = (
    policy: AccessPolicy,
    routeClass: RouteClass,
    caller: Caller | undefined,
    authError: unknown,
    clientAddress: string,
  ): AdmissionResult | Promise<AdmissionResult> => {
    const limit: Limit = rateLimits[routeClass][caller ? "user" : "anonymous"];
    const pending = rateLimiter.check(
      caller ? `${routeClass}:u:${caller.subject}` : `${routeClass}:a:${clientAddress}`,
      limit,
    );
    // Usually decided from leased tokens, synchronously: no await, no extra tick.
    return pending instanceof Promise
      ? pending.then((decision) => verdict(policy, routeClass, caller, authError, limit, decision))
      : verdict(policy, routeClass, caller, authError, limit, pending);
  };

  const verdict = (
    policy: AccessPolicy,
    routeClass: RouteClass,
    caller: Caller | undefined,
    authError: unknown,
    limit: Limit,
    decision: Decision,
  ): AdmissionResult => {
    const rateHeaders = rateLimitHeaders(decision, limit);
    if (!decision.allowed) {
      limited.inc({ route_class: routeClass, caller: caller ? "user" : "anonymous" });
      return refuse(
        new ResourceExhaustedError(
          "rate limit exceeded; retry later",
          "RATE_LIMITED",
          decision.retryAfterSeconds * 1000,
        ),
        rateHeaders,
      );
    }
    if (policy.kind === "public") return { ok: true, caller, headers: rateHeaders };
    if (!caller) {
      return refuse(
        authError ?? new UnauthenticatedError("authentication required", "TOKEN_MISSING"),
        rateHeaders,
      );
    }
    if (policy.kind === "roles" && !policy.roles.some((role) => caller.roles.includes(role))) {
      return refuse(
        new PermissionDeniedError("the caller lacks a role this method requires", "ROLE_REQUIRED"),
        rateHeaders,
      );
    }
    return { ok: true, caller, headers: rateHeaders };
  };

  const verifyThenDecide = async (
    authorization: string,
    policy: AccessPolicy,
    routeClass: RouteClass,
    clientAddress: string,
  ): Promise<AdmissionResult> => {
    let caller: Caller | undefined;
    let authError: unknown;
    try {
      caller = await verifier.verify(bearerToken(authorization) ?? "");
    } catch (error) {
      authError = error;
    }
    return decide(policy, routeClass, caller, authError, clientAddress);
  };

  return {
    admit(method, headers, clientAddress) {
      let entry = cache.get(method);
      if (!entry) {
        const policy = accessPolicyOf(method);
        entry = { policy, routeClass: routeClassOf(method, policy) };
        cache.set(method, entry);
      }
      const { policy, routeClass } = entry;
      if (policy.kind === "invalid") {
        return refuse(
          new PermissionDeniedError("this method has no access policy", "ACCESS_POLICY_MISSING"),
          {},
        );
      }
      const authorization = headers.authorization;
      return authorization === undefined
        ? decide(policy, routeClass, undefined, undefined, clientAddress)
        : verifyThenDecide(authorization, policy, routeClass, clientAddress);
    },
  };
}
