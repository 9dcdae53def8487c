// pino JSON logs: one line per decision, carrying kind/namespace/name for object work.
import { type Logger, pino } from "pino";

export type { Logger };

export function createLogger(component: string): Logger {
  return pino({
    level: process.env.LOG_LEVEL ?? "info",
    base: { component },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

/** A child logger for work on one object. */
export function forObject(log: Logger, kind: string, key: string): Logger {
  const [namespace, name] = key.includes("/") ? key.split("/", 2) : [undefined, key];
  return log.child({ kind, namespace, name });
}
