/**
 * The whole native surface (bindings/, a Node-API addon in C). Loaded by `native-loader.ts`.
 *
 * Conventions, for every function below:
 * - Syscall wrappers (and three mechanisms JS lacks: the poller, the I/O pool, the seccomp program builder; DESIGN.md
 *   "Layers"): numbers/strings in, numbers/fds out. No policy.
 * - A result >= 0 is success; a negative number is `-errno` (e.g. -2 for ENOENT). Nothing throws for a
 *   failed syscall. Functions throw only for programmer errors (wrong argument types), which never
 *   depend on guest input.
 * - `path`/`name` strings are byte strings (one char per byte, `byteString()` in native-loader.ts), passed to the
 *   kernel byte for byte; only socket paths (socket.c) are UTF-8. `""` with AT_EMPTY_PATH means the fd itself.
 * - A "memory" argument is an ArrayBuffer (typically `WebAssembly.Memory#buffer`) or an ArrayBufferView; a byte
 *   offset into it is checked against its length (`-EFAULT` when out of range).
 * - Every fd created is O_CLOEXEC.
 */
export type Memory = ArrayBuffer | ArrayBufferView;

/** Opaque handle of an I/O thread pool (bindings/io-pool.c). */
export interface IoPoolHandle { readonly __ioPool: unique symbol }
export interface CloserHandle { readonly __closer: unique symbol }
/** Opaque handle of a poller thread. */
export interface PollerHandle { readonly __poller: unique symbol }

export interface NativeConstants {
  // open(2)
  O_RDONLY: number; O_WRONLY: number; O_RDWR: number; O_ACCMODE: number; O_CREAT: number; O_EXCL: number;
  O_NOCTTY: number; O_TRUNC: number; O_APPEND: number; O_NONBLOCK: number; O_DSYNC: number; O_SYNC: number;
  O_DIRECT: number; O_LARGEFILE: number; O_DIRECTORY: number; O_NOFOLLOW: number; O_NOATIME: number;
  O_CLOEXEC: number; O_PATH: number; O_TMPFILE: number;
  // *at flags
  AT_FDCWD: number; AT_EMPTY_PATH: number; AT_SYMLINK_NOFOLLOW: number; AT_SYMLINK_FOLLOW: number;
  AT_REMOVEDIR: number; AT_NO_AUTOMOUNT: number;
  // renameat2
  RENAME_NOREPLACE: number; RENAME_EXCHANGE: number; RENAME_WHITEOUT: number;
  // utimensat
  UTIME_NOW: number; UTIME_OMIT: number;
  // statx
  STATX_BASIC_STATS: number; STATX_BTIME: number; STATX_MNT_ID: number;
  /** stx_attributes bit: the path is the root of a mount. */
  STATX_ATTR_MOUNT_ROOT: number;
  /** Largest f_handle payload of a struct file_handle (its 8-byte header not included). */
  MAX_HANDLE_SZ: number;
  // lseek
  SEEK_SET: number; SEEK_CUR: number; SEEK_END: number; SEEK_DATA: number; SEEK_HOLE: number;
  // mode bits
  S_IFMT: number; S_IFREG: number; S_IFDIR: number; S_IFLNK: number; S_IFIFO: number; S_IFSOCK: number;
  S_IFCHR: number; S_IFBLK: number; S_ISUID: number; S_ISGID: number; S_ISVTX: number; S_IXGRP: number;
  // setxattr flags, fallocate modes
  XATTR_CREATE: number; XATTR_REPLACE: number; FALLOC_FL_KEEP_SIZE: number; FALLOC_FL_PUNCH_HOLE: number;
  FALLOC_FL_ZERO_RANGE: number;
  // record locks
  F_OFD_GETLK: number; F_OFD_SETLK: number; F_OFD_SETLKW: number; F_RDLCK: number; F_WRLCK: number; F_UNLCK: number;
  // flock(2) operations
  LOCK_SH: number; LOCK_EX: number; LOCK_UN: number; LOCK_NB: number;
  // mmap / memfd / eventfd / epoll
  PROT_READ: number; PROT_WRITE: number; MFD_CLOEXEC: number; MFD_ALLOW_SEALING: number;
  EFD_NONBLOCK: number; EFD_SEMAPHORE: number; EPOLLIN: number; EPOLLOUT: number; EPOLLERR: number;
  EPOLLHUP: number; EPOLLRDHUP: number; EPOLLET: number;
  // mount(2) flags, umount2(2) flags
  MS_RDONLY: number; MS_NOSUID: number; MS_NODEV: number; MS_NOEXEC: number; MNT_FORCE: number;
  MNT_DETACH: number; UMOUNT_NOFOLLOW: number;
  // seccompInstall's action
  SECCOMP_RET_KILL_PROCESS: number; SECCOMP_RET_TRAP: number; SECCOMP_RET_LOG: number; SECCOMP_RET_ALLOW: number;
  // io-pool.c: job kinds (ioPoolSubmit: READ, WRITE; ioPoolSubmitCall: the rest), most threads
  VFS_POOL_READ: number; VFS_POOL_WRITE: number; VFS_POOL_FSYNC: number; VFS_POOL_FDATASYNC: number;
  VFS_POOL_FALLOCATE: number; VFS_POOL_COPY_FILE_RANGE: number; VFS_POOL_MAX_THREADS: number;
  /** Host page size (sysconf(_SC_PAGESIZE)). */
  PAGE_SIZE: number;
  /** errno values by name: ENOENT, EIO, EBADF, EAGAIN, ENOMEM, EACCES, EFAULT, EBUSY, EEXIST, EXDEV, ENODEV,
   *  ENOTDIR, EISDIR, EINVAL, ENFILE, EMFILE, ENOTTY, EFBIG, ENOSPC, ESPIPE, EROFS, EMLINK, EPIPE, ERANGE,
   *  ENAMETOOLONG, ENOSYS, ENOTEMPTY, ELOOP, ENODATA, EOPNOTSUPP, ENOTSUP, EOVERFLOW, EPROTO, EMSGSIZE,
   *  ECONNRESET, ENOTCONN, EADDRINUSE, EINTR, EPERM, ESRCH, ENXIO, E2BIG, ETIMEDOUT, ECONNREFUSED, ENOTSOCK. */
  errno: Record<string, number>;
}

