import { randomBytes } from "node:crypto";
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { type NatsConnection, headers as natsHeaders } from "@nats-io/nats-core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EventHeader } from "./message-format.js";
import { connectNats } from "./nats.js";
import { createAckPublisher, PublishAckError } from "./publish-acks.js";
import { domainStream, provisionStreams } from "./streams.js";
import { TEST_NATS_URL } from "./test-support/harness.js";

let nc: NatsConnection;
let jsm: JetStreamManager;
let id: string;
let streamName: string;

beforeEach(async () => {
  nc = await connectNats({ servers: TEST_NATS_URL });
  jsm = await jetstreamManager(nc);
  id = randomBytes(4).toString("hex");
  streamName = `T_ACK_${id}`;
  await provisionStreams(jsm, [domainStream(`tack${id}`, { maxAgeMs: 3_600_000 }, streamName)]);
});

afterEach(async () => {
  await jsm.streams.delete(streamName).catch(() => {});
  await nc.close();
});

const withMsgId = (msgId: string) => {
  const h = natsHeaders();
  h.append(EventHeader.msgId, msgId);
  return h;
};

describe("ack publisher", () => {
  it("resolves each publish with its own stream ack and reports JetStream dedup", async () => {
    const acks = createAckPublisher(nc, 5_000);
    const payload = new TextEncoder().encode("x");
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        acks.publish(`tack${id}.thing.made`, payload, withMsgId(`m-${i}`)),
      ),
    );
    expect(results.map((ack) => ack.seq).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    expect(results.every((ack) => ack.stream === streamName && !ack.duplicate)).toBe(true);

    const again = await acks.publish(`tack${id}.thing.made`, payload, withMsgId("m-7"));
    expect(again).toMatchObject({ stream: streamName, duplicate: true });
    expect((await jsm.streams.info(streamName)).state.messages).toBe(50);
    acks.close();
  });

  it("rejects a publish no stream accepts, and one whose ack never comes", async () => {
    const acks = createAckPublisher(nc, 300);
    await expect(
      acks.publish(`nostream${id}.thing.made`, new Uint8Array(), withMsgId("a")),
    ).rejects.toThrow(PublishAckError);

    // A plain subscriber takes the message but never answers: the ack times out.
    const silent = nc.subscribe(`silent${id}.>`);
    await nc.flush();
    await expect(
      acks.publish(`silent${id}.thing.made`, new Uint8Array(), withMsgId("b")),
    ).rejects.toThrow(/no publish ack within 300 ms/);
    silent.unsubscribe();

    // Still usable afterwards.
    const ok = await acks.publish(`tack${id}.thing.made`, new Uint8Array(), withMsgId("c"));
    expect(ok.seq).toBe(1);
    acks.close();
    await expect(
      acks.publish(`tack${id}.thing.made`, new Uint8Array(), withMsgId("d")),
    ).rejects.toThrow("publisher closed");
  });
});
