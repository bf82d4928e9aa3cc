import { existsSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import path from "node:path";
import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { SERVICE_PORTS } from "../platform/config/service-config.js";
import { composeSchema } from "./test-support/compose-schema.js";

/**
 * No Docker engine runs here, so the container files are checked as text:
 * the compose file against (the used part of) the Compose Specification
 * schema plus the mesh's own rules, and the Dockerfile against the
 * repository it builds from.
 */

const repo = path.resolve(import.meta.dirname, "..");
const read = (file: string) => readFileSync(path.join(repo, file), "utf8");
const packageJson = JSON.parse(read("package.json")) as {
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const lockfile = JSON.parse(read("package-lock.json")) as {
  packages: Record<string, { dev?: boolean }>;
};
const SERVICES = Object.keys(SERVICE_PORTS) as Array<keyof typeof SERVICE_PORTS>;

// ---------------------------------------------------------------- compose

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  ports?: string[];
  volumes?: string[];
  read_only?: boolean;
  restart?: string;
  profiles?: string[];
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const composeText = read("deploy/compose.yaml");
/** The one password-shaped value the compose file may hold: an overridable local-dev default. */
const LOCAL_DEV_PASSWORD = ["$", "{POSTGRES_PASSWORD:-commerce}"].join("");
// Compose resolves YAML merge keys (`<<: *anchor`); so must the test.
const compose = parse(composeText, { merge: true }) as ComposeFile;
const appServices = SERVICES.map((name) => [name, compose.services[name]!] as const);
const infra = ["postgres", "nats", "redis"];

/** Variables a service reads whose default points at 127.0.0.1: wrong inside a container. */
function localhostDefaultedEnv(): string[] {
  const source = read("platform/config/service-config.ts");
  const names = [
    ...source.matchAll(/read\w+\(\s*env,\s*"([A-Z_]+)",\s*"[^"]*127\.0\.0\.1[^"]*"/g),
  ].map((m) => m[1]!);
  // Upstream addresses are read in a loop as `${NAME}_URL`.
  if (/`\$\{name\.toUpperCase\(\)\}_URL`/.test(source)) {
    names.push(...SERVICES.map((s) => `${s.toUpperCase()}_URL`));
  }
  return names;
}

describe("deploy/compose.yaml", () => {
  it("is valid against the Compose Specification schema (the parts it uses)", () => {
    const ajv = new Ajv({ allErrors: true, strict: false });
    const validate = ajv.compile(composeSchema);
    const valid = validate(compose);
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
  });

  it("the schema check catches a misspelt key and a bad depends_on condition", () => {
    const validate = new Ajv({ strict: false }).compile(composeSchema);
    const typo = structuredClone(compose) as unknown as Record<string, Record<string, object>>;
    typo["services"]!["catalog"] = { ...typo["services"]!["catalog"], healtcheck: {} };
    expect(validate(typo)).toBe(false);
    const badCondition = structuredClone(compose);
    badCondition.services["edge"]!.depends_on = { catalog: { condition: "healthy" } };
    expect(validate(badCondition)).toBe(false);
  });

  it("runs the whole mesh: infrastructure, Jaeger and every service", () => {
    expect(Object.keys(compose.services)).toEqual(
      expect.arrayContaining([...infra, "jaeger", ...SERVICES]),
    );
  });

  it("gives every container a health check", () => {
    for (const [name, service] of Object.entries(compose.services)) {
      expect(service.healthcheck?.test?.[0], name).toMatch(/^CMD(-SHELL)?$/);
    }
  });

  it("pins every third-party image to an explicit version", () => {
    for (const [name, service] of Object.entries(compose.services)) {
      if (service.build) continue;
      const tag = service.image?.split(":")[1];
      expect(tag, name).toBeDefined();
      expect(tag, name).not.toBe("latest");
      expect(tag, name).toMatch(/^v?\d+\.\d+(\.\d+)?/);
    }
    expect(compose.services["postgres"]?.image).toMatch(/^postgres:1[78]\./);
    expect(compose.services["nats"]?.image).toMatch(/^nats:2\.(1[1-9]|[2-9]\d)\./);
  });

  it("publishes each host port once", () => {
    const hostPorts = Object.values(compose.services).flatMap((s) =>
      (s.ports ?? []).map((p) => p.split(":").slice(-2, -1)[0] ?? p),
    );
    expect(hostPorts.length).toBeGreaterThan(0);
    expect(new Set(hostPorts).size).toBe(hostPorts.length);
  });

  it("starts each service from the one image after its infrastructure is healthy", () => {
    for (const [name, service] of appServices) {
      expect(service.image, name).toBe("commerce-mesh:local");
      expect(service.build, name).toEqual({ context: "..", dockerfile: "deploy/Dockerfile" });
      expect(service.command, name).toEqual([`dist/services/${name}/main.js`]);
      expect(existsSync(path.join(repo, `services/${name}/main.ts`)), name).toBe(true);
      for (const dependency of infra) {
        expect(service.depends_on?.[dependency]?.condition, `${name} → ${dependency}`).toBe(
          "service_healthy",
        );
      }
      expect(service.healthcheck?.test, name).toEqual([
        "CMD",
        "node",
        "healthcheck.mjs",
        "/readyz",
      ]);
      expect(service.restart, name).toBe("unless-stopped");
      expect(service.read_only, name).toBe(true);
    }
    // The public door opens only when the services behind it are ready.
    for (const name of SERVICES.filter((s) => s !== "edge")) {
      expect(compose.services["edge"]?.depends_on?.[name]?.condition).toBe("service_healthy");
    }
  });

  it("sets every variable whose default would point a container at itself, consistently", () => {
    const required = localhostDefaultedEnv();
    expect(required).toEqual(
      expect.arrayContaining(["DATABASE_URL", "NATS_URL", "REDIS_URL", "CATALOG_URL"]),
    );
    for (const [name, service] of appServices) {
      const env = service.environment ?? {};
      for (const variable of [...required, "HOST", "PORT"]) {
        expect(env[variable], `${name}.${variable}`).toBeDefined();
      }
      expect(env["HOST"]).toBe("0.0.0.0");
      expect(env["PORT"], name).toBe(String(SERVICE_PORTS[name]));
      for (const upstream of SERVICES) {
        expect(env[`${upstream.toUpperCase()}_URL`], `${name} → ${upstream}`).toBe(
          `http://${upstream}:${SERVICE_PORTS[upstream]}`,
        );
      }
      expect(new URL(env["DATABASE_URL"]!.replace(/\$\{[^}]+\}/, "x")).hostname).toBe("postgres");
      expect(env["OTEL_EXPORTER_OTLP_ENDPOINT"]).toBe("http://jaeger:4318");
    }
  });

  it("keeps secrets out of the file except the marked local-dev default", () => {
    const settings = [
      ...composeText.matchAll(/^\s*[A-Z_]*(PASSWORD|SECRET|TOKEN|KEY)[A-Z_]*:\s*(.*)$/gm),
    ];
    const urlPasswords = [...composeText.matchAll(/\w+:\/\/[^:/\s]+:([^@\s]+)@/g)];
    expect(settings.length + urlPasswords.length).toBeGreaterThan(0);
    for (const [line, , value] of settings) expect(value, line).toBe(LOCAL_DEV_PASSWORD);
    for (const [url, value] of urlPasswords) expect(value, url).toBe(LOCAL_DEV_PASSWORD);
    expect(composeText).toMatch(/LOCAL-DEV DEFAULTS/);
  });

  it("runs NATS with JetStream fsyncing every write, from a mounted config that exists", () => {
    const nats = compose.services["nats"]!;
    const mount = nats.volumes?.find((v) => v.endsWith(":/etc/nats/nats-server.conf:ro"));
    expect(mount).toBeDefined();
    const config = readFileSync(path.join(repo, "deploy", mount!.split(":")[0]!), "utf8");
    expect(config).toMatch(/jetstream\s*\{[^}]*sync_interval:\s*always/);
    expect(config).toMatch(/store_dir:\s*\/data\//);
    expect(nats.command).toEqual(["nats-server", "--config", "/etc/nats/nats-server.conf"]);
    expect(nats.healthcheck?.test.join(" ")).toContain("js-enabled-only=true");
  });

  it("exposes Jaeger's OTLP (gRPC and HTTP) and UI ports", () => {
    expect(compose.services["jaeger"]?.ports).toEqual(
      expect.arrayContaining(["4317:4317", "4318:4318", "16686:16686"]),
    );
  });

  it("declares every named volume and mounts only files that exist", () => {
    for (const [name, service] of Object.entries(compose.services)) {
      for (const volume of service.volumes ?? []) {
        const source = volume.split(":")[0]!;
        if (source.startsWith(".")) {
          expect(existsSync(path.join(repo, "deploy", source)), `${name}: ${source}`).toBe(true);
        } else {
          expect(Object.keys(compose.volumes ?? {}), `${name}: ${source}`).toContain(source);
        }
      }
    }
  });
});

// ---------------------------------------------------------------- Dockerfile

interface Instruction {
  keyword: string;
  args: string;
}

/** Logical instructions: continuation lines joined, comments and blank lines dropped. */
function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#") || (line === "" && pending === "")) continue;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = "";
    if (full === "") continue;
    const [keyword, ...rest] = full.split(/\s+/);
    instructions.push({ keyword: keyword!.toUpperCase(), args: rest.join(" ") });
  }
  return instructions;
}

interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

function stagesOf(instructions: Instruction[]): Stage[] {
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === "ARG" && stages.length === 0) {
      const [name, value] = instruction.args.split("=");
      args.set(name!, value ?? "");
    } else if (instruction.keyword === "FROM") {
      const parts = instruction.args.split(/\s+/).filter((p) => !p.startsWith("--"));
      const image = parts[0]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => args.get(a ?? b) ?? "");
      const name = parts[1]?.toUpperCase() === "AS" ? parts[2] : undefined;
      stages.push({ image, name, instructions: [] });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return stages;
}

