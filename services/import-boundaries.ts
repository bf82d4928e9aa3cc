import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

/**
 * The architecture rule, as code: a service imports only platform/, gen/, its
 * own folder and packages; platform/ never imports a service. A reader then
 * finds an RPC's contract, handler, SQL, events and tests by following one
 * service folder.
 */
export interface BoundaryViolation {
  file: string;
  specifier: string;
  reason: string;
}

const IMPORT =
  /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)|^\s*import\s*["']([^"']+)["']/gm;

export function importsOf(source: string): string[] {
  const out: string[] = [];
  for (const match of source.matchAll(IMPORT)) {
    const specifier = match[1] ?? match[2] ?? match[3];
    if (specifier) out.push(specifier);
  }
  return out;
}

function topFolder(root: string, file: string): string[] {
  return relative(root, file).split(sep);
}

export function checkFile(root: string, file: string, source: string): BoundaryViolation[] {
  const violations: BoundaryViolation[] = [];
  const segments = topFolder(root, file);
  const [area, owner] = segments;
  // Files directly in services/ (this checker) belong to no service.
  if (area === "services" && segments.length < 3) return [];
  for (const specifier of importsOf(source)) {
    if (!specifier.startsWith(".")) continue;
    const target = resolve(dirname(file), specifier);
    const [targetArea, targetOwner] = topFolder(root, target);
    if (area === "services") {
      if (targetArea === "platform" || targetArea === "gen") continue;
      if (targetArea === "services" && targetOwner === owner) continue;
      violations.push({
        file: relative(root, file),
        specifier,
        reason:
          targetArea === "services"
            ? `service "${owner}" imports service "${targetOwner}"; call its RPCs or consume its events`
            : `service "${owner}" imports "${targetArea}/"; only platform/, gen/ and its own folder are allowed`,
      });
    } else if (area === "platform" && targetArea === "services") {
      violations.push({
        file: relative(root, file),
        specifier,
        reason: "platform/ must not depend on a service",
      });
    }
  }
  return violations;
}

function* walk(dir: string): Generator<string> {
  for (const entry of readdirSync(dir)) {
    if (entry === "node_modules" || entry.startsWith(".")) continue;
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) yield* walk(path);
    else if (/\.(ts|mts|js|mjs)$/.test(entry)) yield path;
  }
}

export function checkTree(root: string): BoundaryViolation[] {
  const violations: BoundaryViolation[] = [];
  for (const area of ["services", "platform"]) {
    for (const file of walk(join(root, area))) {
      violations.push(...checkFile(root, file, readFileSync(file, "utf8")));
    }
  }
  return violations;
}
