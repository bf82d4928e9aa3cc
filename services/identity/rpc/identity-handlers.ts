import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  type IdentityService,
  SignInResponseSchema,
} from "../../../gen/commerce/identity/v1/identity_service_pb.js";
import { type TokenPair, TokenPairSchema } from "../../../gen/commerce/identity/v1/token_pb.js";
import { UserStatus } from "../../../gen/commerce/identity/v1/user_pb.js";
import { requireCaller } from "../../../platform/auth/caller.js";
import type { IdentityDeps } from "../identity-deps.js";
import { refresh, signIn, signOut, type TokenPairResult } from "../sessions.js";
import { clientAddress } from "../sign-in-throttle.js";
import { createAccount } from "../users/create-account.js";
import {
  deleteUser,
  eraseUser,
  getMe,
  getUser,
  listUsers,
  updateUser,
} from "../users/user-management.js";
import { toUserMessage } from "../users/user-messages.js";
import type { UserState } from "../users/user-store.js";

const PROTO_TO_STATE: Partial<Record<UserStatus, UserState>> = {
  [UserStatus.ACTIVE]: "active",
  [UserStatus.DISABLED]: "disabled",
  [UserStatus.DELETED]: "deleted",
  [UserStatus.ERASED]: "erased",
};

function tokenPair(result: TokenPairResult): TokenPair {
  return create(TokenPairSchema, {
    accessToken: result.accessToken,
    tokenType: "Bearer",
    accessTokenExpireTime: timestampFromDate(result.accessTokenExpiresAt),
    refreshToken: result.refreshToken,
    refreshTokenExpireTime: timestampFromDate(result.refreshTokenExpiresAt),
  });
}

/** Thin mapping between the contract and the domain functions. */
export function createIdentityHandlers(deps: IdentityDeps): ServiceImpl<typeof IdentityService> {
  return {
    async signUp(req) {
      const user = await createAccount(
        deps,
        {
          email: req.email,
          password: req.password,
          firstName: req.firstName,
          lastName: req.lastName,
        },
        ["customer"],
      );
      return { user: toUserMessage(user) };
    },
    async signIn(req, ctx) {
      const result = await signIn(deps, {
        email: req.email,
        password: req.password,
        clientAddress: clientAddress(ctx.requestHeader),
      });
      return create(SignInResponseSchema, { tokens: tokenPair(result), userId: result.userId });
    },
    async refreshToken(req) {
      return { tokens: tokenPair(await refresh(deps, req.refreshToken)) };
    },
    async signOut(req) {
      await signOut(deps, { refreshToken: req.refreshToken, allSessions: req.allSessions });
      return {};
    },
    getJwks() {
      return { keys: deps.signingKeys.keys.map((k) => k.publicJwk) };
    },
    async getMe(_req, ctx) {
      return { user: toUserMessage(await getMe(deps, requireCaller(ctx))) };
    },
    async getUser(req, ctx) {
      return { user: toUserMessage(await getUser(deps, requireCaller(ctx), req.id)) };
    },
    async listUsers(req) {
      const status = PROTO_TO_STATE[req.status];
      const page = await listUsers(deps, {
        pageSize: req.pageSize,
        pageToken: req.pageToken,
        role: req.role,
        statuses: status ? [status] : [],
      });
      return { users: page.users.map(toUserMessage), nextPageToken: page.nextPageToken };
    },
    async updateUser(req, ctx) {
      const user = req.user;
      const updated = await updateUser(
        deps,
        requireCaller(ctx),
        {
          id: user?.id ?? "",
          email: user?.email ?? "",
          emailVerified: user?.emailVerified ?? false,
          firstName: user?.firstName ?? "",
          lastName: user?.lastName ?? "",
          roles: user?.roles ?? [],
          status: user ? PROTO_TO_STATE[user.status] : undefined,
        },
        req.updateMask?.paths ?? [],
      );
      return { user: toUserMessage(updated) };
    },
    async deleteUser(req, ctx) {
      return { user: toUserMessage(await deleteUser(deps, requireCaller(ctx), req.id)) };
    },
    async eraseUser(req, ctx) {
      const result = await eraseUser(deps, requireCaller(ctx), { id: req.id, reason: req.reason });
      return { userId: result.userId, eraseTime: timestampFromDate(result.erasedAt) };
    },
  };
}