/** COPY/ADD arguments: flags, then sources, then the destination (shell or JSON form). */
function copyParts(args: string): {
  flags: Record<string, string>;
  sources: string[];
  dest: string;
} {
  const words = args.startsWith("[") ? (JSON.parse(args) as string[]) : args.split(/\s+/);
  const flags: Record<string, string> = {};
  const rest: string[] = [];
  for (const word of words) {
    const flag = /^--([a-z-]+)(?:=(.*))?$/.exec(word);
    if (flag && rest.length === 0) flags[flag[1]!] = flag[2] ?? "";
    else rest.push(word);
  }
  return { flags, sources: rest.slice(0, -1), dest: rest.at(-1)! };
}

/** .dockerignore patterns as a matcher (Go filepath.Match plus `**`, as BuildKit uses them). */
function dockerignore(text: string): (file: string) => boolean {
  const patterns = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((pattern) => {
      const source = pattern
        .replace(/^\/+/, "")
        .replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replace(/\*\*\//g, "\uE000")
        .replace(/\*\*/g, ".*")
        .replace(/\*/g, "[^/]*")
        .replace(/\?/g, "[^/]")
        .replace(/\uE000/g, "(.*/)?");
      // A matched directory excludes everything under it.
      return new RegExp(`^${source}(/.*)?$`);
    });
  return (file) => patterns.some((pattern) => pattern.test(file.replace(/^\.\//, "")));
}

const dockerfileText = read("deploy/Dockerfile");
const instructions = parseDockerfile(dockerfileText);
const stages = stagesOf(instructions);
const finalStage = stages.at(-1)!;

describe("deploy/Dockerfile", () => {
  it("builds on Node 24 in every stage", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages)
      expect(stage.image).toMatch(/^node:24(\.\d+){0,2}-(bookworm-slim|alpine[\d.]*)$/);
  });

  it("copies only paths that exist and that .dockerignore lets through", () => {
    const ignored = dockerignore(read(".dockerignore"));
    const stageNames = new Set(stages.map((s) => s.name));
    let checked = 0;
    for (const stage of stages) {
      for (const instruction of stage.instructions) {
        if (instruction.keyword !== "COPY" && instruction.keyword !== "ADD") continue;
        const { flags, sources } = copyParts(instruction.args);
        if (flags["from"] !== undefined) {
          expect(stageNames, `COPY --from=${flags["from"]}`).toContain(flags["from"]);
          continue;
        }
        for (const source of sources) {
          expect(existsSync(path.join(repo, source)), `COPY ${source}`).toBe(true);
          expect(ignored(source), `COPY ${source} is excluded by .dockerignore`).toBe(false);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThanOrEqual(6);
  });

  it("the .dockerignore matcher excludes what it should", () => {
    const ignored = dockerignore(read(".dockerignore"));
    expect(ignored("node_modules")).toBe(true);
    expect(ignored("services/catalog/catalog.test.ts")).toBe(true);
    expect(ignored("deploy/local/test-support/stand-in-service.ts")).toBe(true);
    expect(ignored(".data/postgres/PG_VERSION")).toBe(true);
    expect(ignored("services/catalog/main.ts")).toBe(false);
    expect(ignored("package-lock.json")).toBe(false);
  });

  it("runs only npm scripts that package.json defines", () => {
    const runs = instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    const scripts = runs.flatMap((run) =>
      [...run.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]!),
    );
    expect(scripts).toContain("build");
    for (const script of scripts)
      expect(Object.keys(packageJson.scripts), script).toContain(script);
    expect(packageJson.scripts["build"]).toMatch(/tsconfig\.build\.json/);
  });

  it("ships production dependencies only, as a non-root user, with node as the entrypoint", () => {
    const runs = finalStage.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    expect(runs.some((r) => /npm ci\b.*--omit=dev/.test(r))).toBe(true);
    const users = finalStage.instructions.filter((i) => i.keyword === "USER").map((i) => i.args);
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^(root|0)(:|$)/);
    const entrypoint = finalStage.instructions.find((i) => i.keyword === "ENTRYPOINT");
    expect(JSON.parse(entrypoint!.args)).toEqual(["node"]);
    const healthcheck = finalStage.instructions.find((i) => i.keyword === "HEALTHCHECK");
    expect(healthcheck?.args).toMatch(/CMD \["node", "healthcheck\.mjs", "\/healthz"\]/);
  });

  it("defaults to a service whose compiled path matches tsconfig.build.json's output", () => {
    const build = JSON.parse(read("tsconfig.build.json")) as {
      compilerOptions: { outDir: string; rootDir: string };
      include: string[];
    };
    expect(build.compilerOptions.rootDir).toBe(".");
    const cmd = JSON.parse(
      finalStage.instructions.find((i) => i.keyword === "CMD")!.args,
    ) as string[];
    const [compiled] = cmd;
    expect(compiled).toBe(`${build.compilerOptions.outDir}/services/edge/main.js`);
    const source = compiled!
      .replace(`${build.compilerOptions.outDir}/`, "")
      .replace(/\.js$/, ".ts");
    expect(existsSync(path.join(repo, source))).toBe(true);
    // Everything the build compiles is copied into the build stage.
    const copied = stages[0]!.instructions
      .filter((i) => i.keyword === "COPY")
      .flatMap((i) => copyParts(i.args).sources);
    for (const included of ["gen", "platform", "services"]) {
      expect(build.include).toContain(included);
      expect(copied).toContain(included);
    }
  });

  it("puts each service's migrations next to its compiled main.js", () => {
    const buildRuns = stages[0]!.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    expect(buildRuns.join("\n")).toMatch(
      /services\/\*\/migrations[\s\S]*cp -R "\$dir\/\." "dist\/\$dir\/"/,
    );
    for (const name of SERVICES) {
      const main = read(`services/${name}/main.ts`);
      const folder = /migrations: new URL\("([^"]+)", import\.meta\.url\)/.exec(main)?.[1];
      if (folder) expect(folder.replace(/\/$/, ""), name).toBe("./migrations");
    }
  });

  it("needs no dev-only package at run time (the image omits them)", () => {
    const missing = new Set<string>();
    const seen = new Set<string>();
    const queue = SERVICES.map((name) => path.join(repo, `services/${name}/main.ts`));
    const builtins = new Set(builtinModules);
    while (queue.length > 0) {
      const file = queue.pop()!;
      if (seen.has(file) || !existsSync(file) || !statSync(file).isFile()) continue;
      seen.add(file);
      const source = readFileSync(file, "utf8");
      const specifiers = [
        ...source.matchAll(/^\s*(?:import|export)\s+(?!type\b)[^;]*?from\s+["']([^"']+)["']/gm),
        ...source.matchAll(/^\s*import\s+["']([^"']+)["']/gm),
        ...source.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g),
      ].map((m) => m[1]!);
      for (const specifier of specifiers) {
        if (specifier.startsWith(".")) {
          queue.push(path.resolve(path.dirname(file), specifier.replace(/\.js$/, ".ts")));
          continue;
        }
        if (specifier.startsWith("node:") || builtins.has(specifier)) continue;
        const parts = specifier.split("/");
        const pkg = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
        // `npm ci --omit=dev` drops exactly the lockfile entries flagged dev.
        const locked = lockfile.packages[`node_modules/${pkg}`];
        if (!locked || locked.dev) missing.add(`${pkg} (from ${path.relative(repo, file)})`);
      }
    }
    expect(seen.size).toBeGreaterThan(SERVICES.length);
    expect([...missing]).toEqual([]);
  });
});
