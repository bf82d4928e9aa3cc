import { generateKeyPairSync } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  createContextValues,
  createRouterTransport,
  type Interceptor,
} from "@connectrpc/connect";
import { exportJWK, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/commerce/identity/v1/identity_service_pb.js";
import { UserSchema } from "../../gen/commerce/identity/v1/user_pb.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import { toConnectError } from "../errors/to-connect-error.js";
import { accessPolicyOf, createAccessPolicyInterceptor } from "./access-policy-interceptor.js";
import { callerKey } from "./caller.js";
import { createTokenVerifier } from "./token-verifier.js";

const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
const verifier = createTokenVerifier({
  issuer: "test-issuer",
  audience: "test-audience",
  localJwks: () => ({ keys: [jwk] }),
});

async function token(sub: string, roles: string[]): Promise<string> {
  return new SignJWT({ roles })
    .setProtectedHeader({ alg: "EdDSA", kid: "k1", typ: "at+jwt" })
    .setIssuer("test-issuer")
    .setAudience("test-audience")
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(privateKey);
}

const mapErrors: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (error) {
    throw toConnectError(error);
  }
};

function setup(publicServices?: readonly string[]) {
  const errors: unknown[] = [];
  const logger = { error: (obj: unknown) => errors.push(obj), debug: () => {} };
  const seen: (string | undefined)[] = [];
  const transport = createRouterTransport(
    (router) => {
      router.service(IdentityService, {
        getJwks(_req, ctx) {
          seen.push(ctx.values.get(callerKey)?.subject);
          return { keys: [] };
        },
        getMe(_req, ctx) {
          const caller = ctx.values.get(callerKey);
          return {
            user: create(UserSchema, {
              id: caller?.subject ?? "",
              roles: [...(caller?.roles ?? [])],
            }),
          };
        },
        listUsers() {
          return { users: [] };
        },
      });
      router.service(Health, {
        check() {
          return { status: 1 };
        },
      });
    },
    {
      router: {
        interceptors: [
          mapErrors,
          createAccessPolicyInterceptor({
            verifier,
            logger,
            ...(publicServices ? { publicServices } : {}),
          }),
        ],
      },
    },
  );
  return {
    identity: createClient(IdentityService, transport),
    health: createClient(Health, transport),
    errors,
    seen,
  };
}

const auth = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });

async function codeOf(call: Promise<unknown>): Promise<Code> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error).code;
  }
  throw new Error("call succeeded");
}

describe("access policy interceptor", () => {
  it("reads the policy from the contract", () => {
    expect(accessPolicyOf(IdentityService.method.getJwks)).toEqual({ kind: "public" });
    expect(accessPolicyOf(IdentityService.method.getMe)).toEqual({ kind: "authenticated" });
    expect(accessPolicyOf(IdentityService.method.listUsers)).toEqual({
      kind: "roles",
      roles: ["admin"],
    });
    expect(accessPolicyOf(Health.method.check)).toEqual({ kind: "public" });
    expect(accessPolicyOf(Health.method.check, []).kind).toBe("invalid");
  });

  it("lets public calls through and attaches a caller only for a valid token", async () => {
    const { identity, seen } = setup();
    await identity.getJwks({});
    await identity.getJwks({}, auth(await token("u-1", ["customer"])));
    await identity.getJwks({}, auth("garbage"));
    await identity.getJwks({}, { headers: { authorization: "Basic x" } });
    expect(seen).toEqual([undefined, "u-1", undefined, undefined]);
  });

  it("requires a valid bearer token for authenticated calls and hands the caller to the handler", async () => {
    const { identity } = setup();
    expect(await codeOf(identity.getMe({}))).toBe(Code.Unauthenticated);
    expect(await codeOf(identity.getMe({}, auth("a.b.c")))).toBe(Code.Unauthenticated);
    expect(await codeOf(identity.getMe({}, { headers: { authorization: "Token abc" } }))).toBe(
      Code.Unauthenticated,
    );
    const me = await identity.getMe({}, auth(await token("u-2", ["customer"])));
    expect(me.user).toMatchObject({ id: "u-2", roles: ["customer"] });
  });

  it("requires one of the listed roles", async () => {
    const { identity } = setup();
    expect(await codeOf(identity.listUsers({}, auth(await token("u-3", ["customer"]))))).toBe(
      Code.PermissionDenied,
    );
    expect(await codeOf(identity.listUsers({}))).toBe(Code.Unauthenticated);
    await identity.listUsers({}, auth(await token("u-4", ["customer", "admin"])));
  });

  it("refuses a method without a policy, and logs it once", async () => {
    const { health, errors } = setup([]);
    expect(await codeOf(health.check({}))).toBe(Code.PermissionDenied);
    expect(await codeOf(health.check({}))).toBe(Code.PermissionDenied);
    expect(errors).toHaveLength(1);
    const open = setup();
    expect((await open.health.check({})).status).toBe(1);
  });

  it("never writes the caller into context values shared between calls", async () => {
    const interceptor = createAccessPolicyInterceptor({ verifier });
    const shared = createContextValues();
    let inside: unknown;
    const next = async (req: { contextValues: typeof shared }) => {
      inside = req.contextValues.get(callerKey);
      return {} as never;
    };
    await interceptor(next as never)({
      method: IdentityService.method.getMe,
      service: IdentityService,
      header: new Headers({ authorization: `Bearer ${await token("u-5", ["customer"])}` }),
      contextValues: shared,
    } as never);
    expect(inside).toMatchObject({ subject: "u-5" });
    expect(shared.get(callerKey)).toBeUndefined();
  });
});
