import { type DescField, type DescMethod, type DescService, getOption } from "@bufbuild/protobuf";
import { http } from "../../gen/google/api/annotations_pb.js";
import type { HttpRule } from "../../gen/google/api/http_pb.js";
import { hasScalarJsonForm, isWellKnown, resolveFieldPath } from "./message-fields.js";
import { type PathTemplate, parsePathTemplate } from "./path-template.js";
import type { MatchableRoute } from "./route-matcher.js";

/** A path variable, resolved against the request message at start. */
export interface PathVariable {
  start: number;
  /** -1: to the end of the path (`**`). */
  end: number;
  /** A single `*` segment: fully percent-decoded. Otherwise %2F is kept. */
  singleSegment: boolean;
  /** JSON names from the request root to the leaf. */
  jsonKeys: string[];
  /** Proto names where they differ from the JSON name (removed when setting). */
  protoKeys: string[];
  leaf: DescField;
  /** Dotted proto path, for messages ("item.id"). */
  name: string;
}

export interface StreamResume {
  /** Request field set from Last-Event-ID (top level). */
  request: DescField;
  /** Path from the response message to the sequence field. */
  response: DescField[];
}

/** One HTTP binding (a rule or one of its additional_bindings) of one RPC. */
export interface Binding extends MatchableRoute {
  service: DescService;
  method: DescMethod;
  /** 0 for the main rule, 1.. for additional_bindings. */
  bindingIndex: number;
  pathVariables: PathVariable[];
  body: { kind: "none" } | { kind: "all" } | { kind: "field"; field: DescField };
  responseField: DescField | undefined;
  /** Dotted proto paths bound by the path or the body: not settable by query. */
  bound: Set<string>;
  /** `update_mask` of a PATCH with a body field: derived from the body when absent. */
  updateMask: DescField | undefined;
  resume: StreamResume | undefined;
  streaming: boolean;
}

export class BindingError extends Error {
  override name = "BindingError";
}

export interface ResumeOverride {
  /** Top-level request field (proto name), e.g. "after_sequence". */
  request: string;
  /** Dotted path in the response message (proto names), e.g. "event.sequence". */
  response: string;
}

function patternOf(rule: HttpRule): { httpMethod: string; path: string } | undefined {
  const p = rule.pattern;
  switch (p.case) {
    case "get":
      return { httpMethod: "GET", path: p.value };
    case "put":
      return { httpMethod: "PUT", path: p.value };
    case "post":
      return { httpMethod: "POST", path: p.value };
    case "delete":
      return { httpMethod: "DELETE", path: p.value };
    case "patch":
      return { httpMethod: "PATCH", path: p.value };
    case "custom":
      return { httpMethod: p.value.kind.toUpperCase(), path: p.value.path };
    default:
      return undefined;
  }
}

const INTEGER_SCALARS = new Set([3, 4, 5, 6, 7, 13, 15, 16, 17, 18]); // int64…sint64

function isIntegerField(field: DescField): boolean {
  return field.fieldKind === "scalar" && INTEGER_SCALARS.has(field.scalar);
}

/**
 * Convention: a streaming request with a top-level integer `after_sequence`
 * resumes from the `sequence` integer found in the response (top level or one
 * message down). Overrides (or `null` to disable) are keyed
 * "package.Service.Method".
 */
function resumeOf(
  method: DescMethod,
  overrides: Record<string, ResumeOverride | null> | undefined,
): StreamResume | undefined {
  const key = `${method.parent.typeName}.${method.name}`;
  const override = overrides?.[key];
  if (override === null) return undefined;
  if (override) {
    const request = resolveFieldPath(method.input, [override.request])[0]!;
    const response = resolveFieldPath(method.output, override.response.split("."));
    return { request, response };
  }
  const request = method.input.fields.find((f) => f.name === "after_sequence");
  if (!request || !isIntegerField(request)) return undefined;
  const top = method.output.fields.find((f) => f.name === "sequence" && isIntegerField(f));
  if (top) return { request, response: [top] };
  for (const field of method.output.fields) {
    if (field.fieldKind !== "message" || isWellKnown(field.message)) continue;
    const inner = field.message.fields.find((f) => f.name === "sequence" && isIntegerField(f));
    if (inner) return { request, response: [field, inner] };
  }
  return undefined;
}

