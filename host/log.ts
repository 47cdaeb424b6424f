/** A small leveled logger to stderr; `--log-level` sets the threshold. */

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'off'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

let threshold = LOG_LEVELS.indexOf('info');

export function setLogLevel(level: LogLevel): void {
  threshold = LOG_LEVELS.indexOf(level);
}

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

function emit(level: number, args: unknown[]): void {
  if (level < threshold) return;
  const text = args.map((a) => (a instanceof Error ? (a.stack ?? a.message) : String(a))).join(' ');
  process.stderr.write(`[virtiofsd-ts ${LOG_LEVELS[level]}] ${text}\n`);
}

export const log = {
  enabled: (level: LogLevel): boolean => LOG_LEVELS.indexOf(level) >= threshold,
  trace: (...a: unknown[]): void => emit(0, a),
  debug: (...a: unknown[]): void => emit(1, a),
  info: (...a: unknown[]): void => emit(2, a),
  warn: (...a: unknown[]): void => emit(3, a),
  error: (...a: unknown[]): void => emit(4, a),
};
