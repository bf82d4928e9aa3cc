import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  UserCreatedSchema,
  UserDeletedSchema,
  UserErasedSchema,
  UserUpdatedSchema,
} from "../../gen/commerce/identity/v1/events_pb.js";
import { type UserSchema, UserStatus } from "../../gen/commerce/identity/v1/user_pb.js";
import { fromPgTimeOrNull } from "../../platform/db/pg-time.js";
import { createPiiCipher, parseMasterKey } from "./crypto/pii-cipher.js";
import { rewrapDataKeys } from "./crypto/rewrap-data-keys.js";
import { loadIdentityConfig } from "./identity-config.js";
import { createIdentityCore } from "./identity-core.js";
import type { IdentityDeps } from "./identity-deps.js";
import { signIn } from "./sessions.js";
import {
  bearer,
  createAdmin,
  createCustomer,
  fieldViolations,
  GOOD_PASSWORD,
  rpcError,
  startIdentity,
  type TestIdentity,
  uniqueEmail,
} from "./testing/identity-harness.js";
import { createAccount } from "./users/create-account.js";
import { createUserStore } from "./users/user-store.js";

let t: TestIdentity;
let admin: { id: string; accessToken: string };

beforeAll(async () => {
  t = await startIdentity();
  admin = await createAdmin(t);
});
afterAll(async () => {
  await t?.stop();
});

async function outboxOf(userId: string) {
  return t.sql<{ event_type: string; subject: string; payload: Buffer; aggregate_seq: string }[]>`
    select event_type, subject, payload, aggregate_seq::text from outbox
    where aggregate_id = ${userId} order by aggregate_seq`;
}

async function countUsers(): Promise<number> {
  const [row] = await t.sql<{ n: number }[]>`select count(*)::int as n from users`;
  return row!.n;
}

