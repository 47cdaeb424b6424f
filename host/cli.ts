#!/usr/bin/env node
/**
 * The `virtiofsd-ts` command. Option names follow the Rust virtiofsd for what we support, so a VMM's launch
 * line needs no translation.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { VirtiofsdError } from './errors.js';
import { log, setLogLevel, useSyslog } from './log.js';
import { VirtiofsDaemon } from './daemon.js';
import { capabilitiesToDrop, capabilitySet, defaultSandbox, handleSignalsFromHelper, insideNamespaceSandbox,
  relaunch } from './sandbox.js';
import { socketInUse, unixSocketState } from './vhost-user/listener.js';
import { capabilities, parseCommandLine, usage } from './cli-options.js';
import { runtimeName, runtimeNeedsRelaunch } from './runtime.js';
import { native } from './native-loader.js';
import { installStatsSignal } from './stats.js';
import { limitYoungGeneration, shrinkWhenIdle } from './footprint.js';

function packageVersion(): string {
  const pkgPath = fileURLToPath(new URL('../../package.json', import.meta.url));
  try {
    return (JSON.parse(readFileSync(pkgPath, 'utf8')) as { version: string }).version;
  } catch {
    return JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')).version;
  }
}

export { parseCommandLine } from './cli-options.js';

export async function main(argv: string[]): Promise<number> {
  let opts;
  try {
    opts = parseCommandLine(argv);
  } catch (e) {
    process.stderr.write(`virtiofsd-ts: ${(e as Error).message}\n(virtiofsd-ts --help lists the options)\n`);
    return 2;
  }
  if (opts === 'help') {
    process.stdout.write(usage());
    return 0;
  }
  if (opts === 'print-capabilities') {
    process.stdout.write(`${JSON.stringify(capabilities(), null, 2)}\n`);
    return 0;
  }
  if (opts === 'version') {
    process.stdout.write(`virtiofsd-ts ${packageVersion()}\n`);
    return 0;
  }
  setLogLevel(opts.logLevel ?? 'info');
  if (opts.mountpoint === undefined) opts.sandbox ??= defaultSandbox();
  // As root, the capability drop and the namespaces both happen in the single-threaded sandbox helper, before node
  // (and any of its threads) starts again: see host/sandbox.ts.
  // (With --mountpoint the daemon runs unsandboxed: its FUSE mount must be visible on the host.)
  const sandbox = opts.mountpoint === undefined ? opts.sandbox ?? 'none' : 'none';
  const namespaces = sandbox === 'namespace' && !insideNamespaceSandbox();
  const keepCaps = capabilitySet({ sandbox, mountpoint: opts.mountpoint !== undefined,
    fileHandles: (opts.inodeFileHandles ?? 'never') !== 'never',
    ...(opts.modcaps !== undefined ? { modcaps: opts.modcaps } : {}) });
  const dropCaps = capabilitiesToDrop(keepCaps);
  if (dropCaps && process.env.VIRTIOFSD_TS_SANDBOX !== undefined) {
    process.stderr.write('virtiofsd-ts: the sandbox helper ran but the capabilities are not narrowed\n');
    return 1;
  }
  if (opts.modcaps !== undefined && native.geteuid() !== 0) {
    process.stderr.write('virtiofsd-ts: --modcaps needs root (an unprivileged daemon has no capabilities)\n');
    return 2;
  }
  if (opts.listenFd !== undefined) {
    // Checked here, in the namespace the socket was made in: inside the sandbox's own network namespace
    // /proc/net/unix no longer lists it.
    try {
      const state = unixSocketState(opts.listenFd);
      if (state !== 'listening' && state !== 'unlisted') {
        process.stderr.write(`virtiofsd-ts: --fd=${opts.listenFd} is ${state === 'not-stream' ? 'not a Unix stream socket'
          : 'a socket that is not listening'}\n`);
        return 1;
      }
      // It must survive the re-exec under the sandbox helper below, but node marks the fds it inherits
      // close-on-exec when it starts; the listener moves it to a close-on-exec fd of its own once it serves.
      const r = native.setCloexec(opts.listenFd, false);
      if (r < 0) throw new Error(`--fd=${opts.listenFd}: ${native.strerror(-r)}`);
    } catch (e) {
      process.stderr.write(`virtiofsd-ts: ${(e as Error).message}\n`);
      return 1;
    }
  }
  // Deno's update check must be off before the filter goes in (host/runtime.ts): one re-exec with it off.
  const runtimeEnv = runtimeNeedsRelaunch(opts.seccomp ?? 'none');
  if (namespaces || dropCaps || runtimeEnv) {
    // Inside the sandbox's own network namespace the host's listening sockets are invisible: check here.
    if (namespaces && opts.socketPath !== undefined && socketInUse(opts.socketPath)) {
      process.stderr.write(`virtiofsd-ts: ${opts.socketPath} is in use: another process is listening on it\n`);
      return 1;
    }
    try {
      relaunch({ namespaces, ...(dropCaps ? { keepCaps } : {}) }); // returns only by throwing
    } catch (e) {
      process.stderr.write(`virtiofsd-ts: ${(e as Error).message}\n`);
      return 1;
    }
  }
  if (opts.syslog) {
    const failed = useSyslog();
    if (failed !== null) log.warn(`--syslog: no system logger (${failed}); logging to stderr`);
  }
  // SIGINT/SIGTERM stop the daemon, also one that comes while it starts (it is closed as soon as it has started).
  let askStop!: () => void;
  const stopAsked = new Promise<void>((resolve) => { askStop = resolve; });
  const stop = (sig: string) => {
    log.info(`${sig}: shutting down`);
    askStop();
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  // SIGUSR1 prints the operation stats once the daemon is up (below). Its listener is in place from here, before the
  // helper forwards signals: without one, a SIGUSR1 would open Node's inspector instead.
  let printStats = (): void => {};
  const onStatsSignal = (): void => printStats();
  process.on('SIGUSR1', onStatsSignal);
  if (insideNamespaceSandbox()) handleSignalsFromHelper();
  let daemon: VirtiofsDaemon;
  try {
    daemon = await VirtiofsDaemon.start(opts);
  } catch (e) {
    const msg = e instanceof VirtiofsdError ? e.message : String((e as Error)?.stack ?? e);
    process.stderr.write(`virtiofsd-ts: ${msg}\n`);
    return 1;
  }
  void stopAsked.then(() => daemon.close());
  limitYoungGeneration();
  // libuv's idle-time metric costs a zero-timeout epoll_pwait before every wait of the loop, that is one syscall
  // per request at depth 1; the daemon owns its process and nothing in it reads the metric.
  if (runtimeName === 'node') {
    const r = native.loopIdleMetricOff();
    if (r < 0) log.debug(`event loop idle metric left on: ${native.strerror(-r)}`);
  }
  const stopShrinking = shrinkWhenIdle(() => daemon.stats().reduce((n, s) => n + s.count, 0),
    () => daemon.fs.compactTables());
  log.info(`${opts.mountpoint !== undefined ? `mounted at ${opts.mountpoint}`
    : `listening on ${opts.socketPath ?? `fd ${opts.listenFd}`}`}, ` +
    `sharing ${opts.sharedDir} (cache=${opts.cache})`);
  // Per-operation counts and latencies, on demand (as the C virtiofsd has none, ours goes to stderr whatever the
  // log level: it was asked for).
  printStats = (): void => void process.stderr.write(`virtiofsd-ts: operation stats\n${daemon.formatStats()}\n`);
  const uninstallStats = installStatsSignal(daemon.listener); // SIGUSR2: one stats line on stderr (host/stats.ts)
  await daemon.closed;
  stopShrinking();
  uninstallStats();
  process.removeListener('SIGUSR1', onStatsSignal);
  return 0;
}

// Run when executed as the CLI (not when imported by tests).
function invokedAsMain(): boolean {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}
if (invokedAsMain()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`virtiofsd-ts: fatal: ${(e as Error)?.stack ?? e}\n`);
      process.exit(1);
    },
  );
}
