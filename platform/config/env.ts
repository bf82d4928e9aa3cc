/**
 * Configuration comes from the environment, is validated once at start, and
 * fails fast with a message that names the variable. Every reader here has a
 * safe local default so `npm start` works on a developer machine.
 */

export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`invalid configuration: ${variable} ${problem}`);
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

function raw(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

export function readString(env: Env, name: string, fallback?: string): string {
  const value = raw(env, name) ?? fallback;
  if (value === undefined) throw new ConfigError(name, "is required but not set");
  return value;
}

export function readOptionalString(env: Env, name: string): string | undefined {
  return raw(env, name);
}

export function readInt(
  env: Env,
  name: string,
  fallback: number,
  bounds: { min?: number; max?: number } = {},
): number {
  const text = raw(env, name);
  if (text === undefined) return fallback;
  if (!/^-?\d+$/.test(text)) throw new ConfigError(name, `must be an integer, got "${text}"`);
  const value = Number(text);
  if (bounds.min !== undefined && value < bounds.min)
    throw new ConfigError(name, `must be >= ${bounds.min}, got ${value}`);
  if (bounds.max !== undefined && value > bounds.max)
    throw new ConfigError(name, `must be <= ${bounds.max}, got ${value}`);
  return value;
}

export function readPort(env: Env, name: string, fallback: number): number {
  return readInt(env, name, fallback, { min: 0, max: 65535 });
}

export function readBool(env: Env, name: string, fallback: boolean): boolean {
  const text = raw(env, name);
  if (text === undefined) return fallback;
  if (/^(1|true|yes|on)$/i.test(text)) return true;
  if (/^(0|false|no|off)$/i.test(text)) return false;
  throw new ConfigError(name, `must be a boolean (true/false), got "${text}"`);
}

export function readUrl(env: Env, name: string, fallback: string, protocols: string[]): string {
  const text = raw(env, name) ?? fallback;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(name, `must be a URL, got "${redact(text)}"`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(
      name,
      `must use ${protocols.join(" or ")}, got "${url.protocol}" in "${redact(text)}"`,
    );
  }
  if (url.port !== "" && !(Number(url.port) > 0 && Number(url.port) <= 65535)) {
    throw new ConfigError(name, `has an invalid port in "${redact(text)}"`);
  }
  if (url.hostname === "") throw new ConfigError(name, `has no host in "${redact(text)}"`);
  return text;
}

export function readOptionalUrl(env: Env, name: string, protocols: string[]): string | undefined {
  if (raw(env, name) === undefined) return undefined;
  return readUrl(env, name, "", protocols);
}

export function readEnum<T extends string>(
  env: Env,
  name: string,
  fallback: T,
  allowed: readonly T[],
): T {
  const text = raw(env, name);
  if (text === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(text)) {
    throw new ConfigError(name, `must be one of ${allowed.join(", ")}, got "${text}"`);
  }
  return text as T;
}

/** Passwords inside URLs never reach logs or error messages. */
export function redact(text: string): string {
  return text.replace(/\/\/([^:/@]+):([^@]*)@/, "//$1:***@");
}
