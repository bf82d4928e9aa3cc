/** The slice of a pino logger the event backbone uses. */
export interface EventLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

function write(level: string, obj: object, msg?: string): void {
  const record: Record<string, unknown> = { level, time: new Date().toISOString(), msg };
  for (const [key, value] of Object.entries(obj)) {
    record[key] = value instanceof Error ? { name: value.name, message: value.message } : value;
  }
  process.stderr.write(`${JSON.stringify(record)}\n`);
}

/** Used when the service passes no logger: problems still reach stderr. */
export const stderrLogger: EventLogger = {
  debug: () => {},
  info: () => {},
  warn: (obj, msg) => write("warn", obj, msg),
  error: (obj, msg) => write("error", obj, msg),
};

export const silentLogger: EventLogger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};