export interface Native {
  readonly constants: NativeConstants;
  /** strerror(errno) for logs; takes a positive errno. */
  strerror(errno: number): string;

  // ---- socket.c -------------------------------------------------------------------------------------------
  /** socket(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC) + bind + listen. Does not unlink an existing path. */
  unixListen(path: string, backlog: number): number;
  /** Blocking connect to a Unix stream socket; the returned fd is blocking. */
  unixConnect(path: string): number;
  /**
   * socket(AF_UNIX, SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC), then connect (bind false: e.g. syslog's /dev/log) or
   * bind (bind true: a receiver). Messages go with sendmsg and come with recvmsg, one datagram each.
   */
  unixDatagram(path: string, bind: boolean): number;
  /** accept4(fd, SOCK_CLOEXEC|SOCK_NONBLOCK). -EAGAIN when nothing is pending. */
  accept(listenFd: number): number;
  /** socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC); fills out[0], out[1]. */
  socketpair(out: Int32Array): number;
  /**
   * recvmsg into mem[offset, offset+length) with room for SCM_RIGHTS fds. Received fds are written to
   * fdsOut[0..n) and the rest of fdsOut is set to -1; fds beyond fdsOut.length are closed (never leaked).
   * waitAll: MSG_WAITALL. Returns bytes read (0 = peer closed) or -errno (-EAGAIN on an empty nonblocking socket).
   * MSG_CTRUNC is reported as -EMSGSIZE after closing what was received.
   */
  recvmsg(fd: number, mem: Memory, offset: number, length: number, fdsOut: Int32Array, waitAll: boolean): number;
  /** sendmsg of mem[offset, offset+length) with fds (may be empty) as SCM_RIGHTS; MSG_NOSIGNAL. Bytes or -errno. */
  sendmsg(fd: number, mem: Memory, offset: number, length: number, fds: ArrayLike<number>): number;
  /** Sets or clears O_NONBLOCK. */
  setNonblocking(fd: number, on: boolean): number;
  /** Sets or clears FD_CLOEXEC (for an inherited fd the process must keep across its own execve). */
  setCloexec(fd: number, on: boolean): number;
  /** shutdown(fd, SHUT_RDWR). */
  shutdown(fd: number): number;

