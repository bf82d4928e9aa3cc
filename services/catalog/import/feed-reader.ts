import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createInterface } from "node:readline";
import { parseCsv } from "./csv-parser.js";

/** One raw feed row: field name → value as found in the file. */
export interface FeedRow {
  line: number;
  fields: Record<string, unknown>;
  /** The row could not be read at all (bad JSON, wrong column count). */
  error?: string;
}

export type FeedFormat = "csv" | "ndjson";

export function formatOf(path: string, explicit?: string): FeedFormat {
  if (explicit === "csv" || explicit === "ndjson") return explicit;
  if (/\.csv$/i.test(path)) return "csv";
  if (/\.(ndjson|jsonl)$/i.test(path)) return "ndjson";
  throw new Error(`cannot tell the format of ${path}; use --format csv|ndjson`);
}

export interface FeedSource {
  rows: AsyncGenerator<FeedRow>;
  totalBytes: number;
  /** Bytes read so far (for a progress bar without knowing the row count). */
  bytesRead(): number;
}

const MAX_LINE_CHARS = 2_000_000;

/** Streams a CSV (header row first) or NDJSON file row by row. */
export async function openFeed(path: string, format: FeedFormat): Promise<FeedSource> {
  const totalBytes = (await stat(path)).size;
  const stream = createReadStream(path, { encoding: "utf8", highWaterMark: 1 << 20 });
  let read = 0;
  stream.on("data", (chunk) => {
    read += Buffer.byteLength(chunk as string);
  });
  async function* csvRows(): AsyncGenerator<FeedRow> {
    let header: string[] | undefined;
    for await (const record of parseCsv(stream as AsyncIterable<string>)) {
      if (!header) {
        header = record.fields.map((h) => h.trim().toLowerCase());
        continue;
      }
      if (record.fields.length !== header.length) {
        yield {
          line: record.line,
          fields: Object.fromEntries(
            record.fields.map((v, i) => [header![i] ?? `column_${i + 1}`, v]),
          ),
          error: `expected ${header.length} columns, found ${record.fields.length}`,
        };
        continue;
      }
      yield {
        line: record.line,
        fields: Object.fromEntries(header.map((h, i) => [h, record.fields[i]])),
      };
    }
  }
  async function* ndjsonRows(): AsyncGenerator<FeedRow> {
    let line = 0;
    for await (const text of createInterface({
      input: stream,
      crlfDelay: Number.POSITIVE_INFINITY,
    })) {
      line++;
      if (text.trim() === "") continue;
      if (text.length > MAX_LINE_CHARS) {
        yield { line, fields: {}, error: "line too long" };
        continue;
      }
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        yield { line, fields: { raw: text.slice(0, 500) }, error: "not valid JSON" };
        continue;
      }
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        yield { line, fields: { raw: text.slice(0, 500) }, error: "not a JSON object" };
        continue;
      }
      yield { line, fields: value as Record<string, unknown> };
    }
  }
  return {
    rows: format === "csv" ? csvRows() : ndjsonRows(),
    totalBytes,
    bytesRead: () => read,
  };
}
