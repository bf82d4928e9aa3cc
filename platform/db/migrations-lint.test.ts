import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const servicesDir = fileURLToPath(new URL("../../services/", import.meta.url));

/**
 * Tables resolve through search_path so one set of migrations serves the
 * service schema and every per-test schema. drizzle-kit writes foreign keys
 * as REFERENCES "public"."x"; such a reference escapes the service schema and
 * breaks in any schema but public, so committed migrations must not carry it.
 */
describe("committed migrations", () => {
  const files = readdirSync(servicesDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(servicesDir, d.name, "migrations")))
    .flatMap((d) =>
      readdirSync(join(servicesDir, d.name, "migrations"))
        .filter((f) => f.endsWith(".sql"))
        .map((f) => join(servicesDir, d.name, "migrations", f)),
    );

  it("exist for the services that own data", () => {
    expect(files.length).toBeGreaterThan(0);
  });

  it('never pin a schema (no "public". or other qualified names)', () => {
    const offenders = files.filter((f) => /"public"\./.test(readFileSync(f, "utf8")));
    expect(offenders, `remove "public". from: ${offenders.join(", ")}`).toEqual([]);
  });
});
