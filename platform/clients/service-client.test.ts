import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ProbeService } from "../../gen/platform/testing/v1/probe_pb.js";
import { createServiceClient, createUpstream } from "./service-client.js";

/** A probe upstream whose Echo/Relay fail `failures` times with `code`, counting calls. */
function flakyUpstream(code: Code, failures: number) {
  const calls = { echo: 0, relay: 0 };
  const transport = createRouterTransport(({ service }) => {
    service(ProbeService, {
      echo(req) {
        calls.echo++;
        if (calls.echo <= failures) throw new ConnectError("flaky", code);
        return { text: req.text };
      },
      relay() {
        calls.relay++;
        if (calls.relay <= failures) throw new ConnectError("flaky", code);
        return {};
      },
    });
  });
  return { transport, calls };
}

describe("typed service clients", () => {
  it("retries a NO_SIDE_EFFECTS method on UNAVAILABLE", async () => {
    const { transport, calls } = flakyUpstream(Code.Unavailable, 1);
    const client = createServiceClient(
      ProbeService,
      createUpstream({ name: "probe", baseUrl: "http://unused", transport, retryAttempts: 2 }),
    );
    expect((await client.echo({ text: "again" })).text).toBe("again");
    expect(calls.echo).toBe(2);
  });

  it("never retries a method with side effects", async () => {
    const { transport, calls } = flakyUpstream(Code.Unavailable, 1);
    const client = createServiceClient(
      ProbeService,
      createUpstream({ name: "probe", baseUrl: "http://unused", transport, retryAttempts: 2 }),
    );
    await expect(client.relay({})).rejects.toMatchObject({ code: Code.Unavailable });
    expect(calls.relay).toBe(1);
  });

  it("does not retry business errors", async () => {
    const { transport, calls } = flakyUpstream(Code.NotFound, 1);
    const client = createServiceClient(
      ProbeService,
      createUpstream({ name: "probe", baseUrl: "http://unused", transport }),
    );
    await expect(client.echo({})).rejects.toMatchObject({ code: Code.NotFound });
    expect(calls.echo).toBe(1);
  });

  it("opens the circuit after consecutive infrastructure failures and fails fast", async () => {
    const { transport, calls } = flakyUpstream(Code.Unavailable, 1000);
    const client = createServiceClient(
      ProbeService,
      createUpstream({
        name: "probe",
        baseUrl: "http://unused",
        transport,
        retryAttempts: 0,
        breakerThreshold: 3,
        breakerHalfOpenAfterMs: 60_000,
      }),
    );
    for (let i = 0; i < 3; i++) await expect(client.relay({})).rejects.toBeInstanceOf(ConnectError);
    expect(calls.relay).toBe(3);
    const fast = await client.relay({}).then(
      () => {
        throw new Error("expected the open circuit to refuse");
      },
      (e: unknown) => ConnectError.from(e),
    );
    expect(fast.code).toBe(Code.Unavailable);
    expect(fast.rawMessage).toContain("circuit open");
    expect(calls.relay).toBe(3);
  });

  it("business errors never open the circuit", async () => {
    const { transport, calls } = flakyUpstream(Code.FailedPrecondition, 1000);
    const client = createServiceClient(
      ProbeService,
      createUpstream({ name: "probe", baseUrl: "http://unused", transport, breakerThreshold: 2 }),
    );
    for (let i = 0; i < 5; i++) {
      await expect(client.relay({})).rejects.toMatchObject({ code: Code.FailedPrecondition });
    }
    expect(calls.relay).toBe(5);
  });

  it("gives every call a deadline, capped by the upstream maximum", async () => {
    let seen: number | undefined;
    const transport = createRouterTransport(({ service }) => {
      service(ProbeService, {
        echo(_req, ctx) {
          seen = ctx.timeoutMs();
          return {};
        },
      });
    });
    const client = createServiceClient(
      ProbeService,
      createUpstream({
        name: "probe",
        baseUrl: "http://unused",
        transport,
        defaultTimeoutMs: 700,
        maxTimeoutMs: 1000,
      }),
    );
    await client.echo({});
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThanOrEqual(700);
    await client.echo({}, { timeoutMs: 3_600_000 });
    expect(seen).toBeLessThanOrEqual(1000);
  });
});
