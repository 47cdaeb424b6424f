/** A small leveled logger; `--log-level` (or DaemonOptions.logLevel) sets the threshold, `setLogger` the sink. */

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'off'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Where log lines go: `level` and the formatted message (Error arguments with their stack). The default writes
 * `[virtiofsd-ts LEVEL] message` to stderr. Called only for messages at or above the threshold.
 */
export type Logger = (level: Exclude<LogLevel, 'off'>, message: string) => void;

const stderrLogger: Logger = (level, message) => {
  process.stderr.write(`[virtiofsd-ts ${level}] ${message}\n`);
};

let threshold = LOG_LEVELS.indexOf('info');
let sink: Logger = stderrLogger;

/** Sets the threshold for the whole process ('off': nothing is logged). */
export function setLogLevel(level: LogLevel): void {
  threshold = LOG_LEVELS.indexOf(level);
}

/** Sends log lines to `logger` instead of stderr (process-wide); null restores stderr. */
export function setLogger(logger: Logger | null): void {
  sink = logger ?? stderrLogger;
}

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

function emit(level: number, args: unknown[]): void {
  if (level < threshold) return;
  const text = args.map((a) => (a instanceof Error ? (a.stack ?? a.message) : String(a))).join(' ');
  try {
    sink(LOG_LEVELS[level] as Exclude<LogLevel, 'off'>, text);
  } catch {
    // a failing logger must not take a request down with it
  }
}

export const log = {
  enabled: (level: LogLevel): boolean => LOG_LEVELS.indexOf(level) >= threshold,
  trace: (...a: unknown[]): void => emit(0, a),
  debug: (...a: unknown[]): void => emit(1, a),
  info: (...a: unknown[]): void => emit(2, a),
  warn: (...a: unknown[]): void => emit(3, a),
  error: (...a: unknown[]): void => emit(4, a),
};
