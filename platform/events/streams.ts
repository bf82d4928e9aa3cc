import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { EventError } from "./errors.js";

export interface StreamLimits {
  /** Messages older than this are discarded (default 7 days). */
  maxAgeMs?: number;
  /**
   * Total stream size cap (default 2 GiB; oldest messages are discarded).
   * JetStream reserves it up front against the server's storage limit.
   */
  maxBytes?: number;
  /** Message count cap (default unlimited). */
  maxMsgs?: number;
  /** Largest accepted message, headers included (default 1 MiB). */
  maxMsgSize?: number;
  /**
   * JetStream remembers Nats-Msg-Id for this long. Must exceed the longest
   * time a relay may retry one row after a publish whose ack it missed
   * (default 15 min; the relay's retry backoff caps at 30 s).
   */
  duplicateWindowMs?: number;
  /** 1 locally, 3 in the cluster manifests. */
  replicas?: number;
}

export interface StreamSpec extends StreamLimits {
  name: string;
  subjects: string[];
  description?: string;
}

export const DEFAULT_DUPLICATE_WINDOW_MS = 15 * 60_000;

/** The stream of one domain: `ORDERS` capturing `orders.>`. */
export function domainStream(domain: string, limits: StreamLimits = {}, name?: string): StreamSpec {
  return {
    name: name ?? domain.toUpperCase().replace(/[^A-Z0-9_-]/g, "_"),
    subjects: [`${domain}.>`],
    description: `domain events of ${domain}`,
    ...limits,
  };
}

export interface DeadLetterStreamSpec extends StreamSpec {
  /** Subject prefix of dead letters: `<prefix>.<stream>.<consumer>`. */
  subjectPrefix: string;
}

export function deadLetterStream(
  options: StreamLimits & { name?: string; subjectPrefix?: string } = {},
): DeadLetterStreamSpec {
  const { name = "DLQ", subjectPrefix = "dlq", ...limits } = options;
  return {
    name,
    subjectPrefix,
    subjects: [`${subjectPrefix}.>`],
    description: "dead letters: messages a consumer gave up on, with reason",
    maxAgeMs: 30 * 24 * 3_600_000,
    maxBytes: 1024 ** 3,
    ...limits,
  };
}

export class StreamProvisioningError extends EventError {
  override name = "StreamProvisioningError";
}

function toConfig(spec: StreamSpec): Partial<StreamConfig> & { name: string } {
  return {
    name: spec.name,
    subjects: spec.subjects,
    description: spec.description ?? "",
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    num_replicas: spec.replicas ?? 1,
    max_age: nanos(spec.maxAgeMs ?? 7 * 24 * 3_600_000),
    max_bytes: spec.maxBytes ?? 2 * 1024 ** 3,
    max_msgs: spec.maxMsgs ?? -1,
    max_msg_size: spec.maxMsgSize ?? 1024 * 1024,
    duplicate_window: nanos(spec.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS),
  };
}

function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
}

const UPDATABLE = [
  "subjects",
  "description",
  "num_replicas",
  "max_age",
  "max_bytes",
  "max_msgs",
  "max_msg_size",
  "duplicate_window",
] as const;

function differs(current: StreamConfig, wanted: Partial<StreamConfig>): boolean {
  return UPDATABLE.some(
    (key) => JSON.stringify(current[key] ?? "") !== JSON.stringify(wanted[key] ?? ""),
  );
}

/**
 * Creates missing streams and brings existing ones to the stated limits. Safe
 * to run from every replica at start; storage type cannot change in place and
 * is reported instead of silently kept.
 */
export async function provisionStreams(
  jsm: JetStreamManager,
  specs: readonly StreamSpec[],
): Promise<StreamInfo[]> {
  const infos: StreamInfo[] = [];
  for (const spec of specs) {
    const wanted = toConfig(spec);
    if ((wanted.max_age ?? 0) > 0 && (wanted.duplicate_window ?? 0) > (wanted.max_age ?? 0)) {
      throw new StreamProvisioningError(
        `stream ${spec.name}: duplicate window is longer than max age (JetStream refuses it)`,
      );
    }
    let current: StreamInfo | undefined;
    try {
      current = await jsm.streams.info(spec.name);
    } catch (err) {
      if (!isStreamNotFound(err)) throw err;
    }
    if (!current) {
      try {
        infos.push(await jsm.streams.add(wanted));
        continue;
      } catch (err) {
        // Another replica created it between our info and add.
        current = await jsm.streams.info(spec.name).catch(() => {
          throw new StreamProvisioningError(`cannot create stream ${spec.name}`, { cause: err });
        });
      }
    }
    if (current.config.storage !== wanted.storage) {
      throw new StreamProvisioningError(
        `stream ${spec.name} uses ${current.config.storage} storage, expected ${wanted.storage}`,
      );
    }
    if (differs(current.config, wanted)) {
      const { name: _name, storage: _storage, retention: _retention, ...update } = wanted;
      infos.push(await jsm.streams.update(spec.name, { ...current.config, ...update }));
    } else {
      infos.push(current);
    }
  }
  return infos;
}
