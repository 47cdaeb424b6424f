/*
 * Shared helpers of the virtiofsd-ts native addon (the surface is host/native.d.ts).
 *
 * Conventions:
 * - A failed syscall is returned as -errno (a JS number); it never throws.
 * - A failed Node-API call is a programmer error (wrong JS types, too few arguments): it throws, through the
 *   single macro NAPI_CHECK_OR (NAPI_CALL is its "return NULL" form used by every napi_callback).
 * - Request-path functions never allocate: names go to PATH_MAX stack buffers, iovecs to a fixed stack array.
 */
#ifndef VIRTIOFSD_COMMON_H
#define VIRTIOFSD_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <node_api.h>
#include <pthread.h>

/* Throws (unless an exception is already pending) a TypeError/Error describing the failed Node-API call. */
void vfs_throw_status(napi_env env, napi_status status, const char *what);

/* Checks one Node-API call; on failure throws and returns __VA_ARGS__ (nothing for void functions). */
#define NAPI_CHECK_OR(env, call, ...)                                                                        \
  do {                                                                                                       \
    napi_status vfs_status_ = (call);                                                                        \
    if (vfs_status_ != napi_ok) {                                                                            \
      vfs_throw_status((env), vfs_status_, #call);                                                           \
      return __VA_ARGS__;                                                                                    \
    }                                                                                                        \
  } while (0)

/* The form used inside napi_callback functions (which return napi_value; NULL = exception pending). */
#define NAPI_CALL(env, call) NAPI_CHECK_OR(env, call, NULL)

/* Most functions take at most this many arguments. */
#define VFS_MAX_ARGS 9

/* Fetches exactly the first n arguments into `argv` (throws TypeError if fewer were passed). */
#define VFS_ARGS(env, info, n)                                                                               \
  napi_value argv[VFS_MAX_ARGS];                                                                             \
  do {                                                                                                       \
    size_t vfs_argc_ = VFS_MAX_ARGS;                                                                         \
    NAPI_CALL(env, napi_get_cb_info((env), (info), &vfs_argc_, argv, NULL, NULL));                           \
    if (vfs_argc_ < (size_t)(n)) {                                                                           \
      napi_throw_type_error((env), "ERR_INVALID_ARG_TYPE", "virtiofsd-ts native: too few arguments");        \
      return NULL;                                                                                           \
    }                                                                                                        \
  } while (0)

/* Argument readers: false = exception pending (caller returns NULL). */
bool vfs_get_i32(napi_env env, napi_value v, int32_t *out);
bool vfs_get_u32(napi_env env, napi_value v, uint32_t *out);
bool vfs_get_i64(napi_env env, napi_value v, int64_t *out);
bool vfs_get_bool(napi_env env, napi_value v, bool *out);
/* The data of an external carrying `tag` (a handle this addon made); else a TypeError naming `what`, and NULL. */
void *vfs_get_tagged(napi_env env, napi_value v, const napi_type_tag *tag, const char *what);
/* A handle for `data`: an external carrying `tag`, whose finalizer `finalize` frees data. NULL with an exception
 * pending on failure; *owned says who frees data then: true, the external was made (its finalizer will, at GC),
 * false, the caller. */
napi_value vfs_new_tagged(napi_env env, void *data, napi_finalize finalize, const napi_type_tag *tag, bool *owned);
/* pthread_create with every signal blocked in the new thread: signals stay with the JS thread (libuv's handlers).
 * 0 or the error number. */
int vfs_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

/*
 * Copies a JS string as UTF-8 into buf (of VFS_NAME_BUF bytes, on the caller's stack).
 * Returns 0, -ENAMETOOLONG (does not fit in PATH_MAX including the NUL) or -EINVAL (embedded NUL);
 * returns 1 if an exception is pending (not a string).
 */
#define VFS_NAME_BUF (PATH_MAX + 1)
int vfs_get_name(napi_env env, napi_value v, char *buf);

/*
 * Copies a JS byte string (one char per byte, 0..255: how host/ carries file names, so that names which are not
 * UTF-8 pass through unchanged) into buf. Same results as vfs_get_name.
 */
int vfs_get_bytes(napi_env env, napi_value v, char *buf);

/* VFS_NAME for a byte-string argument (file names and paths of the *at family). */
#define VFS_BYTES(env, v, buf)                                                                               \
  do {                                                                                                       \
    int vfs_name_rc_ = vfs_get_bytes((env), (v), (buf));                                                     \
    if (vfs_name_rc_ > 0) return NULL;                                                                       \
    if (vfs_name_rc_ < 0) return vfs_int((env), vfs_name_rc_);                                               \
  } while (0)

/* Reads name argument v into the stack buffer buf, returning from the caller on a pending exception (NULL) or
 * with -ENAMETOOLONG/-EINVAL as the JS result. */
#define VFS_NAME(env, v, buf)                                                                                \
  do {                                                                                                       \
    int vfs_name_rc_ = vfs_get_name((env), (v), (buf));                                                      \
    if (vfs_name_rc_ > 0) return NULL;                                                                       \
    if (vfs_name_rc_ < 0) return vfs_int((env), vfs_name_rc_);                                               \
  } while (0)

/* The bytes of an ArrayBuffer or ArrayBufferView (TypedArray/DataView). false = exception pending. */
bool vfs_get_memory(napi_env env, napi_value v, uint8_t **data, size_t *len);

/* Most iovecs one preadv/pwritev takes: the kernel's UIO_MAXIOV; more entries -> -EINVAL (as the kernel answers). */
#define VFS_IOV_MAX 1024

/* io-pool.c's job kinds (ioPoolSubmit: READ, WRITE; ioPoolSubmitCall: the rest) and its most threads; exported
 * in `constants`, so the host names them instead of repeating the numbers. */
enum {
  VFS_POOL_READ = 0, VFS_POOL_WRITE = 1, VFS_POOL_FSYNC = 2, VFS_POOL_FDATASYNC = 3, VFS_POOL_FALLOCATE = 4,
  VFS_POOL_COPY_FILE_RANGE = 5,
};
#define VFS_POOL_MAX_THREADS 64

struct iovec;
/* The `count` `struct iovec` entries at mem[iov_offset] (process addresses, 8-aligned), or NULL with *err
 * -EINVAL (count outside 0..VFS_IOV_MAX, misaligned) or -EFAULT (the table outside mem). (fsat.c) */
const struct iovec *vfs_iov_table(const uint8_t *mem, size_t len, int64_t iov_offset, int32_t count, int *err);

/* An Int32Array / Float64Array argument (TypeError otherwise). false = exception pending. */
bool vfs_get_int32_array(napi_env env, napi_value v, int32_t **data, size_t *count);
bool vfs_get_float64_array(napi_env env, napi_value v, double **data, size_t *count);
bool vfs_get_bigint64_array(napi_env env, napi_value v, int64_t **data, size_t *count);

/* [offset, offset+length) lies inside a buffer of len bytes (offset/length as given by JS, may be negative). */
static inline bool vfs_in_range(size_t len, int64_t offset, int64_t length) {
  return offset >= 0 && length >= 0 && (uint64_t)offset <= len && (uint64_t)length <= len - (uint64_t)offset;
}

/* Result constructors: a number (NULL = exception pending). */
napi_value vfs_int(napi_env env, int64_t v);
/* -errno of the last failed syscall. */
napi_value vfs_errno(napi_env env);
/* r >= 0 ? r : -errno */
napi_value vfs_result(napi_env env, int64_t r);

/* ---- the exported functions, by file ------------------------------------------------------------------- */
#define VFS_FN(name) napi_value name(napi_env env, napi_callback_info info)

/* addon.c */
VFS_FN(vfs_strerror);
napi_value vfs_make_constants(napi_env env);

/* socket.c */
VFS_FN(vfs_unix_listen);
VFS_FN(vfs_unix_connect);
VFS_FN(vfs_unix_datagram);
VFS_FN(vfs_set_cloexec);
VFS_FN(vfs_accept);
VFS_FN(vfs_socketpair);
VFS_FN(vfs_recvmsg);
VFS_FN(vfs_sendmsg);
VFS_FN(vfs_set_nonblocking);
VFS_FN(vfs_shutdown);

/* mman.c */
VFS_FN(vfs_memfd_create);
VFS_FN(vfs_mmap_into);
VFS_FN(vfs_unmap_from);
VFS_FN(vfs_address_of);
VFS_FN(vfs_window_reserve);
VFS_FN(vfs_window_unmap);
VFS_FN(vfs_fcntl_getfl);
VFS_FN(vfs_mmap_shared);
VFS_FN(vfs_munmap);
VFS_FN(vfs_malloc_trim);

/* eventfd.c */
VFS_FN(vfs_eventfd);
VFS_FN(vfs_eventfd_read);
VFS_FN(vfs_eventfd_write);
VFS_FN(vfs_timerfd_create);
VFS_FN(vfs_timerfd_arm);

/* poller.c */
VFS_FN(vfs_poller_create);
VFS_FN(vfs_poller_create_on_loop);
VFS_FN(vfs_poller_add);
VFS_FN(vfs_poller_rearm);
VFS_FN(vfs_poller_remove);
VFS_FN(vfs_poller_close);
VFS_FN(vfs_loop_idle_metric_off);
VFS_FN(vfs_epoll_create);
VFS_FN(vfs_epoll_ctl);
VFS_FN(vfs_epoll_wait);
VFS_FN(vfs_clock_us);

/* io-pool.c */
VFS_FN(vfs_io_pool_create);
VFS_FN(vfs_io_pool_eventfd);
VFS_FN(vfs_io_pool_submit);
VFS_FN(vfs_io_pool_submit_call);
VFS_FN(vfs_io_pool_reap);
VFS_FN(vfs_io_pool_pending);
VFS_FN(vfs_io_pool_close);
/* closer.c */
VFS_FN(vfs_closer_create);
VFS_FN(vfs_closer_add);
VFS_FN(vfs_closer_wake);
VFS_FN(vfs_closer_flush);
VFS_FN(vfs_closer_stats);
VFS_FN(vfs_closer_close);

/* fsat.c */
VFS_FN(vfs_close);
VFS_FN(vfs_dup);
VFS_FN(vfs_openat);
VFS_FN(vfs_statx);
VFS_FN(vfs_statx_name);
VFS_FN(vfs_open_statx_name);
VFS_FN(vfs_mkdirat);
VFS_FN(vfs_mknodat);
VFS_FN(vfs_symlinkat);
VFS_FN(vfs_readlinkat);
VFS_FN(vfs_linkat);
VFS_FN(vfs_unlinkat);
VFS_FN(vfs_renameat2);
VFS_FN(vfs_fchmodat);
VFS_FN(vfs_fchmod);
VFS_FN(vfs_fchownat);
VFS_FN(vfs_utimensat);
VFS_FN(vfs_fstatvfs);
VFS_FN(vfs_fstatfs_type);
VFS_FN(vfs_getdents64);
VFS_FN(vfs_lseek);
VFS_FN(vfs_ftruncate);
VFS_FN(vfs_fsync);
VFS_FN(vfs_fdatasync);
VFS_FN(vfs_fallocate);
VFS_FN(vfs_preadv);
VFS_FN(vfs_pwritev);
VFS_FN(vfs_preadv_nowait);
VFS_FN(vfs_pwritev_nowait);
VFS_FN(vfs_pread);
VFS_FN(vfs_pwrite);
VFS_FN(vfs_getxattr);
VFS_FN(vfs_listxattr);
VFS_FN(vfs_setxattr);
VFS_FN(vfs_removexattr);
VFS_FN(vfs_copy_file_range);
VFS_FN(vfs_syncfs);
VFS_FN(vfs_fcntl_lock);
VFS_FN(vfs_flock);
VFS_FN(vfs_umask);

/* creds.c */
VFS_FN(vfs_setfsuid);
VFS_FN(vfs_setfsgid);
VFS_FN(vfs_getrlimit_nofile);
VFS_FN(vfs_setrlimit_nofile);

/* fuse-dev.c */
VFS_FN(vfs_mount);
VFS_FN(vfs_umount2);
VFS_FN(vfs_read);
VFS_FN(vfs_write);

/* handle.c */
VFS_FN(vfs_name_to_handle_at);
VFS_FN(vfs_open_by_handle_at);

/* sandbox.c */
VFS_FN(vfs_pivot_root);
VFS_FN(vfs_chroot);
VFS_FN(vfs_chdir);
VFS_FN(vfs_fchdir);
VFS_FN(vfs_geteuid);
VFS_FN(vfs_execve);
VFS_FN(vfs_sandbox_request);

/* seccomp.c */
VFS_FN(vfs_seccomp_arch);
VFS_FN(vfs_seccomp_install);

#endif /* VIRTIOFSD_COMMON_H */
