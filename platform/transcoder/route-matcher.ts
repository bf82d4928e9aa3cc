import type { PathTemplate } from "./path-template.js";

/**
 * Segment trie compiled once at start. Matching walks the request's raw path
 * segments; at each node a literal child is tried before a `*` child before a
 * `**` tail, so literal segments beat variables whatever the declaration
 * order. The first candidate path whose leaf serves the request method wins;
 * when candidates exist but none serves the method the result says which
 * methods would have (405 + Allow).
 */

export interface MatchableRoute {
  httpMethod: string;
  template: PathTemplate;
}

interface Leaf<R> {
  /** verb → method → route */
  byVerb: Map<string, Map<string, R>>;
}

interface Node<R> extends Leaf<R> {
  literals: Map<string, Node<R>> | undefined;
  wildcard: Node<R> | undefined;
  /** Routes whose template ends with `**` at this depth. */
  deep: Leaf<R> | undefined;
}

export type MatchResult<R> =
  | { kind: "found"; route: R; segments: string[] }
  | { kind: "method-not-allowed"; allow: string[] }
  | { kind: "not-found" };

export class RouteConflictError extends Error {
  override name = "RouteConflictError";
}

function newNode<R>(): Node<R> {
  return { byVerb: new Map(), literals: undefined, wildcard: undefined, deep: undefined };
}

const NOT_FOUND = { kind: "not-found" } as const;

export class RouteMatcher<R extends MatchableRoute> {
  private readonly root: Node<R> = newNode();
  /** Verbs any route uses; a request's ":x" suffix is only a verb if listed. */
  private readonly verbs = new Set<string>();

  add(route: R, describe: (route: R) => string = (r) => r.template.source): void {
    let node = this.root;
    let leaf: Leaf<R> | undefined;
    for (const seg of route.template.segments) {
      if (seg.kind === "literal") {
        node.literals ??= new Map();
        let next = node.literals.get(seg.value);
        if (!next) {
          next = newNode();
          node.literals.set(seg.value, next);
        }
        node = next;
      } else if (seg.kind === "wildcard") {
        node.wildcard ??= newNode();
        node = node.wildcard;
      } else {
        node.deep ??= { byVerb: new Map() };
        leaf = node.deep;
      }
    }
    leaf ??= node;
    const verb = route.template.verb;
    if (verb) this.verbs.add(verb);
    let methods = leaf.byVerb.get(verb);
    if (!methods) {
      methods = new Map();
      leaf.byVerb.set(verb, methods);
    }
    const existing = methods.get(route.httpMethod);
    if (existing) {
      throw new RouteConflictError(
        `${route.httpMethod} ${route.template.source} (${describe(route)}) conflicts with ${describe(existing)}`,
      );
    }
    methods.set(route.httpMethod, route);
  }

  /**
   * `path` is the raw (still percent-encoded) path without the query string.
   * A trailing ":x" on the last segment is tried as a verb first; only when no
   * route with that verb has the path is the whole segment matched as data.
   */
  match(httpMethod: string, path: string): MatchResult<R> {
    if (path.length < 2 || path.charCodeAt(0) !== 47 /* / */) return NOT_FOUND;
    const segments = path.slice(1).split("/");
    const lastIndex = segments.length - 1;
    const last = segments[lastIndex]!;
    const colon = last.lastIndexOf(":");
    if (colon !== -1) {
      const verb = last.slice(colon + 1);
      if (this.verbs.has(verb)) {
        const stripped = segments.slice();
        stripped[lastIndex] = last.slice(0, colon);
        const result = this.search(httpMethod, stripped, verb);
        if (result.kind !== "not-found") return result;
      }
    }
    return this.search(httpMethod, segments, "");
  }

  private search(httpMethod: string, segments: string[], verb: string): MatchResult<R> {
    const allow = new Set<string>();
    const route = this.walk(this.root, segments, 0, verb, httpMethod, allow);
    if (route) return { kind: "found", route, segments };
    if (allow.size > 0) return { kind: "method-not-allowed", allow: [...allow].sort() };
    return NOT_FOUND;
  }

  private walk(
    node: Node<R>,
    segments: string[],
    index: number,
    verb: string,
    httpMethod: string,
    allow: Set<string>,
  ): R | undefined {
    if (index === segments.length) {
      const hit = pick(node, verb, httpMethod, allow);
      if (hit) return hit;
    } else {
      const segment = segments[index]!;
      if (segment.length > 0) {
        if (node.literals) {
          let child = node.literals.get(segment);
          if (!child && segment.includes("%")) {
            const decoded = safeDecode(segment);
            if (decoded !== undefined) child = node.literals.get(decoded);
          }
          if (child) {
            const hit = this.walk(child, segments, index + 1, verb, httpMethod, allow);
            if (hit) return hit;
          }
        }
        if (node.wildcard) {
          const hit = this.walk(node.wildcard, segments, index + 1, verb, httpMethod, allow);
          if (hit) return hit;
        }
      }
    }
    if (node.deep) {
      // `**` takes the rest: zero or more segments, none of them empty (a
      // trailing slash is a different path).
      for (let i = index; i < segments.length; i++) if (segments[i]!.length === 0) return undefined;
      return pick(node.deep, verb, httpMethod, allow);
    }
    return undefined;
  }
}

function pick<R>(leaf: Leaf<R>, verb: string, httpMethod: string, allow: Set<string>) {
  const methods = leaf.byVerb.get(verb);
  if (!methods) return undefined;
  const route = methods.get(httpMethod);
  if (route) return route;
  for (const m of methods.keys()) allow.add(m);
  return undefined;
}

function safeDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}
