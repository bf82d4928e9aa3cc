import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../platform/config/env.js";
import { readMeshConfig, SERVICE_NAMES, serviceEnv } from "./mesh-config.js";

describe("mesh configuration", () => {
  it("uses the services' own default ports, schemas and URLs", () => {
    const config = readMeshConfig({}, "/repo");
    expect(config.services.map((s) => [s.name, s.port, s.schema, s.url])).toEqual([
      ["identity", 8081, "identity", "http://127.0.0.1:8081"],
      ["catalog", 8082, "catalog", "http://127.0.0.1:8082"],
      ["orders", 8083, "orders", "http://127.0.0.1:8083"],
      ["payments", 8084, "payments", "http://127.0.0.1:8084"],
      ["edge", 8080, "edge", "http://127.0.0.1:8080"],
    ]);
    expect(config.dataDir).toBe(path.resolve("/repo/.data"));
    expect(config.databaseUrl).toBe("postgres://postgres@127.0.0.1:5432/commerce");
  });

  it("moves every port with MESH_PORT_BASE and prefixes schemas with MESH_SCHEMA_PREFIX", () => {
    const config = readMeshConfig(
      { MESH_PORT_BASE: "30000", MESH_SCHEMA_PREFIX: "t_ab12_", HOST: "0.0.0.0" },
      "/repo",
    );
    const catalog = config.services.find((s) => s.name === "catalog")!;
    expect(catalog).toEqual({
      name: "catalog",
      port: 30002,
      schema: "t_ab12_catalog",
      // A wildcard listen address is dialled as loopback.
      url: "http://127.0.0.1:30002",
    });
    const env = serviceEnv(config, catalog, { LOG_LEVEL: "debug", PORT: "1" });
    expect(env).toMatchObject({
      LOG_LEVEL: "debug",
      PORT: "30002",
      HOST: "0.0.0.0",
      DB_SCHEMA: "t_ab12_catalog",
      EDGE_URL: "http://127.0.0.1:30000",
      IDENTITY_URL: "http://127.0.0.1:30001",
      ORDERS_URL: "http://127.0.0.1:30003",
      PAYMENTS_URL: "http://127.0.0.1:30004",
      NATS_URL: "nats://127.0.0.1:4222",
    });
    expect(SERVICE_NAMES).toHaveLength(5);
  });

  it("names the variable when a value is bad", () => {
    const bad: Array<[Record<string, string>, string]> = [
      [{ MESH_SCHEMA_PREFIX: "Bad-Prefix" }, "MESH_SCHEMA_PREFIX"],
      [{ MESH_PORT_BASE: "65534" }, "MESH_PORT_BASE"],
      [{ DATABASE_URL: "mysql://x" }, "DATABASE_URL"],
      [{ NATS_URL: "not a url" }, "NATS_URL"],
      [{ MESH_SEED: "maybe" }, "MESH_SEED"],
    ];
    for (const [env, variable] of bad) {
      let error: unknown;
      try {
        readMeshConfig(env, "/repo");
      } catch (e) {
        error = e;
      }
      expect(error, variable).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).variable).toBe(variable);
    }
  });
});
