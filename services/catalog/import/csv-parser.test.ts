import { describe, expect, it } from "vitest";
import { CsvSyntaxError, csvField, parseCsv } from "./csv-parser.js";

async function parse(...chunks: string[]) {
  const out: { fields: string[]; line: number }[] = [];
  async function* source() {
    yield* chunks;
  }
  for await (const record of parseCsv(source())) out.push(record);
  return out;
}

describe("parseCsv", () => {
  it("parses quoted fields with commas, quotes and line breaks across chunk borders", async () => {
    const records = await parse(
      '\ufeffsku,name\r\nA-1,"Mug, ""big""',
      '"\r\nA-2,"two\nlines"\n\nA-3,',
    );
    expect(records).toEqual([
      { fields: ["sku", "name"], line: 1 },
      { fields: ["A-1", 'Mug, "big"'], line: 2 },
      { fields: ["A-2", "two\nlines"], line: 3 },
      { fields: ["A-3", ""], line: 6 },
    ]);
  });

  it("handles a last record without a newline and empty quoted fields", async () => {
    expect(await parse('a,"",c')).toEqual([{ fields: ["a", "", "c"], line: 1 }]);
  });

  it("rejects an unclosed quote and a stray quote", async () => {
    await expect(parse('a,"open\n')).rejects.toBeInstanceOf(CsvSyntaxError);
    await expect(parse('ab"c,d\n')).rejects.toBeInstanceOf(CsvSyntaxError);
  });

  it("round-trips csvField output", async () => {
    const values = ["plain", "with,comma", 'with "quote"', "multi\nline"];
    const [record] = await parse(`${values.map(csvField).join(",")}\n`);
    expect(record?.fields).toEqual(values);
  });
});
