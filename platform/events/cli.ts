import { readdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import {
  createRegistry,
  type DescFile,
  fromBinary,
  type Registry,
  toJsonString,
} from "@bufbuild/protobuf";
import {
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
} from "@bufbuild/protobuf/wkt";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import {
  type DeadLetter,
  getDeadLetter,
  listDeadLetters,
  replayDeadLetter,
  replayStreamRange,
} from "./dead-letters.js";
import { connectNats } from "./nats.js";
import { deadLetterStream, domainStream, provisionStreams } from "./streams.js";

const USAGE = `Event backbone operations (NATS_URL, default nats://127.0.0.1:4222)

  streams [--stream S] [--json]             streams with consumers and their lag
  provision <domain...> [--dlq NAME]        create/update domain streams and the DLQ
  dlq list [--dlq NAME] [--consumer C] [--limit N] [--json]
  dlq show <seq> [--dlq NAME]               headers, error and decoded payload
  dlq replay <seq> [--dlq NAME] [--all-consumers] [--keep]
                                            republish to the original subject (same
                                            Event-Id, fresh Nats-Msg-Id); by default
                                            only the consumer that gave up applies it
  replay --stream S --from N --to M [--consumer C]
                                            replay a stream range (inbox dedups)
`;

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

const consoleIo: CliIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

function table(rows: Record<string, unknown>[]): string[] {
  if (rows.length === 0) return ["(none)"];
  const keys = Object.keys(rows[0]!);
  const widths = keys.map((k) => Math.max(k.length, ...rows.map((r) => String(r[k] ?? "").length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join("  ");
  return [
    line(keys),
    line(widths.map((w) => "-".repeat(w))),
    ...rows.map((r) => line(keys.map((k) => String(r[k] ?? "")))),
  ];
}

/** All generated protobuf files under gen/, so any event type can be shown as JSON. */
async function loadGeneratedRegistry(): Promise<Registry> {
  const files: DescFile[] = [file_google_protobuf_struct, file_google_protobuf_timestamp];
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../gen");
  const entries = await readdir(root, { recursive: true }).catch(() => [] as string[]);
  for (const entry of entries) {
    if (!/_pb\.(ts|js)$/.test(entry)) continue;
    try {
      const mod = (await import(pathToFileURL(path.join(root, entry)).href)) as Record<
        string,
        unknown
      >;
      for (const value of Object.values(mod)) {
        if (value && typeof value === "object" && (value as DescFile).kind === "file") {
          files.push(value as DescFile);
        }
      }
    } catch {
      // A file that fails to load only costs its types' JSON rendering.
    }
  }
  return createRegistry(...files);
}

function summary(letter: DeadLetter): Record<string, unknown> {
  return {
    seq: letter.seq,
    failedAt: letter.time.toISOString(),
    consumer: letter.consumer,
    reason: letter.reason,
    attempts: letter.attempts,
    subject: letter.originalSubject,
    type: letter.eventType ?? "",
    eventId: letter.eventId ?? "",
    error: letter.error.length > 80 ? `${letter.error.slice(0, 79)}…` : letter.error,
  };
}

function positiveInt(value: string | undefined, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer`);
  return n;
}

class UsageError extends Error {
  override name = "UsageError";
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: "boolean", default: false },
      dlq: { type: "string", default: "DLQ" },
      consumer: { type: "string" },
      limit: { type: "string", default: "100" },
      stream: { type: "string" },
      from: { type: "string" },
      to: { type: "string" },
      "all-consumers": { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
}

/** Runs one command; returns the process exit code. */
export async function runCli(
  argv: string[],
  deps: { nc?: NatsConnection; io?: CliIo } = {},
): Promise<number> {
  const io = deps.io ?? consoleIo;
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.err(`${err instanceof Error ? err.message : err}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, sub, arg] = positionals;
  if (values.help || !command) {
    io.out(USAGE);
    return command || values.help ? 0 : 2;
  }
  const nc =
    deps.nc ??
    (await connectNats({
      servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222",
      name: "events-cli",
      waitOnFirstConnect: false,
    }));
  try {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    switch (command) {
      case "streams": {
        const rows: Record<string, unknown>[] = [];
        for await (const stream of jsm.streams.list()) {
          if (values.stream && stream.config.name !== values.stream) continue;
          const consumers = [];
          for await (const c of jsm.consumers.list(stream.config.name)) consumers.push(c);
          if (consumers.length === 0) {
            rows.push({
              stream: stream.config.name,
              subjects: stream.config.subjects.join(","),
              messages: stream.state.messages,
              bytes: stream.state.bytes,
              consumer: "",
              pending: "",
              ackPending: "",
              redelivered: "",
            });
          }
          for (const c of consumers) {
            rows.push({
              stream: stream.config.name,
              subjects: stream.config.subjects.join(","),
              messages: stream.state.messages,
              bytes: stream.state.bytes,
              consumer: c.name,
              pending: c.num_pending,
              ackPending: c.num_ack_pending,
              redelivered: c.num_redelivered,
            });
          }
        }
        if (values.json) io.out(JSON.stringify(rows, null, 2));
        else for (const line of table(rows)) io.out(line);
        return 0;
      }
      case "provision": {
        const domains = positionals.slice(1);
        if (domains.length === 0) throw new UsageError("provision needs at least one domain");
        const infos = await provisionStreams(jsm, [
          ...domains.map((d) => domainStream(d)),
          deadLetterStream({ name: values.dlq }),
        ]);
        for (const info of infos) io.out(`${info.config.name}: ${info.config.subjects.join(",")}`);
        return 0;
      }
      case "dlq": {
        if (sub === "list") {
          const letters = await listDeadLetters(jsm, {
            stream: values.dlq,
            limit: positiveInt(values.limit, "--limit"),
            ...(values.consumer ? { consumer: values.consumer } : {}),
          });
          if (values.json) {
            io.out(
              JSON.stringify(
                letters.map(({ data: _d, ...rest }) => rest),
                null,
                2,
              ),
            );
          } else for (const line of table(letters.map(summary))) io.out(line);
          return 0;
        }
        if (sub === "show") {
          const seq = positiveInt(arg, "seq");
          const letter = await getDeadLetter(jsm, values.dlq, seq);
          if (!letter) {
            io.err(`no dead letter ${values.dlq}#${seq}`);
            return 1;
          }
          const { data, ...rest } = letter;
          io.out(JSON.stringify({ ...rest, error: letter.error }, null, 2));
          const schema = letter.eventType
            ? (await loadGeneratedRegistry()).getMessage(letter.eventType)
            : undefined;
          if (schema) {
            try {
              io.out(`payload (${letter.eventType}):`);
              io.out(toJsonString(schema, fromBinary(schema, data), { prettySpaces: 2 }));
            } catch (err) {
              io.out(`payload does not decode: ${err instanceof Error ? err.message : err}`);
            }
          } else {
            io.out(`payload: ${data.byteLength} bytes (type not in gen/), base64:`);
            io.out(Buffer.from(data).toString("base64"));
          }
          return 0;
        }
        if (sub === "replay") {
          const seq = positiveInt(arg, "seq");
          const result = await replayDeadLetter(jsm, js, {
            stream: values.dlq,
            seq,
            allConsumers: values["all-consumers"],
            keep: values.keep,
          });
          io.out(
            `replayed ${values.dlq}#${seq} → ${result.subject} as ${result.ack.stream}#${result.ack.seq} (event ${result.eventId})`,
          );
          return 0;
        }
        throw new UsageError(`unknown dlq command "${sub ?? ""}"`);
      }
      case "replay": {
        if (!values.stream) throw new UsageError("replay needs --stream");
        const results = await replayStreamRange(jsm, js, {
          stream: values.stream,
          fromSeq: positiveInt(values.from, "--from"),
          toSeq: positiveInt(values.to, "--to"),
          ...(values.consumer ? { consumer: values.consumer } : {}),
        });
        io.out(`replayed ${results.length} message(s) from ${values.stream}`);
        return 0;
      }
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`${err.message}\n\n${USAGE}`);
      return 2;
    }
    io.err(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
    return 1;
  } finally {
    if (!deps.nc) await nc.close();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  process.exitCode = await runCli(process.argv.slice(2));
}
