/**
 * The part of the Compose Specification's JSON schema (compose-spec.json,
 * draft-07) that deploy/compose.yaml uses, transcribed by hand because the
 * schema cannot be downloaded here. Unknown keys are rejected at the top level
 * and in services, health checks and depends_on, as in the real schema, so a
 * typo ("healtcheck", "depends-on") fails instead of being silently ignored.
 */

const duration = { type: "string", pattern: "^(\\d+(\\.\\d+)?(ns|us|ms|s|m|h))+$" };
const stringOrList = {
  oneOf: [{ type: "string" }, { type: "array", items: { type: "string" } }],
};
const listOrDict = {
  oneOf: [
    {
      type: "object",
      patternProperties: {
        ".+": { type: ["string", "number", "boolean", "null"] },
      },
      additionalProperties: false,
    },
    { type: "array", items: { type: "string" }, uniqueItems: true },
  ],
};

/** Every key the spec allows on a service (compose-spec.json, definitions.service). */
export const SERVICE_KEYS = [
  "annotations",
  "attach",
  "build",
  "blkio_config",
  "cap_add",
  "cap_drop",
  "cgroup",
  "cgroup_parent",
  "command",
  "configs",
  "container_name",
  "cpu_count",
  "cpu_percent",
  "cpu_shares",
  "cpu_quota",
  "cpu_period",
  "cpu_rt_period",
  "cpu_rt_runtime",
  "cpus",
  "cpuset",
  "credential_spec",
  "depends_on",
  "deploy",
  "develop",
  "device_cgroup_rules",
  "devices",
  "dns",
  "dns_opt",
  "dns_search",
  "domainname",
  "entrypoint",
  "env_file",
  "environment",
  "expose",
  "extends",
  "external_links",
  "extra_hosts",
  "gpus",
  "group_add",
  "healthcheck",
  "hostname",
  "image",
  "init",
  "ipc",
  "isolation",
  "label_file",
  "labels",
  "links",
  "logging",
  "mac_address",
  "mem_limit",
  "mem_reservation",
  "mem_swappiness",
  "memswap_limit",
  "network_mode",
  "networks",
  "oom_kill_disable",
  "oom_score_adj",
  "pid",
  "pids_limit",
  "platform",
  "ports",
  "post_start",
  "pre_stop",
  "privileged",
  "profiles",
  "pull_policy",
  "read_only",
  "restart",
  "runtime",
  "scale",
  "secrets",
  "security_opt",
  "shm_size",
  "stdin_open",
  "stop_grace_period",
  "stop_signal",
  "storage_opt",
  "sysctls",
  "tmpfs",
  "tty",
  "ulimits",
  "user",
  "uts",
  "userns_mode",
  "volumes",
  "volumes_from",
  "working_dir",
] as const;

const service = {
  type: "object",
  properties: {
    ...Object.fromEntries(SERVICE_KEYS.map((key) => [key, {}])),
    image: { type: "string" },
    build: {
      oneOf: [
        { type: "string" },
        {
          type: "object",
          properties: {
            context: { type: "string" },
            dockerfile: { type: "string" },
            args: listOrDict,
            target: { type: "string" },
          },
          additionalProperties: false,
        },
      ],
    },
    command: stringOrList,
    entrypoint: stringOrList,
    environment: listOrDict,
    init: { type: "boolean" },
    read_only: { type: "boolean" },
    restart: { type: "string", pattern: "^(no|always|unless-stopped|on-failure(:\\d+)?)$" },
    profiles: { type: "array", items: { type: "string" }, uniqueItems: true },
    tmpfs: stringOrList,
    cap_drop: { type: "array", items: { type: "string" }, uniqueItems: true },
    security_opt: { type: "array", items: { type: "string" }, uniqueItems: true },
    stop_grace_period: duration,
    ports: {
      type: "array",
      items: {
        oneOf: [
          { type: "number" },
          { type: "string", pattern: "^((\\S+:)?\\d+(-\\d+)?:)?\\d+(-\\d+)?(/(tcp|udp))?$" },
        ],
      },
    },
    volumes: { type: "array", items: { type: "string" }, uniqueItems: true },
    healthcheck: {
      type: "object",
      properties: {
        disable: { type: "boolean" },
        interval: duration,
        retries: { type: "number" },
        test: {
          oneOf: [
            { type: "string" },
            {
              type: "array",
              minItems: 1,
              items: [{ enum: ["NONE", "CMD", "CMD-SHELL"] }],
              additionalItems: { type: "string" },
            },
          ],
        },
        timeout: duration,
        start_period: duration,
        start_interval: duration,
      },
      additionalProperties: false,
      patternProperties: { "^x-": {} },
    },
    depends_on: {
      oneOf: [
        { type: "array", items: { type: "string" }, uniqueItems: true },
        {
          type: "object",
          additionalProperties: false,
          patternProperties: {
            "^[a-zA-Z0-9._-]+$": {
              type: "object",
              properties: {
                condition: {
                  enum: ["service_started", "service_healthy", "service_completed_successfully"],
                },
                restart: { type: "boolean" },
                required: { type: "boolean" },
              },
              required: ["condition"],
              additionalProperties: false,
            },
          },
        },
      ],
    },
  },
  patternProperties: { "^x-": {} },
  additionalProperties: false,
};

export const composeSchema = {
  $schema: "http://json-schema.org/draft-07/schema#",
  type: "object",
  properties: {
    version: { type: "string" },
    name: { type: "string", pattern: "^[a-z0-9][a-z0-9_-]*$" },
    include: { type: "array" },
    services: {
      type: "object",
      patternProperties: { "^[a-zA-Z0-9._-]+$": service },
      additionalProperties: false,
    },
    networks: { type: "object" },
    volumes: {
      type: "object",
      patternProperties: { "^[a-zA-Z0-9._-]+$": { type: ["object", "null"] } },
      additionalProperties: false,
    },
    secrets: { type: "object" },
    configs: { type: "object" },
    models: { type: "object" },
  },
  patternProperties: { "^x-": {} },
  additionalProperties: false,
  required: ["services"],
} as const;