  // ---- mman.c ---------------------------------------------------------------------------------------------
  /** memfd_create(name, flags | MFD_CLOEXEC). */
  memfdCreate(name: string, flags: number): number;
  /**
   * mmap(base(mem)+offset, length, prot, MAP_SHARED|MAP_FIXED, fd, fileOffset): makes the file's pages appear
   * inside `mem` (e.g. a grown, non-shared WebAssembly.Memory). offset, length and fileOffset must be
   * page-aligned and [offset, offset+length) inside mem; else -EINVAL/-EFAULT.
   */
  mmapInto(mem: Memory, offset: number, length: number, prot: number, fd: number, fileOffset: number): number;
  /**
   * Undoes mmapInto: replaces the range with fresh anonymous private zero pages (MAP_FIXED), so the memory
   * stays valid for its owner. Same checks as mmapInto.
   */
  unmapFrom(mem: Memory, offset: number, length: number): number;
  /** Address of mem's first byte as a number (the core's linear memory base; tests that two views share pages). */
  addressOf(mem: Memory): number;
  /**
   * A DAX cache window: an inaccessible (PROT_NONE, MAP_NORESERVE) anonymous reservation of `length` bytes (a page
   * multiple) as an external ArrayBuffer over it, or -errno. Files go in with mmapInto, back out with windowUnmap;
   * the reservation is unmapped when the buffer is collected. Touching an inaccessible page is SIGSEGV.
   */
  windowReserve(length: number): ArrayBuffer | number;
  /** The range of the window becomes inaccessible again (PROT_NONE anonymous, MAP_FIXED). Checks as mmapInto. */
  windowUnmap(mem: Memory, offset: number, length: number): number;
  /** fcntl(fd, F_GETFL): status flags (access mode under O_ACCMODE), or -errno. */
  fcntlGetfl(fd: number): number;
  /**
   * mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_NORESERVE, fd, fileOffset) (fileOffset
   * page-aligned): a guest memory region mapped whole in the process. The address, or -errno (negative).
   */
  mmapShared(fd: number, length: number, fileOffset: number): bigint;
  /** munmap of an mmapShared mapping. 0 or -errno. */
  munmap(addr: bigint, length: number): number;
  /** malloc_trim(0): free memory of every malloc arena back to the kernel. 1 if some was released, else 0. */
  mallocTrim(): number;

  // ---- eventfd.c ------------------------------------------------------------------------------------------
  /** eventfd(initval, flags | EFD_CLOEXEC). */
  eventfd(initval: number, flags: number): number;
  /** Reads the 8-byte counter; returns it (>= 0, as a number) or -errno (-EAGAIN when zero and nonblocking). */
  eventfdRead(fd: number): number;
  /** Adds value to the counter. 0 or -errno. */
  eventfdWrite(fd: number, value: number): number;
  /**
   * A one-shot CLOCK_MONOTONIC timerfd (nonblocking, cloexec), or -errno. Once fired it is readable as an eventfd
   * is (eventfdRead gives the expiration count), so FdPoller.addEventfd watches it.
   */
  timerfdCreate(): number;
  /** Arms the timer to fire once, `us` µs from now (replacing an earlier arming); 0 disarms. 0 or -errno. */
  timerfdArm(fd: number, us: number): number;

