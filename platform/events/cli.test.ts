import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCli } from "./cli.js";
import { createEventConsumer, type EventConsumer, postgresTransactions } from "./consumer.js";
import { silentLogger } from "./logger.js";
import { appendEvents } from "./outbox.js";
import { createOutboxRelay } from "./relay.js";
import {
  countRows,
  createEventsTestEnv,
  type EventsTestEnv,
  recordingHandlers,
  testEvent,
  waitFor,
} from "./test-support/harness.js";

let env: EventsTestEnv;
const cleanups: (() => Promise<unknown>)[] = [];

beforeEach(async () => {
  env = await createEventsTestEnv();
  const relay = createOutboxRelay({
    sql: env.database.sql,
    schema: env.schema,
    nc: env.nc,
    registry: new Registry(),
    logger: silentLogger,
  });
  await relay.start();
  cleanups.push(() => relay.stop());
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  await env.close();
});

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, {
    nc: env.nc,
    io: { out: (l) => out.push(l), err: (l) => err.push(l) },
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

function consumer(failing: boolean): EventConsumer {
  const name = `c_${env.id}`;
  const c = createEventConsumer({
    nc: env.nc,
    stream: env.stream.name,
    name,
    transaction: postgresTransactions(env.database.sql),
    handlers: recordingHandlers(name, () => {
      if (failing) throw new Error("tax table missing");
    }),
    maxAttempts: 2,
    backoffMs: [20],
    deadLetters: { subjectPrefix: env.dlq.subjectPrefix },
    metricsRegistry: new Registry(),
    logger: silentLogger,
  });
  cleanups.push(() => c.stop());
  return c;
}

describe("events cli", () => {
  it("lists lag and dead letters, shows one decoded, and replays it and a stream range once", async () => {
    const broken = consumer(true);
    await broken.start();
    const [event] = await env.database.sql.begin((tx) =>
      appendEvents(tx, [testEvent("order-9", { total: 42 })], { domain: env.domain }),
    );
    await waitFor("dead letter", () => broken.stats.dead_lettered === 1);
    await broken.stop();

    const streams = await cli("streams", "--stream", env.stream.name, "--json");
    expect(streams.code).toBe(0);
    expect(JSON.parse(streams.out)).toEqual([
      expect.objectContaining({
        stream: env.stream.name,
        messages: 1,
        consumer: `c_${env.id}`,
        pending: 0,
        ackPending: 0,
      }),
    ]);

    const list = await cli("dlq", "list", "--dlq", env.dlq.name, "--json");
    expect(list.code).toBe(0);
    const [letter] = JSON.parse(list.out);
    expect(letter).toMatchObject({
      reason: "handler_failed",
      attempts: 2,
      eventId: event!.eventId,
      originalSubject: `${env.domain}.thing.struct`,
    });
    expect(letter.error).toContain("tax table missing");
    const table = await cli("dlq", "list", "--dlq", env.dlq.name);
    expect(table.out).toContain("handler_failed");

    const show = await cli("dlq", "show", String(letter.seq), "--dlq", env.dlq.name);
    expect(show.code).toBe(0);
    expect(show.out).toContain("payload (google.protobuf.Struct):");
    expect(show.out).toMatch(/"total": 42/);

    const fixed = consumer(false);
    await fixed.start();
    const replay = await cli("dlq", "replay", String(letter.seq), "--dlq", env.dlq.name);
    expect(replay.code).toBe(0);
    expect(replay.out).toContain(`→ ${env.domain}.thing.struct`);
    await waitFor("replayed effect", async () => (await countRows(env.database, "effects")) === 1);
    expect((await env.jsm.streams.info(env.dlq.name)).state.messages).toBe(0);

    const range = await cli(
      "replay",
      "--stream",
      env.stream.name,
      "--from",
      "1",
      "--to",
      "2",
      "--consumer",
      `c_${env.id}`,
    );
    expect(range.out).toBe(`replayed 2 message(s) from ${env.stream.name}`);
    await waitFor("range deduplicated by the inbox", () => fixed.stats.duplicate === 2);
    expect(await countRows(env.database, "effects")).toBe(1);
  });

  it("reports usage errors and missing dead letters with non-zero exit codes", async () => {
    expect((await cli("dlq", "show", "abc", "--dlq", env.dlq.name)).code).toBe(2);
    expect((await cli("replay", "--from", "1", "--to", "2")).code).toBe(2);
    expect((await cli("frobnicate")).code).toBe(2);
    const missing = await cli("dlq", "show", "99", "--dlq", env.dlq.name);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain(`no dead letter ${env.dlq.name}#99`);
  });
});