describe("identity users", () => {
  it("keeps customers apart: another user's id is NOT_FOUND, and changing roles or status is refused", async () => {
    const a = await createCustomer(t, { firstName: "Alice" });
    const b = await createCustomer(t, { firstName: "Bob" });
    const asA = bearer(a.accessToken);
    expect((await rpcError(t.client.getUser({ id: b.id }, asA))).code).toBe(Code.NotFound);
    // Same answer as for an id that does not exist: nothing to probe.
    expect(
      (await rpcError(t.client.getUser({ id: "01900000-0000-7000-8000-000000000000" }, asA))).code,
    ).toBe(Code.NotFound);
    expect(
      (
        await rpcError(
          t.client.updateUser(
            { user: { id: b.id, firstName: "Mallory" }, updateMask: { paths: ["first_name"] } },
            asA,
          ),
        )
      ).code,
    ).toBe(Code.NotFound);
    expect((await rpcError(t.client.deleteUser({ id: b.id }, asA))).code).toBe(Code.NotFound);

    const attempts: [string[], MessageInitShape<typeof UserSchema>][] = [
      [["roles"], { id: a.id, roles: ["admin"] }],
      [["status"], { id: a.id, status: UserStatus.ACTIVE }],
      [["email_verified"], { id: a.id, emailVerified: true }],
      [["first_name", "roles"], { id: a.id, firstName: "Eve", roles: ["customer", "admin"] }],
    ];
    for (const [paths, user] of attempts) {
      const refused = await rpcError(t.client.updateUser({ user, updateMask: { paths } }, asA));
      expect(refused.code, paths.join()).toBe(Code.PermissionDenied);
    }
    const outputOnly = await rpcError(
      t.client.updateUser({ user: { id: a.id }, updateMask: { paths: ["create_time"] } }, asA),
    );
    expect(outputOnly.code).toBe(Code.InvalidArgument);
    const empty = await rpcError(
      t.client.updateUser({ user: { id: a.id }, updateMask: { paths: [] } }, asA),
    );
    expect(empty.code).toBe(Code.InvalidArgument);

    const bAfter = await t.client.getUser({ id: b.id }, bearer(b.accessToken));
    expect(bAfter.user).toMatchObject({ firstName: "Bob", status: UserStatus.ACTIVE });
    const aAfter = await t.client.getMe({}, asA);
    expect(aAfter.user).toMatchObject({
      firstName: "Alice",
      roles: ["customer"],
      emailVerified: false,
    });

    // What a customer may do: change its own names and email.
    const newEmail = uniqueEmail("renamed");
    const updated = await t.client.updateUser(
      {
        user: { id: a.id, firstName: "Alicia", email: newEmail.toUpperCase() },
        updateMask: { paths: ["first_name", "email"] },
      },
      asA,
    );
    expect(updated.user).toMatchObject({
      firstName: "Alicia",
      email: newEmail,
      lastName: "Hopper",
    });
    expect((await t.client.signIn({ email: newEmail, password: GOOD_PASSWORD })).userId).toBe(a.id);
    // Taking another live user's email is refused.
    const taken = await rpcError(
      t.client.updateUser(
        { user: { id: a.id, email: b.email }, updateMask: { paths: ["email"] } },
        asA,
      ),
    );
    expect(taken.code).toBe(Code.AlreadyExists);
  });

  it("lets admins manage roles and list users with keyset pagination and filters", async () => {
    const created = [];
    for (let i = 0; i < 5; i++) created.push(await createCustomer(t));
    const asAdmin = bearer(admin.accessToken);
    const promoted = await t.client.updateUser(
      {
        user: { id: created[0]!.id, roles: ["customer", "admin"] },
        updateMask: { paths: ["roles"] },
      },
      asAdmin,
    );
    expect(promoted.user!.roles).toEqual(["customer", "admin"]);
    await t.client.updateUser(
      {
        user: { id: created[1]!.id, status: UserStatus.DISABLED },
        updateMask: { paths: ["status"] },
      },
      asAdmin,
    );
    await t.client.deleteUser({ id: created[2]!.id }, asAdmin);

    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await t.client.listUsers({ pageSize: 2, pageToken }, asAdmin);
      expect(page.users.length).toBeLessThanOrEqual(2);
      seen.push(...page.users.map((u) => u.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "" && pages < 100);
    expect(new Set(seen).size).toBe(seen.length);
    expect([...seen].sort().reverse()).toEqual(seen);
    expect(seen).not.toContain(created[2]!.id);
    for (const c of [created[0], created[1], created[3], created[4]]) expect(seen).toContain(c!.id);

    const admins = await t.client.listUsers({ role: "admin" }, asAdmin);
    expect(admins.users.map((u) => u.id).sort()).toEqual([admin.id, created[0]!.id].sort());
    const disabled = await t.client.listUsers({ status: UserStatus.DISABLED }, asAdmin);
    expect(disabled.users.map((u) => u.id)).toEqual([created[1]!.id]);
    const deleted = await t.client.listUsers({ status: UserStatus.DELETED }, asAdmin);
    expect(deleted.users.map((u) => u.id)).toContain(created[2]!.id);

    const first = await t.client.listUsers({ pageSize: 1 }, asAdmin);
    const mismatched = await rpcError(
      t.client.listUsers({ pageSize: 1, pageToken: first.nextPageToken, role: "admin" }, asAdmin),
    );
    expect(mismatched.code).toBe(Code.InvalidArgument);
    for (const request of [{ pageToken: "bm9wZQ" }, { pageSize: -1 }, { role: "root" }]) {
      expect((await rpcError(t.client.listUsers(request, asAdmin))).code).toBe(
        Code.InvalidArgument,
      );
    }
    const capped = await t.client.listUsers({ pageSize: 100_000 }, asAdmin);
    expect(capped.users.length).toBeLessThanOrEqual(200);
  });

  it("writes each event exactly once per change, without personal data, and the relay publishes them", async () => {
    const email = uniqueEmail("events");
    const { user } = await t.client.signUp({
      email,
      password: GOOD_PASSWORD,
      firstName: "Evelyn",
      lastName: "Ventura",
    });
    const id = user!.id;
    const { tokens } = await t.client.signIn({ email, password: GOOD_PASSWORD });
    const asUser = bearer(tokens!.accessToken);
    await t.client.updateUser(
      { user: { id, firstName: "Evie" }, updateMask: { paths: ["first_name"] } },
      asUser,
    );
    // No change → no event.
    await t.client.updateUser(
      { user: { id, firstName: "Evie" }, updateMask: { paths: ["first_name"] } },
      asUser,
    );
    await t.client.deleteUser({ id }, asUser);
    expect((await rpcError(t.client.deleteUser({ id }, asUser))).code).toBe(Code.NotFound);

    const rows = await outboxOf(id);
    expect(rows.map((r) => r.event_type)).toEqual([
      "commerce.identity.v1.UserCreated",
      "commerce.identity.v1.UserUpdated",
      "commerce.identity.v1.UserDeleted",
    ]);
    expect(rows.map((r) => r.aggregate_seq)).toEqual(["1", "2", "3"]);
    expect(rows[0]!.subject).toBe(`${t.eventsDomain}.user.user_created`);
    expect(fromBinary(UserCreatedSchema, rows[0]!.payload)).toMatchObject({
      userId: id,
      roles: ["customer"],
    });
    expect(fromBinary(UserUpdatedSchema, rows[1]!.payload)).toMatchObject({
      userId: id,
      changedFields: ["first_name"],
      status: UserStatus.ACTIVE,
    });
    expect(fromBinary(UserDeletedSchema, rows[2]!.payload).userId).toBe(id);
    for (const row of rows) {
      const bytes = row.payload.toString("latin1");
      for (const secret of [email, "Evelyn", "Evie", "Ventura", GOOD_PASSWORD])
        expect(bytes).not.toContain(secret);
    }

    // The relay publishes every outbox row to this run's stream, once.
    const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
    try {
      const jsm = await jetstreamManager(nc);
      let published = -1;
      let total = 0;
      for (let i = 0; i < 100; i++) {
        const [row] = await t.sql<{ total: number; pending: number }[]>`
          select count(*)::int as total, count(*) filter (where sent_at is null)::int as pending from outbox`;
        total = row!.total;
        published = Number((await jsm.streams.info(t.eventsDomain.toUpperCase())).state.messages);
        if (row!.pending === 0 && published === total) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(published).toBe(total);
    } finally {
      await nc.close();
    }
  });

  it("stores only ciphertext, and after erasure the personal data cannot be decrypted", async () => {
    const email = uniqueEmail("secret");
    const { user } = await t.client.signUp({
      email,
      password: GOOD_PASSWORD,
      firstName: "Zelda",
      lastName: "Quartermaine",
    });
    const id = user!.id;
    const [row] = await t.sql`select * from users where id = ${id}`;
    const dump = JSON.stringify(row, (_k, v) =>
      v?.type === "Buffer" ? Buffer.from(v.data).toString("latin1") : v,
    );
    for (const plain of [email, email.split("@")[0]!, "Zelda", "Quartermaine", GOOD_PASSWORD]) {
      expect(dump).not.toContain(plain);
    }
    expect(row!.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    const [key] = await t.sql`select * from user_keys where user_id = ${id}`;
    expect(key!.wrapped_key).toBeInstanceOf(Buffer);

    const deps = await createIdentityCore({
      config: loadIdentityConfig({ ...process.env, ...t.env }),
      sql: t.sql,
      redis: undefined,
      logger: { info() {}, warn() {}, error() {}, debug() {} },
    });
    const dataKey = deps.pii.unwrapDataKey(id, key!.wrapped_key, key!.master_key_id);
    expect(deps.pii.decrypt(dataKey, id, "first_name", row!.first_name_ciphertext)).toBe("Zelda");
    // Ciphertexts are bound to their user and column.
    expect(() => deps.pii.decrypt(dataKey, id, "last_name", row!.first_name_ciphertext)).toThrow();

    const erased = await t.client.eraseUser(
      { id, reason: "ticket GDPR-123" },
      bearer(admin.accessToken),
    );
    expect(erased.userId).toBe(id);
    const again = await t.client.eraseUser({ id, reason: "retry" }, bearer(admin.accessToken));
    expect(again.eraseTime).toEqual(erased.eraseTime);

    const [keyAfter] = await t.sql`select * from user_keys where user_id = ${id}`;
    expect(keyAfter!.wrapped_key).toBeNull();
    expect(fromPgTimeOrNull(keyAfter!.destroyed_at)).toBeInstanceOf(Date);
    const [rowAfter] = await t.sql`select * from users where id = ${id}`;
    expect(rowAfter).toMatchObject({ status: "erased", email_index: null, password_hash: null });
    // The data key is gone; the master key (all that is left) does not open
    // the old ciphertext, and unwrapping has nothing to unwrap.
    const devKeys = JSON.parse(readFileSync(join(t.dataDir, "pii-keys.json"), "utf8")) as {
      masterKey: string;
    };
    const master = Buffer.from(devKeys.masterKey, "base64");
    for (const [column, field] of [
      ["email_ciphertext", "email"],
      ["first_name_ciphertext", "first_name"],
      ["last_name_ciphertext", "last_name"],
    ] as const) {
      expect(() => deps.pii.decrypt(master, id, field, row![column])).toThrow();
      expect(() => deps.pii.decrypt(dataKey, id, field, row![column])).not.toThrow();
    }
    expect(
      deps.users.dataKeyOf({
        id,
        wrapped_key: keyAfter!.wrapped_key,
        master_key_id: keyAfter!.master_key_id,
      }),
    ).toBeUndefined();
    const viewed = await t.client.getUser({ id }, bearer(admin.accessToken));
    expect(viewed.user).toMatchObject({
      status: UserStatus.ERASED,
      email: "",
      firstName: "",
      lastName: "",
    });
    expect(viewed.user!.eraseTime).toBeDefined();

    const events = (await outboxOf(id)).map((r) => r.event_type);
    expect(events).toEqual([
      "commerce.identity.v1.UserCreated",
      "commerce.identity.v1.UserDeleted",
      "commerce.identity.v1.UserErased",
    ]);
    expect(fromBinary(UserErasedSchema, (await outboxOf(id))[2]!.payload).userId).toBe(id);
    const [audit] = await t.sql`select * from audit_log where user_id = ${id}`;
    expect(audit).toMatchObject({
      action: "user.erased",
      actor: admin.id,
      reason: "ticket GDPR-123",
    });
    expect((await rpcError(t.client.signIn({ email, password: GOOD_PASSWORD }))).code).toBe(
      Code.Unauthenticated,
    );
  });

  it("refuses bad input with field violations, writes nothing and never hashes unbounded passwords", async () => {
    const before = await countUsers();
    const base = {
      email: uniqueEmail("bad"),
      password: GOOD_PASSWORD,
      firstName: "Val",
      lastName: "Id",
    };
    const cases: [string, Partial<typeof base>, string][] = [
      ["invalid email", { email: "not-an-email" }, "email"],
      ["email with two @", { email: "a@b@example.com" }, "email"],
      ["oversized email", { email: `${"a".repeat(300)}@example.com` }, "email"],
      ["10 KB email", { email: `${"a".repeat(10_240)}@example.com` }, "email"],
      ["empty first name", { firstName: "   " }, "first_name"],
      ["oversized name", { firstName: "x".repeat(101) }, "first_name"],
      ["NUL in name", { firstName: "Bob\u0000" }, "first_name"],
      ["newline in name", { lastName: "Smith\nDROP" }, "last_name"],
      ["bidi override in name", { lastName: "abc\u202Egpj.exe" }, "last_name"],
      ["empty password", { password: "" }, "password"],
      ["short password", { password: "short" }, "password"],
      ["common password", { password: "Password1234" }, "password"],
      ["10 KB password", { password: "p".repeat(10_240) }, "password"],
    ];
    for (const [name, override, field] of cases) {
      const error = await rpcError(t.client.signUp({ ...base, ...override }));
      expect(error.code, name).toBe(Code.InvalidArgument);
      expect(
        fieldViolations(error).map((v) => v.field),
        name,
      ).toContain(field);
    }
    const many = await rpcError(
      t.client.signUp({ email: "x", password: "", firstName: "", lastName: "" }),
    );
    expect(
      fieldViolations(many)
        .map((v) => v.field)
        .sort(),
    ).toEqual(["email", "first_name", "last_name", "password"]);
    expect(await countUsers()).toBe(before);

    for (const request of [
      { email: "someone@example.com", password: "" },
      { email: "someone@example.com", password: "p".repeat(10_240) },
      { email: "", password: GOOD_PASSWORD },
    ]) {
      expect((await rpcError(t.client.signIn(request))).code).toBe(Code.InvalidArgument);
    }
    expect((await rpcError(t.client.refreshToken({ refreshToken: "" }))).code).toBe(
      Code.InvalidArgument,
    );
    for (const token of ["garbage", "A".repeat(10_000), "A".repeat(42) + "\u0000"]) {
      expect((await rpcError(t.client.refreshToken({ refreshToken: token }))).code).toBe(
        Code.Unauthenticated,
      );
    }
    const asAdmin = bearer(admin.accessToken);
    expect((await rpcError(t.client.getUser({ id: "42" }, asAdmin))).code).toBe(
      Code.InvalidArgument,
    );
    const target = await createCustomer(t, { firstName: "Unchanged" });
    const [before2] = await t.sql<{ n: number }[]>`select count(*)::int as n from outbox`;
    const badUpdates: [string[], MessageInitShape<typeof UserSchema>, string][] = [
      [["first_name"], { id: target.id, firstName: "Tab\tbed" }, "user.first_name"],
      [["last_name"], { id: target.id, lastName: "y".repeat(10_240) }, "user.last_name"],
      [["email"], { id: target.id, email: "nope" }, "user.email"],
      [["roles"], { id: target.id, roles: ["root"] }, "user.roles"],
      [["status"], { id: target.id, status: UserStatus.ERASED }, "user.status"],
      [["password_hash"], { id: target.id }, "update_mask"],
    ];
    for (const [paths, user, field] of badUpdates) {
      const error = await rpcError(t.client.updateUser({ user, updateMask: { paths } }, asAdmin));
      expect(error.code, field).toBe(Code.InvalidArgument);
      expect(fieldViolations(error).map((v) => v.field)).toContain(field);
    }
    const [after2] = await t.sql<{ n: number }[]>`select count(*)::int as n from outbox`;
    expect(after2!.n).toBe(before2!.n);
    expect((await t.client.getUser({ id: target.id }, asAdmin)).user!.firstName).toBe("Unchanged");
    expect(
      (await rpcError(t.client.eraseUser({ id: admin.id, reason: "x".repeat(501) }, asAdmin))).code,
    ).toBe(Code.InvalidArgument);

    // The hasher is never reached with an over-long or refused password.
    const hashed: number[] = [];
    const real = await createIdentityCore({
      config: loadIdentityConfig({ ...process.env, ...t.env }),
      sql: t.sql,
      redis: undefined,
      logger: { info() {}, warn() {}, error() {}, debug() {} },
    });
    const spy: IdentityDeps = {
      ...real,
      throttle: {
        check: async () => {},
        recordFailure: async () => {},
        recordSuccess: async () => {},
      },
      hasher: {
        ...real.hasher,
        hash: async (p) => {
          hashed.push(p.length);
          return real.hasher.hash(p);
        },
        verify: async (h, p) => {
          hashed.push(p.length);
          return real.hasher.verify(h, p);
        },
        verifyDummy: async (p) => {
          hashed.push(p.length);
        },
      },
    };
    await expect(
      createAccount(spy, { ...base, password: "p".repeat(10_240) }, ["customer"]),
    ).rejects.toMatchObject({ name: "InvalidArgumentError" });
    await expect(
      signIn(spy, {
        email: "someone@example.com",
        password: "p".repeat(10_240),
        clientAddress: "direct",
      }),
    ).rejects.toMatchObject({ name: "InvalidArgumentError" });
    await expect(
      signIn(spy, {
        email: "someone@example.com",
        password: "p".repeat(129),
        clientAddress: "direct",
      }),
    ).rejects.toMatchObject({ name: "InvalidArgumentError" });
    expect(hashed).toEqual([]);
    await expect(
      signIn(spy, {
        email: "someone@example.com",
        password: "p".repeat(128),
        clientAddress: "direct",
      }),
    ).rejects.toMatchObject({ name: "UnauthenticatedError" });
    expect(hashed).toEqual([128]);
  });

  it("re-wraps data keys under a new master key, after which the old master key is not needed", async () => {
    const customer = await createCustomer(t, { firstName: "Rotated" });
    const devKeys = JSON.parse(readFileSync(join(t.dataDir, "pii-keys.json"), "utf8")) as {
      masterKey: string;
      blindIndexKey: string;
    };
    const old = parseMasterKey(devKeys.masterKey);
    const next = parseMasterKey(randomBytes(32).toString("base64"));
    const blindIndexKey = Buffer.from(devKeys.blindIndexKey, "base64");
    const rotating = createPiiCipher({ current: next, previous: [old], blindIndexKey });
    const result = await rewrapDataKeys(t.sql, rotating, 2);
    expect(result.rewrapped).toBeGreaterThanOrEqual(1);
    expect(result.remaining).toBe(0);
    expect((await rewrapDataKeys(t.sql, rotating)).rewrapped).toBe(0);
    const onlyNew = createUserStore(createPiiCipher({ current: next, blindIndexKey }));
    const row = await onlyNew.findById(t.sql, customer.id);
    expect(onlyNew.decrypt(row!)).toMatchObject({ firstName: "Rotated", email: customer.email });
    // Put the keys back under the service's master key for the tests that follow.
    await rewrapDataKeys(t.sql, createPiiCipher({ current: old, previous: [next], blindIndexKey }));
    expect((await t.client.getMe({}, bearer(customer.accessToken))).user!.firstName).toBe(
      "Rotated",
    );
  });

  it("creates the first admin with the documented command, reading the password from stdin", async () => {
    const email = uniqueEmail("ops");
    const run = promisify(execFile);
    const env = {
      ...process.env,
      ...t.env,
      DATABASE_URL: "postgres://postgres@127.0.0.1:5432/test",
      DB_SCHEMA: t.schema,
    };
    const child = run(
      process.execPath,
      ["--import", "tsx", "services/identity/commands/create-admin.ts", "--email", email],
      {
        env,
      },
    );
    child.child.stdin!.end(`${GOOD_PASSWORD}\n`);
    const { stdout } = await child;
    const created = JSON.parse(stdout) as { id: string; roles: string[] };
    expect(created.roles).toEqual(["admin"]);
    const { tokens, userId } = await t.client.signIn({ email, password: GOOD_PASSWORD });
    expect(userId).toBe(created.id);
    const list = await t.client.listUsers({ role: "admin" }, bearer(tokens!.accessToken));
    expect(list.users.map((u) => u.id)).toContain(created.id);

    // A weak password or a taken email fails with exit code 1 and creates nothing.
    const weak = run(
      process.execPath,
      [
        "--import",
        "tsx",
        "services/identity/commands/create-admin.ts",
        "--email",
        uniqueEmail("ops"),
      ],
      {
        env: { ...env, IDENTITY_ADMIN_PASSWORD: "short" },
      },
    );
    await expect(weak).rejects.toMatchObject({ code: 1 });
  });
});
