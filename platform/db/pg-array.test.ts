import { afterAll, describe, expect, it } from "vitest";
import { TEST_DATABASE_URL } from "../testing/service-harness.js";
import { plainArray, textArray } from "./pg-array.js";
import { createDatabase } from "./postgres.js";

const db = createDatabase({ url: TEST_DATABASE_URL, schema: "public", maxConnections: 1 });
afterAll(async () => {
  await db.close();
});

describe("array literals", () => {
  it("round-trip through Postgres text[] with quotes, backslashes, commas, braces, NULL, unicode", async () => {
    const values = [
      "plain",
      'say "hi"',
      "back\\slash",
      "a,b",
      "{braces}",
      "",
      "NULL",
      " spaced ",
      "multi\nline",
      "ümlaut 😀",
      null,
    ];
    const [row] = await db.sql.unsafe(
      "select a[1:10] as head, a[11] is null as last_is_null, cardinality(a) as n from (select $1::text[] as a) x",
      [textArray(values)],
    );
    expect(row!.head).toEqual(values.slice(0, 10));
    expect(row!.last_is_null).toBe(true);
    expect(row!.n).toBe(11);
  });

  it("sends numbers, booleans and uuids unquoted", async () => {
    const [row] = await db.sql.unsafe(
      "select $1::int8[]::text[] as n, $2::bool[] as b, $3::uuid[]::text[] as u",
      [
        plainArray([1, 2n, -3]),
        plainArray([true, false]),
        plainArray(["01a218b3-043f-7120-8d63-52b6c9b286f7"]),
      ],
    );
    expect(row!.n).toEqual(["1", "2", "-3"]);
    expect(row!.b).toEqual([true, false]);
    expect(row!.u).toEqual(["01a218b3-043f-7120-8d63-52b6c9b286f7"]);
  });
});