  // ---- poller.c -------------------------------------------------------------------------------------------
  /**
   * Starts a thread that epoll_waits and calls `callback(token, events)` on the JS thread for every ready fd.
   * Registrations are one-shot (EPOLLONESHOT): after a callback the fd is silent until pollerRearm.
   * The poller keeps the event loop alive until pollerClose.
   */
  pollerCreate(callback: (token: number, events: number) => void): PollerHandle;
  /**
   * The same poller without a thread: its epoll fd is watched by this thread's libuv loop, and callbacks run
   * straight from the loop. -ENOSYS where the runtime has no libuv (Bun, Deno); other -errno from libuv.
   */
  pollerCreateOnLoop(callback: (token: number, events: number) => void): PollerHandle | number;
  /**
   * Registers fd (events: EPOLLIN etc.) with a caller-chosen token (int32). 0 or -errno. One-shot, unless events
   * has EPOLLET: then edge-triggered and persistent (an event per new readiness; no rearm, no drain needed).
   */
  pollerAdd(poller: PollerHandle, fd: number, token: number, events: number): number;
  /** Re-enables a one-shot registration. 0 or -errno. */
  pollerRearm(poller: PollerHandle, fd: number, token: number, events: number): number;
  /** Removes fd. 0 or -errno (-ENOENT if not registered). Call before closing the fd. */
  pollerRemove(poller: PollerHandle, fd: number): number;
  /** Stops and joins the thread; pending callbacks are dropped. Idempotent. */
  pollerClose(poller: PollerHandle): void;
  /**
   * Turns off libuv's idle-time metric on this thread's loop (performance.eventLoopUtilization stops counting
   * idle time): each wait of the loop is then one epoll_pwait instead of two. 0 turned off, 1 it was off,
   * -ENOSYS without libuv, -EPROTO for a libuv whose loop fields we do not recognise (left alone). Node only:
   * under Bun (libuv stubs) it aborts; check runtimeName first.
   */
  loopIdleMetricOff(): number;
  /** Raw epoll for worker threads that may block: epoll_create1(EPOLL_CLOEXEC). */
  epollCreate(): number;
  /** epoll_ctl(epfd, op (1 add, 2 del, 3 mod), fd, {events, data.u32 = token}). */
  epollCtl(epfd: number, op: number, fd: number, events: number, token: number): number;
  /** Blocking epoll_wait; fills out with (token, events) pairs; returns the count or -errno. */
  epollWait(epfd: number, out: Int32Array, timeoutMs: number): number;
  /** CLOCK_MONOTONIC in µs modulo 2^30 (a small integer: reading it allocates nothing); compare differences mod 2^30. */
  clockUs(): number;

  // ---- io-pool.c (blocking file I/O off the JS thread; host/passthrough/blocking-io.ts) ---------------------
  /** Starts `threads` (1..64) I/O threads; -EINVAL/-ENOMEM/-errno on failure. */
  ioPoolCreate(threads: number): IoPoolHandle | number;
  /** The completion eventfd (nonblocking; readable while completions wait), or -EBADF once closed. */
  ioPoolEventfd(pool: IoPoolHandle): number;
  /**
   * Queues preadv (op VFS_POOL_READ) or pwritev (VFS_POOL_WRITE) on fd at `position` with the `struct iovec`
   * table at mem[iovOffset] as for preadv below (copied now; the memory its bases point at must stay mapped until
   * the job is reaped).
   * 0, -EAGAIN (all 128 slots busy), -EINVAL, -EFAULT (the table outside mem), -EBADF (closed).
   */
  ioPoolSubmit(pool: IoPoolHandle, op: number, fd: number, mem: Memory, iovOffset: number, iovCount: number,
    position: number, tag: number): number;
  /**
   * Queues a call that takes no memory: fsync(fd) (op VFS_POOL_FSYNC), fdatasync(fd) (VFS_POOL_FDATASYNC),
   * fallocate(fd, mode a0, offset a1, length a2) (VFS_POOL_FALLOCATE), copy_file_range(fd, offset in a0, fd out a1,
   * offset out a2, length a3) (VFS_POOL_COPY_FILE_RANGE). 0 or -errno as ioPoolSubmit; the job's result is the
   * call's (0 or bytes) or -errno.
   */
  ioPoolSubmitCall(pool: IoPoolHandle, op: number, fd: number, a0: number, a1: number, a2: number, a3: number,
    tag: number): number;
  /** Moves finished jobs into out as (tag, bytes or -errno) pairs; returns the pair count. */
  ioPoolReap(pool: IoPoolHandle, out: Float64Array): number;
  /** Jobs submitted and not reaped yet. */
  ioPoolPending(pool: IoPoolHandle): number;
  /** Joins the threads (running jobs finish; queued ones are dropped) and closes the eventfd. Idempotent. */
  ioPoolClose(pool: IoPoolHandle): void;

