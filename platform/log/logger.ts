import { type Logger, pino } from "pino";

export type { Logger } from "pino";

/**
 * JSON logs, one object per line. Paths that could carry secrets or personal
 * data are redacted here once, so a careless `log.info({ req })` cannot leak.
 */
export function createLogger(options: {
  service: string;
  level?: string;
  /** Defaults to stdout; tests pass a stream to read the lines back. */
  destination?: NodeJS.WritableStream;
}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: options.service },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: [
          "password",
          "*.password",
          "token",
          "*.token",
          "accessToken",
          "refreshToken",
          "*.accessToken",
          "*.refreshToken",
          "authorization",
          "*.authorization",
          "headers.authorization",
          "headers.cookie",
          "email",
          "*.email",
          "secret",
          "*.secret",
        ],
        censor: "[redacted]",
      },
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
