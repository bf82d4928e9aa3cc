import { describe, expect, it } from "vitest";
import { ConfigError } from "./env.js";
import { loadServiceConfig } from "./service-config.js";

describe("service configuration", () => {
  it("has working local defaults", () => {
    const config = loadServiceConfig("catalog", {});
    expect(config.port).toBe(8082);
    expect(config.databaseUrl).toBe("postgres://postgres@127.0.0.1:5432/commerce");
    expect(config.natsUrl).toBe("nats://127.0.0.1:4222");
    expect(config.redisUrl).toBe("redis://127.0.0.1:6379");
    expect(config.dbSchema).toBe("catalog");
    expect(config.otlpEndpoint).toBeUndefined();
    expect(config.upstreams.identity).toBe("http://127.0.0.1:8081");
  });

  it.each([
    ["PORT", "http"],
    ["PORT", "70000"],
    ["DATABASE_URL", "not a url"],
    ["DATABASE_URL", "mysql://root@localhost/db"],
    ["NATS_URL", "nats://127.0.0.1:99999"],
    ["REDIS_URL", "http://127.0.0.1:6379"],
    ["LOG_LEVEL", "loud"],
    ["DB_SCHEMA", "Robert'); DROP TABLE"],
    ["RPC_MAX_MESSAGE_BYTES", "12abc"],
    ["CATALOG_URL", "ftp://catalog"],
  ])("refuses %s=%s with an error naming the variable", (name, value) => {
    let error: unknown;
    try {
      loadServiceConfig("catalog", { [name]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(name);
    expect((error as Error).message).toContain(name);
  });

  it("never prints a database password in its errors", () => {
    expect(() =>
      loadServiceConfig("catalog", { DATABASE_URL: "mysql://admin:s3cret@db:5432/x" }),
    ).toThrow(/admin:\*\*\*@/);
  });
});
