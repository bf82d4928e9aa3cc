const UNITS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000001,
};

/** Parses a `grpc-timeout` header ("100m", "5S") into milliseconds. */
export function parseGrpcTimeout(value: string | string[] | undefined | null): number | undefined {
  if (typeof value !== "string") return undefined;
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * UNITS[match[2]!]!;
}