  // ---- closer.c (fds closed on a thread: an inode's eviction may wait for the disk) -------------------------
  /** Starts the closer's thread; -ENOMEM/-errno on failure. */
  closerCreate(): CloserHandle | number;
  /**
   * Queues `fd` for the closer's thread, which closes it after the next closerWake; nothing may use `fd`
   * afterwards. 0 queued; with the ring (4,096 fds) full or the closer closed, closes it inline: close's 0 or
   * -errno. -EBADF for a negative fd.
   */
  closerAdd(closer: CloserHandle, fd: number): number;
  /** Wakes the thread to close what is queued (once per batch of closerAdd: a wake-up costs an interrupt). */
  closerWake(closer: CloserHandle): void;
  /** Wakes the thread and returns once every fd queued before the call is closed. */
  closerFlush(closer: CloserHandle): void;
  /** [fds handed to the thread so far, fds it has closed so far]. */
  closerStats(closer: CloserHandle): [number, number];
  /** Closes what is queued and joins the thread; later closerAdd calls close inline. Idempotent. */
  closerClose(closer: CloserHandle): void;
  /** preadv2(RWF_NOWAIT) with iovecs as for preadv (fsat.c): bytes, or -EAGAIN when the data is not cached. */
  preadvNowait(fd: number, mem: Memory, iovOffset: number, iovCount: number, position: number): number;
  /**
   * pwritev2(RWF_NOWAIT): bytes (possibly short), -EAGAIN when it would block, -EOPNOTSUPP where the filesystem
   * cannot tell (buffered NOWAIT writes are refused by some).
   */
  pwritevNowait(fd: number, mem: Memory, iovOffset: number, iovCount: number, position: number): number;