function compileBinding(
  service: DescService,
  method: DescMethod,
  rule: HttpRule,
  bindingIndex: number,
  resume: StreamResume | undefined,
): Binding | undefined {
  const pattern = patternOf(rule);
  if (!pattern) return undefined;
  const where = `${service.typeName}.${method.name}`;
  if (method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming") {
    throw new BindingError(`${where}: client streaming RPCs cannot be transcoded`);
  }
  let template: PathTemplate;
  try {
    template = parsePathTemplate(pattern.path);
  } catch (error) {
    throw new BindingError(`${where}: ${(error as Error).message}`);
  }
  const bound = new Set<string>();
  const pathVariables: PathVariable[] = template.variables.map((variable) => {
    let fields: DescField[];
    try {
      fields = resolveFieldPath(method.input, variable.fieldPath);
    } catch (error) {
      throw new BindingError(`${where} ${pattern.path}: ${(error as Error).message}`);
    }
    const leaf = fields.at(-1)!;
    const settable =
      leaf.fieldKind === "scalar" ||
      leaf.fieldKind === "enum" ||
      (leaf.fieldKind === "message" && hasScalarJsonForm(leaf.message));
    if (!settable) {
      throw new BindingError(
        `${where} ${pattern.path}: ${leaf.name} must be a non-repeated scalar`,
      );
    }
    const name = variable.fieldPath.join(".");
    bound.add(name);
    const single =
      variable.end === variable.start + 1 && template.segments[variable.start]!.kind === "wildcard";
    return {
      start: variable.start,
      end: variable.end,
      singleSegment: single,
      jsonKeys: fields.map((f) => f.jsonName),
      protoKeys: fields.map((f) => f.name),
      leaf,
      name,
    };
  });
  let body: Binding["body"] = { kind: "none" };
  if (rule.body === "*") body = { kind: "all" };
  else if (rule.body !== "") {
    const field = method.input.fields.find((f) => f.name === rule.body);
    if (!field) throw new BindingError(`${where}: body field ${rule.body} does not exist`);
    body = { kind: "field", field };
    bound.add(field.name);
  }
  let responseField: DescField | undefined;
  if (rule.responseBody !== "") {
    responseField = method.output.fields.find((f) => f.name === rule.responseBody);
    if (!responseField) {
      throw new BindingError(`${where}: response_body field ${rule.responseBody} does not exist`);
    }
  }
  const maskField = method.input.fields.find(
    (f) =>
      f.name === "update_mask" &&
      f.fieldKind === "message" &&
      f.message.typeName === "google.protobuf.FieldMask",
  );
  const updateMask =
    pattern.httpMethod === "PATCH" &&
    body.kind === "field" &&
    body.field.fieldKind === "message" &&
    maskField
      ? maskField
      : undefined;
  return {
    httpMethod: pattern.httpMethod,
    template,
    service,
    method,
    bindingIndex,
    pathVariables,
    body,
    responseField,
    bound,
    updateMask,
    resume: method.methodKind === "server_streaming" ? resume : undefined,
    streaming: method.methodKind === "server_streaming",
  };
}

/** Every binding of every annotated RPC of the given services. */
export function compileBindings(
  services: readonly DescService[],
  resumeOverrides?: Record<string, ResumeOverride | null>,
): Binding[] {
  const out: Binding[] = [];
  for (const service of services) {
    for (const method of service.methods) {
      const rule = getOption(method, http);
      if (!rule || rule.pattern.case === undefined) continue;
      const resume =
        method.methodKind === "server_streaming" ? resumeOf(method, resumeOverrides) : undefined;
      const main = compileBinding(service, method, rule, 0, resume);
      if (main) out.push(main);
      rule.additionalBindings.forEach((extra, i) => {
        if (extra.additionalBindings.length > 0) {
          throw new BindingError(
            `${service.typeName}.${method.name}: additional_bindings cannot nest further bindings`,
          );
        }
        const binding = compileBinding(service, method, extra, i + 1, resume);
        if (binding) out.push(binding);
      });
    }
  }
  return out;
}
