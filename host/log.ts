/**
 * A small leveled logger; `--log-level` (or DaemonOptions.logLevel) sets the threshold. Lines go to a logger set
 * with setLogger() (library users), else, after useSyslog() (`--syslog`), to the system logger as RFC 3164
 * datagrams on its Unix socket, as syslog(3) sends them, else to stderr.
 */
import { native } from './native-loader.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'off'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Where log lines go: `level` and the formatted message (Error arguments with their stack). Without one, lines go
 * to syslog (useSyslog) or stderr as `[virtiofsd-ts LEVEL] message`. Called only at or above the threshold.
 */
export type Logger = (level: Exclude<LogLevel, 'off'>, message: string) => void;

/** Each level's rank (its index in LOG_LEVELS). */
const RANK = Object.fromEntries(LOG_LEVELS.map((l, i) => [l, i])) as Record<LogLevel, number>;

/**
 * RANK[level] as string comparisons: `enabled` is asked once per request, and RANK[level] from call sites with
 * different levels is a megamorphic keyed load (a stub-cache probe per call, ~4% of the daemon's user time at
 * GETATTR depth 16); inlined with a constant level, this folds away.
 */
function rankOf(level: LogLevel): number {
  switch (level) {
    case 'trace': return 0;
    case 'debug': return 1;
    case 'info': return 2;
    case 'warn': return 3;
    case 'error': return 4;
    default: return RANK[level] ?? -1;
  }
}
let threshold = RANK.info;
let custom: Logger | null = null;

/** Sets the threshold for the whole process ('off': nothing is logged). */
export function setLogLevel(level: LogLevel): void {
  threshold = RANK[level] ?? -1; // (an unknown level from plain JS: everything, as before)
}

/** The threshold now (what a worker thread is started with). */
export function logLevel(): LogLevel {
  return LOG_LEVELS.find((l) => RANK[l] === threshold) ?? 'trace';
}

/** Sends log lines to `logger` instead of syslog/stderr (process-wide); null restores those. */
export function setLogger(logger: Logger | null): void {
  custom = logger;
}

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

/** syslog(3) severities for trace..error (LOG_DEBUG, LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR). */
const SYSLOG_SEVERITY = [7, 7, 6, 4, 3];
/** LOG_DAEMON: the facility of a system daemon (the C virtiofsd's too). */
const LOG_DAEMON = 3;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** A datagram longer than this is cut (syslog daemons take at least 2 KiB; rsyslog and journald 8 KiB and more). */
const SYSLOG_MAX = 8192;

interface SyslogSink { fd: number; ident: string }
let syslog: SyslogSink | null = null;

/**
 * Sends every later line to the system logger listening on `socketPath` (a datagram socket; /dev/log on Linux),
 * facility daemon, tagged `ident[pid]`. The socket is connected now, so the line keeps going after the sandbox has
 * pivoted away from /dev. Returns null, or the reason it could not connect (the caller stays on stderr).
 */
export function useSyslog(socketPath = '/dev/log', ident = 'virtiofsd-ts'): string | null {
  const fd = native.unixDatagram(socketPath, false);
  if (fd < 0) return `${socketPath}: ${native.strerror(-fd)}`;
  if (syslog !== null) native.close(syslog.fd);
  syslog = { fd, ident };
  return null;
}

/** Back to stderr (closes the syslog socket). */
export function useStderr(): void {
  if (syslog !== null) native.close(syslog.fd);
  syslog = null;
}

/** `<PRI>Mmm dd hh:mm:ss ident[pid]: text`, the header syslog(3) writes (local time). */
export function syslogLine(severity: number, ident: string, text: string, now = new Date()): string {
  const two = (n: number) => String(n).padStart(2, '0');
  const stamp = `${MONTHS[now.getMonth()]} ${String(now.getDate()).padStart(2, ' ')} ` +
    `${two(now.getHours())}:${two(now.getMinutes())}:${two(now.getSeconds())}`;
  return `<${LOG_DAEMON * 8 + severity}>${stamp} ${ident}[${process.pid}]: ${text}`;
}

function emit(level: number, args: unknown[]): void {
  if (level < threshold) return;
  const text = args.map((a) => (a instanceof Error ? (a.stack ?? a.message) : String(a))).join(' ');
  if (custom !== null) {
    try {
      custom(LOG_LEVELS[level] as Exclude<LogLevel, 'off'>, text);
    } catch {
      // a failing logger must not take a request down with it
    }
    return;
  }
  if (syslog !== null) {
    const bytes = Buffer.from(syslogLine(SYSLOG_SEVERITY[level]!, syslog.ident, text), 'utf8').subarray(0, SYSLOG_MAX);
    // Nonblocking: a logger that stopped reading, or went away, costs this line its way to syslog, not the daemon
    // its progress. Such a line goes to stderr instead (no reconnect: the sandbox may forbid it).
    if (native.sendmsg(syslog.fd, bytes, 0, bytes.length, []) === bytes.length) return;
  }
  process.stderr.write(`[virtiofsd-ts ${LOG_LEVELS[level]}] ${text}\n`);
}

export const log = {
  enabled: (level: LogLevel): boolean => rankOf(level) >= threshold,
  trace: (...a: unknown[]): void => emit(0, a),
  debug: (...a: unknown[]): void => emit(1, a),
  info: (...a: unknown[]): void => emit(2, a),
  warn: (...a: unknown[]): void => emit(3, a),
  error: (...a: unknown[]): void => emit(4, a),
};
