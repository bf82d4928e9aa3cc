/**
 * A streaming RFC 4180 CSV parser: quoted fields with embedded commas,
 * quotes ("") and line breaks, CRLF or LF, a leading UTF-8 BOM. Records are
 * yielded with the line they started on (for reject reports). Small on
 * purpose: the feed format is ours, and csv-parse is not a dependency.
 */
export interface CsvRecord {
  fields: string[];
  /** 1-based line number where the record starts. */
  line: number;
}

export class CsvSyntaxError extends Error {
  override name = "CsvSyntaxError";
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${message}`);
  }
}

/** Longest field accepted; a missing closing quote must not swallow the whole file. */
const MAX_FIELD_CHARS = 1_000_000;

export async function* parseCsv(chunks: AsyncIterable<string>): AsyncGenerator<CsvRecord> {
  let field = "";
  let fields: string[] = [];
  let inQuotes = false;
  let quoteSeen = false; // a quote inside a quoted field: either "" or the end
  let line = 1;
  let recordLine = 1;
  let first = true;
  let fieldStarted = false;

  const endField = () => {
    fields.push(field);
    field = "";
    fieldStarted = false;
  };

  for await (let chunk of chunks) {
    if (first) {
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
      first = false;
    }
    const records: CsvRecord[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk[i]!;
      if (inQuotes) {
        if (quoteSeen) {
          quoteSeen = false;
          if (ch === '"') {
            field += '"';
            continue;
          }
          inQuotes = false;
          // fall through: the character after the closing quote
        } else if (ch === '"') {
          quoteSeen = true;
          continue;
        } else {
          if (ch === "\n") line++;
          field += ch;
          if (field.length > MAX_FIELD_CHARS)
            throw new CsvSyntaxError("field too long (unclosed quote?)", recordLine);
          continue;
        }
      }
      if (ch === '"') {
        if (fieldStarted && field.length > 0)
          throw new CsvSyntaxError("quote inside an unquoted field", line);
        inQuotes = true;
        fieldStarted = true;
        continue;
      }
      if (ch === ",") {
        endField();
        fieldStarted = true;
        continue;
      }
      if (ch === "\r") continue;
      if (ch === "\n") {
        if (fieldStarted || fields.length > 0 || field.length > 0) {
          endField();
          records.push({ fields, line: recordLine });
        }
        fields = [];
        line++;
        recordLine = line;
        continue;
      }
      field += ch;
      fieldStarted = true;
      if (field.length > MAX_FIELD_CHARS) throw new CsvSyntaxError("field too long", recordLine);
    }
    yield* records;
  }
  if (inQuotes && !quoteSeen)
    throw new CsvSyntaxError("unclosed quoted field at end of file", recordLine);
  if (fieldStarted || fields.length > 0 || field.length > 0) {
    endField();
    yield { fields, line: recordLine };
  }
}

/** Quotes a value for CSV output when it needs it. */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}
