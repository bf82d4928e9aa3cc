/**
 * Path templates of google/api/http.proto:
 *
 *   Template = "/" Segments [ Verb ] ;
 *   Segments = Segment { "/" Segment } ;
 *   Segment  = "*" | "**" | LITERAL | Variable ;
 *   Variable = "{" FieldPath [ "=" Segments ] "}" ;
 *   Verb     = ":" LITERAL ;
 *
 * `{x}` is `{x=*}`. `**` matches the rest of the path (zero or more segments)
 * and may only be the last segment.
 */

export type TemplateSegment =
  | { kind: "literal"; value: string }
  | { kind: "wildcard" }
  | { kind: "deep" };

export interface TemplateVariable {
  /** Proto field names from the request message, e.g. ["item", "id"]. */
  fieldPath: string[];
  /** First template segment the variable covers. */
  start: number;
  /** One past the last covered segment; -1 when it ends with `**`. */
  end: number;
}

export interface PathTemplate {
  source: string;
  segments: TemplateSegment[];
  variables: TemplateVariable[];
  /** "" when the template has no `:verb` suffix. */
  verb: string;
}

export class PathTemplateError extends Error {
  override name = "PathTemplateError";
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Literals are URL path characters other than the template's own syntax.
const LITERAL = /^[A-Za-z0-9\-._~!$&'()+,;=@%]+$/;

export function parsePathTemplate(source: string): PathTemplate {
  const fail = (problem: string): never => {
    throw new PathTemplateError(`invalid path template "${source}": ${problem}`);
  };
  if (!source.startsWith("/")) fail("must start with /");
  let body = source.slice(1);
  // The verb is a ":" after the last "/" and outside braces.
  let verb = "";
  let depth = 0;
  let lastSlash = -1;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === "{") depth++;
    else if (c === "}") depth--;
    else if (c === "/" && depth === 0) lastSlash = i;
  }
  if (depth !== 0) fail("unbalanced braces");
  {
    let braces = 0;
    for (let i = lastSlash + 1; i < body.length; i++) {
      const c = body[i];
      if (c === "{") braces++;
      else if (c === "}") braces--;
      else if (c === ":" && braces === 0) {
        verb = body.slice(i + 1);
        body = body.slice(0, i);
        if (!LITERAL.test(verb)) fail(`invalid verb "${verb}"`);
        break;
      }
    }
  }

  const segments: TemplateSegment[] = [];
  const variables: TemplateVariable[] = [];
  const parts = splitTopLevel(body, fail);
  for (const part of parts) {
    if (part.startsWith("{")) {
      if (!part.endsWith("}")) fail(`bad variable "${part}"`);
      const inner = part.slice(1, -1);
      const eq = inner.indexOf("=");
      const fieldText = eq === -1 ? inner : inner.slice(0, eq);
      const fieldPath = fieldText.split(".");
      if (!fieldPath.every((p) => IDENT.test(p))) fail(`bad field path "${fieldText}"`);
      const start = segments.length;
      const pattern = eq === -1 ? "*" : inner.slice(eq + 1);
      if (pattern.includes("{")) fail("nested variables are not allowed");
      for (const sub of pattern.split("/")) segments.push(plainSegment(sub, fail));
      const deep = segments[segments.length - 1]!.kind === "deep";
      variables.push({ fieldPath, start, end: deep ? -1 : segments.length });
    } else {
      segments.push(plainSegment(part, fail));
    }
  }
  for (let i = 0; i < segments.length - 1; i++) {
    if (segments[i]!.kind === "deep") fail("** must be the last segment");
  }
  const seen = new Set<string>();
  for (const v of variables) {
    const key = v.fieldPath.join(".");
    if (seen.has(key)) fail(`field ${key} bound twice`);
    seen.add(key);
  }
  return { source, segments, variables, verb };
}

function splitTopLevel(body: string, fail: (p: string) => never): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = "";
  for (const c of body) {
    if (c === "{") depth++;
    if (c === "}") depth--;
    if (c === "/" && depth === 0) {
      parts.push(current);
      current = "";
    } else {
      current += c;
    }
  }
  parts.push(current);
  if (parts.some((p) => p === "")) fail("empty segment");
  return parts;
}

function plainSegment(text: string, fail: (p: string) => never): TemplateSegment {
  if (text === "*") return { kind: "wildcard" };
  if (text === "**") return { kind: "deep" };
  if (!LITERAL.test(text)) fail(`invalid literal "${text}"`);
  return { kind: "literal", value: text };
}

/** The template with variables written as OpenAPI parameters: /v1/{name}. */
export function templateToOpenApiPath(template: PathTemplate): string {
  const out: string[] = [];
  let i = 0;
  const byStart = new Map(template.variables.map((v) => [v.start, v]));
  while (i < template.segments.length) {
    const variable = byStart.get(i);
    if (variable) {
      out.push(`{${variable.fieldPath.join(".")}}`);
      i = variable.end === -1 ? template.segments.length : variable.end;
      continue;
    }
    const seg = template.segments[i]!;
    out.push(seg.kind === "literal" ? seg.value : seg.kind === "wildcard" ? "*" : "**");
    i++;
  }
  return `/${out.join("/")}${template.verb ? `:${template.verb}` : ""}`;
}
