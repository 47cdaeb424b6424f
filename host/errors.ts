/** Typed errors of the host. The request path never throws: it returns -errno. These are for setup and control. */

export class VirtiofsdError extends Error {
  /** A permanent, greppable code, e.g. `VU_ERR_INVALID_MESSAGE`. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A failed syscall, shaped like Node's own system errors. */
export class SystemError extends VirtiofsdError {
  readonly errno: number;
  readonly syscall: string;
  readonly path?: string;
  constructor(syscall: string, errno: number, message: string, path?: string) {
    super('ERR_SYSTEM', `${syscall}${path ? ` ${path}` : ''}: ${message} (errno ${errno})`);
    this.errno = errno;
    this.syscall = syscall;
    this.path = path;
  }
}

/** A vhost-user protocol or transport failure. `reconnect` says whether the frontend may connect again. */
export class VhostUserError extends VirtiofsdError {
  readonly reconnect: boolean;
  readonly errno?: number;
  constructor(code: string, message: string, opts: { reconnect?: boolean; errno?: number; cause?: unknown } = {}) {
    super(code, message, { cause: opts.cause });
    this.reconnect = opts.reconnect ?? true;
    this.errno = opts.errno;
  }
}

/** A bad option or configuration; the CLI prints the message and exits non-zero. */
export class ConfigError extends VirtiofsdError {
  constructor(message: string) {
    super('ERR_CONFIG', message);
  }
}
