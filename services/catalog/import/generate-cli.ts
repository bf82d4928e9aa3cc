import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { parseArgs } from "node:util";
import { CSV_COLUMNS, formatRow, generateRow } from "./feed-generator.js";

const USAGE = `usage: npm run catalog:generate -- --count 100000 --out products.ndjson [--seed 42] [--format csv|ndjson]

Writes a deterministic, realistic demo feed (same seed and count → same file)
for npm run catalog:import. Categories are the demo tree (import with --demo-categories).`;

export async function generateFeedFile(options: {
  count: number;
  out: string;
  seed: number;
  format: "csv" | "ndjson";
}): Promise<void> {
  const stream = createWriteStream(options.out, { encoding: "utf8" });
  if (options.format === "csv") stream.write(`${CSV_COLUMNS.join(",")}\n`);
  for (let i = 0; i < options.count; i++) {
    if (!stream.write(`${formatRow(generateRow(i, options.seed), options.format)}\n`))
      await once(stream, "drain");
  }
  stream.end();
  await once(stream, "finish");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      count: { type: "string", default: "1000" },
      out: { type: "string" },
      seed: { type: "string", default: "42" },
      format: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  const count = Number(values.count);
  const seed = Number(values.seed);
  if (
    values.help ||
    !values.out ||
    !Number.isInteger(count) ||
    count < 0 ||
    !Number.isInteger(seed)
  ) {
    process.stdout.write(`${USAGE}\n`);
    process.exitCode = values.help ? 0 : 2;
  } else {
    const format = values.format === "csv" || values.out.endsWith(".csv") ? "csv" : "ndjson";
    const started = performance.now();
    await generateFeedFile({ count, out: values.out, seed, format });
    process.stderr.write(
      `wrote ${count} rows to ${values.out} in ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
    );
  }
}