  // ---- fsat.c ---------------------------------------------------------------------------------------------
  // Every name/path/target string of this section (and handle.c) is a byte string: one char per byte, 0..255
  // (see byteString in native-loader.ts); readlinkat answers one. Chars above 255 would be cut to their low byte.
  close(fd: number): number;
  dup(fd: number): number;
  openat(dirfd: number, path: string, flags: number, mode: number): number;
  /** statx(dirfd, path, flags, mask) writing the raw `struct statx` (256 bytes) at mem[offset]. */
  statx(dirfd: number, path: string, flags: number, mask: number, mem: Memory, offset: number): number;
  /**
   * statx of one name given as bytes: nameMem[nameOffset, +nameLength) (a listing's record, no string made).
   * -EINVAL for an empty name or one with '/' or NUL.
   */
  statxName(dirfd: number, nameMem: Memory, nameOffset: number, nameLength: number, flags: number, mask: number,
    mem: Memory, offset: number): number;
  /**
   * openat of one name given as bytes, then statx of the new fd (AT_EMPTY_PATH added): a lookup's two syscalls
   * in one call. The fd (owned by the caller), or -errno (closed again when statx fails).
   */
  openStatxName(dirfd: number, nameMem: Memory, nameOffset: number, nameLength: number, openFlags: number,
    flags: number, mask: number, mem: Memory, offset: number): number;
  mkdirat(dirfd: number, name: string, mode: number): number;
  mknodat(dirfd: number, name: string, mode: number, dev: number): number;
  symlinkat(target: string, dirfd: number, name: string): number;
  /** readlinkat; the target as a string, or -errno. */
  readlinkat(dirfd: number, name: string): string | number;
  linkat(olddirfd: number, oldname: string, newdirfd: number, newname: string, flags: number): number;
  unlinkat(dirfd: number, name: string, flags: number): number;
  renameat2(olddirfd: number, oldname: string, newdirfd: number, newname: string, flags: number): number;
  /** fchmodat(dirfd, name, mode, 0) (symlinks are not followed on the host: callers use /proc/self/fd paths). */
  fchmodat(dirfd: number, name: string, mode: number): number;
  fchmod(fd: number, mode: number): number;
  /** fchownat; uid/gid -1 leaves that id unchanged. */
  fchownat(dirfd: number, name: string, uid: number, gid: number, flags: number): number;
  /** utimensat; *Nsec may be UTIME_NOW or UTIME_OMIT. */
  utimensat(dirfd: number, name: string, atimeSec: number, atimeNsec: number, mtimeSec: number,
            mtimeNsec: number, flags: number): number;
  /** fstatvfs into out: [bsize, frsize, blocks, bfree, bavail, files, ffree, namemax]. */
  fstatvfs(fd: number, out: Float64Array): number;
  /** fstatfs(fd).f_type: the filesystem's magic number (linux/magic.h), or -errno. */
  fstatfsType(fd: number): number;
  /** getdents64 into mem[offset, offset+length): raw `struct linux_dirent64` records. Bytes or -errno. */
  getdents64(fd: number, mem: Memory, offset: number, length: number): number;
  /** lseek with a 64-bit offset (directory cookies need all 64 bits). New offset or -errno, as a bigint. */
  lseek(fd: number, offset: bigint, whence: number): bigint;
  ftruncate(fd: number, size: number): number;
  fsync(fd: number): number;
  fdatasync(fd: number): number;
  fallocate(fd: number, mode: number, offset: number, length: number): number;
  /**
   * preadv/pwritev with iovCount `struct iovec` entries { u64 base, u64 length } (16 bytes each, native endian,
   * process addresses) at mem[iovOffset] (8-aligned), passed to the kernel as they are: the array is
   * bounds-checked against mem, the bases are not (the core computes them from its memory table; the kernel
   * answers -EFAULT for an unmapped one). Bytes or -errno. position -1 = the current file position (readv/writev).
   */
  preadv(fd: number, mem: Memory, iovOffset: number, iovCount: number, position: number): number;
  pwritev(fd: number, mem: Memory, iovOffset: number, iovCount: number, position: number): number;
  /** Plain pread/pwrite into/from a view (tests, control plane). Bytes or -errno. */
  pread(fd: number, buf: ArrayBufferView, position: number): number;
  pwrite(fd: number, buf: ArrayBufferView, position: number): number;
  /**
   * getxattr(path, name) into mem[offset, offset+length): the value's size. length 0 asks for the size only
   * (nothing is written); -ERANGE when the value is longer than length. Follows symlinks: pass
   * `/proc/self/fd/N` for an O_PATH fd (the magic link lands on that inode, a symlink included).
   */
  getxattr(path: string, name: string, mem: Memory, offset: number, length: number): number;
  /** listxattr(path) into mem: NUL-terminated names; the byte count. length 0 = size only; -ERANGE if too small. */
  listxattr(path: string, mem: Memory, offset: number, length: number): number;
  /** setxattr(path, name, mem[offset, offset+length), flags: XATTR_CREATE | XATTR_REPLACE). */
  setxattr(path: string, name: string, mem: Memory, offset: number, length: number, flags: number): number;
  removexattr(path: string, name: string): number;
  /** copy_file_range with explicit offsets (the fds' positions do not move). Bytes copied or -errno. */
  copyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, length: number, flags: number): number;
  /** syncfs(fd) (fd must not be O_PATH). */
  syncfs(fd: number): number;
  /**
   * fcntl(fd, cmd, struct flock) for record locks (F_OFD_GETLK/F_OFD_SETLK/F_OFD_SETLKW). `lock` holds
   * [l_type, l_whence, l_start, l_len, l_pid] and receives the kernel's answer (GETLK). 0 or -errno.
   */
  fcntlLock(fd: number, cmd: number, lock: BigInt64Array): number;
  /** flock(fd, op): op = LOCK_SH | LOCK_EX | LOCK_UN, optionally | LOCK_NB. 0 or -errno (-EWOULDBLOCK). */
  flock(fd: number, op: number): number;
  /** umask(mask): the previous mask. Process-wide: set it around one syscall and restore it at once. */
  umask(mask: number): number;

  // ---- handle.c -------------------------------------------------------------------------------------------
  /**
   * name_to_handle_at(dirfd, name, flags) writing the raw `struct file_handle` (u32 handle_bytes, i32
   * handle_type, then the handle; up to 8 + MAX_HANDLE_SZ bytes) at mem[offset]. The mount id, or -errno
   * (-EOPNOTSUPP: the filesystem has no file handles; -EOVERFLOW: the handle does not fit).
   */
  nameToHandleAt(dirfd: number, name: string, flags: number, mem: Memory, offset: number): number;
  /** open_by_handle_at(mountFd, the struct file_handle at mem[offset], flags); an fd or -errno. Needs
   *  CAP_DAC_READ_SEARCH (-EPERM without). */
  openByHandleAt(mountFd: number, mem: Memory, offset: number, flags: number): number;

  // ---- creds.c --------------------------------------------------------------------------------------------
  /**
   * setfsuid/setfsgid of the *calling thread only* (raw syscall; glibc does not broadcast it). Returns the
   * previous id, or -EPERM when the change did not take effect. -1 only reads the current id.
   */
  setfsuid(uid: number): number;
  setfsgid(gid: number): number;
  /** getrlimit(RLIMIT_NOFILE) into out: [soft, hard] (-1 = unlimited). */
  getrlimitNofile(out: Float64Array): number;
  /** setrlimit(RLIMIT_NOFILE, soft, hard) (-1 = unlimited). */
  setrlimitNofile(soft: number, hard: number): number;

  // ---- fuse-dev.c -----------------------------------------------------------------------------------------
  /** mount(2): source, target, fstype, MS_* flags, data (the filesystem's option string). 0 or -errno. */
  mount(source: string, target: string, fstype: string, flags: number, data: string): number;
  /** umount2(2) (flags: MNT_DETACH, MNT_FORCE, UMOUNT_NOFOLLOW). 0 or -errno. */
  umount2(target: string, flags: number): number;
  /**
   * read(2)/write(2) of mem[offset, offset+length) (-EFAULT when outside mem). Bytes or -errno (-EAGAIN on an
   * empty nonblocking fd). One call is one FUSE message on /dev/fuse.
   */
  read(fd: number, mem: Memory, offset: number, length: number): number;
  write(fd: number, mem: Memory, offset: number, length: number): number;

  // ---- sandbox.c ------------------------------------------------------------------------------------------
  /** pivot_root(2) (changes the root and cwd of every thread whose root/cwd was the old root). 0 or -errno. */
  pivotRoot(newRoot: string, putOld: string): number;
  /** chroot(2) (process-wide: all threads share one fs_struct). 0 or -errno. */
  chroot(path: string): number;
  /** chdir(2) (process-wide). 0 or -errno. */
  chdir(path: string): number;
  /** fchdir(2) (process-wide). 0 or -errno. */
  fchdir(fd: number): number;
  geteuid(): number;
  /** execve(2); returns only on failure (-errno). Every other thread ends with the exec. */
  execve(path: string, argv: string[], envp: string[]): number;
  /**
   * One request to the sandbox helper on its socket pair `fd` (bindings/sandbox-helper.c): `op` is the byte 'B'
   * (bind `path` onto itself) or 'P' (pivot_root into `path`, old root detached). 0 or -errno. Blocks.
   */
  sandboxRequest(fd: number, op: number, path: string): number;

  // ---- seccomp.c ------------------------------------------------------------------------------------------
  /** The architecture seccompInstall builds for: 'x86_64', 'aarch64' or 'unsupported'. */
  seccompArch(): string;
  /**
   * Installs an allow-list filter on every thread (SECCOMP_FILTER_FLAG_TSYNC, after PR_SET_NO_NEW_PRIVS): the
   * syscall numbers in `syscalls` pass, anything else (and any other ABI) gets `action`. 0 or -errno (-ENOSYS: no
   * filter for this architecture; -ESRCH: a thread could not take the filter). Cannot be undone.
   */
  seccompInstall(syscalls: Int32Array, action: number): number;
}
