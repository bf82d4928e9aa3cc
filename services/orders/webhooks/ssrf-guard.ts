import { lookup as dnsLookup } from "node:dns/promises";
import { BlockList, isIP, type LookupFunction } from "node:net";

/**
 * Webhook targets are chosen by partners, so the server must not become a
 * proxy into its own network: a URL is refused when its host resolves to a
 * private, loopback, link-local, unique-local or otherwise non-public
 * address, unless the host (or address) is in the configured allow-list.
 * The same check runs again at connection time (see `guardedLookup`), so a
 * DNS answer that changes after the subscription was accepted (rebinding)
 * does not reach an internal address either.
 */
export class WebhookTargetError extends Error {
  override name = "WebhookTargetError";
}

const NON_PUBLIC = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8], // "this" network
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // carrier-grade NAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local (cloud metadata lives here)
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.88.99.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved + broadcast
] as const) {
  NON_PUBLIC.addSubnet(net, prefix, "ipv4");
}
for (const [net, prefix] of [
  ["::", 128], // unspecified
  ["::1", 128], // loopback
  ["100::", 64], // discard
  ["2001::", 23], // IETF protocol assignments (Teredo, ORCHID, ...)
  ["2001:db8::", 32], // documentation
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["fec0::", 10], // site-local (deprecated)
  ["ff00::", 8], // multicast
] as const) {
  NON_PUBLIC.addSubnet(net, prefix, "ipv6");
}

/** An IPv4 address embedded in IPv6 (mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, compat ::a.b.c.d). */
function embeddedIpv4(address: string): string | undefined {
  const lower = address.toLowerCase();
  const dotted = /^(?:::ffff:|64:ff9b::|::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hex) {
    const high = Number.parseInt(hex[1]!, 16);
    const low = Number.parseInt(hex[2]!, 16);
    return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
  }
  return undefined;
}

export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return !NON_PUBLIC.check(address, "ipv4");
  if (family === 6) {
    const v4 = embeddedIpv4(address);
    if (v4) return isPublicAddress(v4);
    return !NON_PUBLIC.check(address, "ipv6");
  }
  return false;
}

export interface TargetPolicy {
  /** Lower-case host names or addresses allowed even when not public. */
  allowedHosts: readonly string[];
}

function stripBrackets(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

function allowed(policy: TargetPolicy, host: string, address?: string): boolean {
  const list = policy.allowedHosts;
  return list.includes(host.toLowerCase()) || (address !== undefined && list.includes(address));
}

export const MAX_URL_LENGTH = 2048;

/** Syntax rules checked before any DNS: absolute http(s), no credentials, bounded length. */
export function parseWebhookUrl(text: string): URL {
  if (text.length === 0) throw new WebhookTargetError("is required");
  if (text.length > MAX_URL_LENGTH) {
    throw new WebhookTargetError(`must be at most ${MAX_URL_LENGTH} characters`);
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new WebhookTargetError("must be an absolute URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new WebhookTargetError("must use https or http");
  }
  if (url.username !== "" || url.password !== "") {
    throw new WebhookTargetError("must not contain credentials");
  }
  if (url.hostname === "") throw new WebhookTargetError("must have a host");
  if (url.hash !== "") throw new WebhookTargetError("must not contain a fragment");
  return url;
}

async function resolveAll(host: string): Promise<string[]> {
  if (isIP(host)) return [host];
  try {
    const answers = await dnsLookup(host, { all: true, verbatim: true });
    return answers.map((a) => a.address);
  } catch (cause) {
    throw new WebhookTargetError("host does not resolve", { cause });
  }
}

/**
 * Resolves the URL's host and refuses it unless every address is public or
 * the host is allow-listed. Used at subscription time.
 */
export async function checkWebhookTarget(url: URL, policy: TargetPolicy): Promise<void> {
  const host = stripBrackets(url.hostname);
  if (allowed(policy, host)) return;
  const addresses = await resolveAll(host);
  if (addresses.length === 0) throw new WebhookTargetError("host does not resolve");
  for (const address of addresses) {
    if (!isPublicAddress(address) && !allowed(policy, host, address)) {
      throw new WebhookTargetError("must resolve to a public address");
    }
  }
}

/**
 * A `lookup` for http.request that only ever hands the socket an address
 * that passes the policy, so the connection goes exactly where the check
 * looked (no time-of-check/time-of-use gap for DNS rebinding).
 */
export function guardedLookup(policy: TargetPolicy): LookupFunction {
  return (hostname, options, callback) => {
    const host = stripBrackets(hostname);
    resolveAll(host).then(
      (addresses) => {
        const ok = addresses.filter(
          (address) => isPublicAddress(address) || allowed(policy, host, address),
        );
        const address = ok[0];
        if (!address) {
          callback(new WebhookTargetError("target resolves to a non-public address"), "", 4);
          return;
        }
        const family = isIP(address);
        if (options.all) {
          (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(
            null,
            ok.map((a) => ({ address: a, family: isIP(a) })),
          );
        } else {
          callback(null, address, family);
        }
      },
      (error: Error) => callback(error as NodeJS.ErrnoException, "", 4),
    );
  };
}
