import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UserStatus } from "../../gen/commerce/identity/v1/user_pb.js";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  bearer,
  createAdmin,
  createCustomer,
  errorReason,
  GOOD_PASSWORD,
  rpcError,
  startIdentity,
  type TestIdentity,
  uniqueEmail,
} from "./testing/identity-harness.js";

const WINDOW_MS = 1500;
let t: TestIdentity;

beforeAll(async () => {
  t = await startIdentity({
    IDENTITY_SIGNIN_THROTTLE_WINDOW_MS: String(WINDOW_MS),
    IDENTITY_SIGNIN_MAX_FAILURES_PER_ACCOUNT: "3",
    IDENTITY_SIGNIN_MAX_FAILURES_PER_ADDRESS: "6",
  });
});
afterAll(async () => {
  await t?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("identity sessions", () => {
  it("signs up, signs in, reads itself, rotates, detects refresh reuse and revokes the family", async () => {
    const email = uniqueEmail();
    const { user } = await t.client.signUp({
      email: `  ${email.toUpperCase()} `,
      password: GOOD_PASSWORD,
      firstName: "Ada",
      lastName: "Lovelace",
    });
    expect(user).toMatchObject({
      email,
      firstName: "Ada",
      roles: ["customer"],
      status: UserStatus.ACTIVE,
    });

    const first = await t.client.signIn({ email, password: GOOD_PASSWORD });
    expect(first.userId).toBe(user!.id);
    expect(first.tokens!.tokenType).toBe("Bearer");
    expect(first.tokens!.refreshToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const me = await t.client.getMe({}, bearer(first.tokens!.accessToken));
    expect(me.user!.id).toBe(user!.id);

    const rotated = await t.client.refreshToken({ refreshToken: first.tokens!.refreshToken });
    expect(rotated.tokens!.refreshToken).not.toBe(first.tokens!.refreshToken);
    expect((await t.client.getMe({}, bearer(rotated.tokens!.accessToken))).user!.id).toBe(user!.id);

    // The first token is replayed (stolen): refused, and the whole family dies,
    // including the legitimately rotated token.
    const reuse = await rpcError(
      t.client.refreshToken({ refreshToken: first.tokens!.refreshToken }),
    );
    expect(reuse.code).toBe(Code.Unauthenticated);
    expect(errorReason(reuse)).toBe("REFRESH_TOKEN_REUSED");
    const victim = await rpcError(
      t.client.refreshToken({ refreshToken: rotated.tokens!.refreshToken }),
    );
    expect(victim.code).toBe(Code.Unauthenticated);
    const [counted] = await t.sql<{ live: number }[]>`
      select count(*)::int as live from refresh_tokens where user_id = ${user!.id} and revoked_at is null`;
    expect(counted!.live).toBe(0);

    // Only the stored hash exists, never the token.
    const stored = await t.sql`select token_hash from refresh_tokens where user_id = ${user!.id}`;
    for (const row of stored) {
      expect((row.token_hash as Buffer).toString("base64url")).not.toBe(first.tokens!.refreshToken);
      expect(row.token_hash).toHaveLength(32);
    }

    const again = await t.client.signIn({ email, password: GOOD_PASSWORD });
    await t.client.refreshToken({ refreshToken: again.tokens!.refreshToken });
  });

  it("refuses a duplicate email in any case, and frees it after a soft delete", async () => {
    const customer = await createCustomer(t);
    const duplicate = await rpcError(
      t.client.signUp({
        email: customer.email.toUpperCase(),
        password: GOOD_PASSWORD,
        firstName: "Other",
        lastName: "Person",
      }),
    );
    expect(duplicate.code).toBe(Code.AlreadyExists);

    const deleted = await t.client.deleteUser({ id: customer.id }, bearer(customer.accessToken));
    expect(deleted.user!.status).toBe(UserStatus.DELETED);
    expect(deleted.user!.deleteTime).toBeDefined();
    // Deleting revoked the session.
    const refresh = await rpcError(t.client.refreshToken({ refreshToken: customer.refreshToken }));
    expect(refresh.code).toBe(Code.Unauthenticated);

    const again = await t.client.signUp({
      email: customer.email,
      password: GOOD_PASSWORD,
      firstName: "New",
      lastName: "Owner",
    });
    expect(again.user!.id).not.toBe(customer.id);
    const signedIn = await t.client.signIn({ email: customer.email, password: GOOD_PASSWORD });
    expect(signedIn.userId).toBe(again.user!.id);
  });

  it("answers an unknown email and a wrong password identically", async () => {
    const customer = await createCustomer(t);
    const wrongPassword = await rpcError(
      t.client.signIn({ email: customer.email, password: "not the right password" }),
    );
    const unknownEmail = await rpcError(
      t.client.signIn({ email: uniqueEmail("nobody"), password: "not the right password" }),
    );
    expect(wrongPassword.code).toBe(Code.Unauthenticated);
    expect(unknownEmail.code).toBe(wrongPassword.code);
    expect(unknownEmail.rawMessage).toBe(wrongPassword.rawMessage);
    expect(errorReason(unknownEmail)).toBe(errorReason(wrongPassword));
    expect(unknownEmail.details.length).toBe(wrongPassword.details.length);
  });

  it("throttles an account after repeated failures and lets it in again after the window", async () => {
    const customer = await createCustomer(t);
    for (let i = 0; i < 3; i++) {
      const failed = await rpcError(
        t.client.signIn({ email: customer.email, password: "wrong password!!" }),
      );
      expect(failed.code).toBe(Code.Unauthenticated);
    }
    // Even the right password is refused while the account is throttled.
    const throttled = await rpcError(
      t.client.signIn({ email: customer.email, password: GOOD_PASSWORD }),
    );
    expect(throttled.code).toBe(Code.ResourceExhausted);
    const retry = throttled.findDetails(RetryInfoSchema)[0];
    expect(retry?.retryDelay).toBeDefined();
    const delayMs =
      Number(retry!.retryDelay!.seconds) * 1000 + Math.ceil(retry!.retryDelay!.nanos / 1e6);
    expect(delayMs).toBeGreaterThan(0);
    expect(delayMs).toBeLessThanOrEqual(WINDOW_MS);

    // Unknown emails are throttled the same way (the throttle reveals nothing).
    const ghost = uniqueEmail("ghost");
    for (let i = 0; i < 3; i++)
      await rpcError(t.client.signIn({ email: ghost, password: "wrong password!!" }));
    expect(
      (await rpcError(t.client.signIn({ email: ghost, password: "wrong password!!" }))).code,
    ).toBe(Code.ResourceExhausted);

    await sleep(delayMs + 200);
    const signedIn = await t.client.signIn({ email: customer.email, password: GOOD_PASSWORD });
    expect(signedIn.userId).toBe(customer.id);
  });

  it("throttles a client address across accounts, leaving other addresses alone", async () => {
    const customer = await createCustomer(t);
    const from = (address: string) => ({
      headers: { "x-forwarded-for": `198.51.100.1, ${address}` },
    });
    for (let i = 0; i < 6; i++) {
      const failed = await rpcError(
        t.client.signIn(
          { email: uniqueEmail("spray"), password: "wrong password!!" },
          from("203.0.113.9"),
        ),
      );
      expect(failed.code).toBe(Code.Unauthenticated);
    }
    const blocked = await rpcError(
      t.client.signIn({ email: customer.email, password: GOOD_PASSWORD }, from("203.0.113.9")),
    );
    expect(blocked.code).toBe(Code.ResourceExhausted);
    const other = await t.client.signIn(
      { email: customer.email, password: GOOD_PASSWORD },
      from("203.0.113.10"),
    );
    expect(other.userId).toBe(customer.id);
  });

  it("signs out one session or all of them, idempotently", async () => {
    const customer = await createCustomer(t);
    const second = await t.client.signIn({ email: customer.email, password: GOOD_PASSWORD });
    await t.client.signOut({ refreshToken: customer.refreshToken });
    await t.client.signOut({ refreshToken: customer.refreshToken });
    expect(
      (await rpcError(t.client.refreshToken({ refreshToken: customer.refreshToken }))).code,
    ).toBe(Code.Unauthenticated);
    // The other session is untouched until all_sessions.
    const rotated = await t.client.refreshToken({ refreshToken: second.tokens!.refreshToken });
    const third = await t.client.signIn({ email: customer.email, password: GOOD_PASSWORD });
    await t.client.signOut({ refreshToken: rotated.tokens!.refreshToken, allSessions: true });
    expect(
      (await rpcError(t.client.refreshToken({ refreshToken: third.tokens!.refreshToken }))).code,
    ).toBe(Code.Unauthenticated);
    // Unknown tokens sign out fine.
    await t.client.signOut({ refreshToken: "A".repeat(43) });
  });

  it("refuses sign-in and refresh for a disabled user and revokes its sessions", async () => {
    const admin = await createAdmin(t);
    const customer = await createCustomer(t);
    await t.client.updateUser(
      { user: { id: customer.id, status: UserStatus.DISABLED }, updateMask: { paths: ["status"] } },
      bearer(admin.accessToken),
    );
    const refresh = await rpcError(t.client.refreshToken({ refreshToken: customer.refreshToken }));
    expect(refresh.code).toBe(Code.Unauthenticated);
    const signIn = await rpcError(
      t.client.signIn({ email: customer.email, password: GOOD_PASSWORD }),
    );
    expect(signIn.code).toBe(Code.Unauthenticated);
    expect(errorReason(signIn)).toBe("INVALID_CREDENTIALS");

    await t.client.updateUser(
      { user: { id: customer.id, status: UserStatus.ACTIVE }, updateMask: { paths: ["status"] } },
      bearer(admin.accessToken),
    );
    expect((await t.client.signIn({ email: customer.email, password: GOOD_PASSWORD })).userId).toBe(
      customer.id,
    );
  });
});
