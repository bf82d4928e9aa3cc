import { randomBytes } from "node:crypto";
import { type JetStreamManager, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { type NatsConnection, nanos } from "@nats-io/nats-core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { connectNats } from "./nats.js";
import {
  DEFAULT_DUPLICATE_WINDOW_MS,
  deadLetterStream,
  domainStream,
  provisionStreams,
  StreamProvisioningError,
} from "./streams.js";
import { TEST_NATS_URL } from "./test-support/harness.js";

let nc: NatsConnection;
let jsm: JetStreamManager;
const created: string[] = [];

beforeEach(async () => {
  nc = await connectNats({ servers: TEST_NATS_URL });
  jsm = await jetstreamManager(nc);
});

afterEach(async () => {
  for (const name of created.splice(0)) await jsm.streams.delete(name).catch(() => {});
  await nc.close();
});

describe("stream provisioning", () => {
  it("creates domain and DLQ streams once, then converges limits without recreating", async () => {
    const id = randomBytes(4).toString("hex");
    const orders = domainStream(`t${id}`, { maxAgeMs: 3_600_000 }, `T_${id}`);
    const dlq = deadLetterStream({ name: `T_${id}_DLQ`, subjectPrefix: `t${id}_dlq` });
    created.push(orders.name, dlq.name);

    const [first] = await provisionStreams(jsm, [orders, dlq]);
    expect(first!.config).toMatchObject({
      subjects: [`t${id}.>`],
      storage: StorageType.File,
      max_age: nanos(3_600_000),
      duplicate_window: nanos(DEFAULT_DUPLICATE_WINDOW_MS),
    });
    const created1 = first!.created;
    // Same spec from a second replica: no error, same stream.
    const [again, dlqInfo] = await provisionStreams(jsm, [orders, dlq]);
    expect(again!.created).toBe(created1);
    expect(dlqInfo!.config.subjects).toEqual([`t${id}_dlq.>`]);

    const [updated] = await provisionStreams(jsm, [{ ...orders, maxAgeMs: 7_200_000 }]);
    expect(updated!.config.max_age).toBe(nanos(7_200_000));
    expect(updated!.created).toBe(created1);
  });

  it("rejects a dedup window longer than the retention before asking the server", async () => {
    const id = randomBytes(4).toString("hex");
    await expect(
      provisionStreams(jsm, [domainStream(`t${id}`, { maxAgeMs: 60_000 }, `T_${id}`)]),
    ).rejects.toThrow(/duplicate window is longer than max age/);
    await expect(jsm.streams.info(`T_${id}`)).rejects.toThrow();
  });

  it("refuses to silently keep a stream with the wrong storage type", async () => {
    const id = randomBytes(4).toString("hex");
    const name = `T_${id}`;
    created.push(name);
    await jsm.streams.add({ name, subjects: [`t${id}.>`], storage: StorageType.Memory });
    await expect(provisionStreams(jsm, [domainStream(`t${id}`, {}, name)])).rejects.toBeInstanceOf(
      StreamProvisioningError,
    );
  });
});
