/*
 * virtiofsd_native: module registration, argument helpers, constants and strerror.
 * The surface is declared in host/native.d.ts; each function lives in the file named there.
 */
#include "common.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <linux/falloc.h>
#include <linux/seccomp.h>
#include <unistd.h>

/* ---- error and argument helpers ----------------------------------------------------------------------- */

void vfs_throw_status(napi_env env, napi_status status, const char *what) {
  bool pending = false;
  const napi_extended_error_info *info = NULL;
  /* Must come first: any other Node-API call overwrites the last error. */
  if (napi_get_last_error_info(env, &info) != napi_ok) info = NULL;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;

  char msg[256];
  const char *detail = (info != NULL && info->error_message != NULL) ? info->error_message : "failed";
  snprintf(msg, sizeof msg, "virtiofsd-ts native: %s (%s)", detail, what);
  switch (status) {
    case napi_object_expected:
    case napi_string_expected:
    case napi_name_expected:
    case napi_function_expected:
    case napi_number_expected:
    case napi_boolean_expected:
    case napi_array_expected:
    case napi_arraybuffer_expected:
    case napi_bigint_expected:
    case napi_date_expected:
    case napi_detachable_arraybuffer_expected:
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
      break;
    default:
      napi_throw_error(env, NULL, msg);
      break;
  }
}

bool vfs_get_i32(napi_env env, napi_value v, int32_t *out) {
  NAPI_CHECK_OR(env, napi_get_value_int32(env, v, out), false);
  return true;
}

bool vfs_get_u32(napi_env env, napi_value v, uint32_t *out) {
  NAPI_CHECK_OR(env, napi_get_value_uint32(env, v, out), false);
  return true;
}

bool vfs_get_i64(napi_env env, napi_value v, int64_t *out) {
  NAPI_CHECK_OR(env, napi_get_value_int64(env, v, out), false);
  return true;
}

void *vfs_get_tagged(napi_env env, napi_value v, const napi_type_tag *tag, const char *what) {
  napi_valuetype type;
  bool tagged = false;
  void *data = NULL;
  NAPI_CALL(env, napi_typeof(env, v, &type));
  if (type == napi_external) NAPI_CALL(env, napi_check_object_type_tag(env, v, tag, &tagged));
  if (!tagged) {
    char msg[96];
    snprintf(msg, sizeof msg, "virtiofsd-ts native: expected %s", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return NULL;
  }
  NAPI_CALL(env, napi_get_value_external(env, v, &data));
  return data;
}

napi_value vfs_new_tagged(napi_env env, void *data, napi_finalize finalize, const napi_type_tag *tag, bool *owned) {
  napi_value handle;
  *owned = false;
  napi_status s = napi_create_external(env, data, finalize, NULL, &handle);
  if (s != napi_ok) NAPI_CALL(env, s);
  *owned = true; /* from here the external's finalizer frees data, whatever happens next */
  NAPI_CALL(env, napi_type_tag_object(env, handle, tag));
  return handle;
}

int vfs_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(thread, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return e;
}

bool vfs_get_bool(napi_env env, napi_value v, bool *out) {
  NAPI_CHECK_OR(env, napi_get_value_bool(env, v, out), false);
  return true;
}

int vfs_get_name(napi_env env, napi_value v, char *buf) {
  size_t len = 0;
  NAPI_CHECK_OR(env, napi_get_value_string_utf8(env, v, buf, VFS_NAME_BUF, &len), 1);
  /* Node-API copies at most VFS_NAME_BUF-1 = PATH_MAX bytes: a copy that long is a name of >= PATH_MAX bytes,
   * which the kernel would refuse anyway (PATH_MAX counts the NUL). */
  if (len >= PATH_MAX) return -ENAMETOOLONG;
  if (strlen(buf) != len) return -EINVAL; /* embedded NUL: the kernel would see a different name */
  return 0;
}

int vfs_get_bytes(napi_env env, napi_value v, char *buf) {
  size_t len = 0;
  NAPI_CHECK_OR(env, napi_get_value_string_latin1(env, v, buf, VFS_NAME_BUF, &len), 1);
  if (len >= PATH_MAX) return -ENAMETOOLONG;
  if (strlen(buf) != len) return -EINVAL;
  return 0;
}

static size_t vfs_element_size(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array:
      return 1;
    case napi_int16_array:
    case napi_uint16_array:
      return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array:
      return 8;
  }
  return 1;
}

bool vfs_get_memory(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is = false;
  void *p = NULL;

  NAPI_CHECK_OR(env, napi_is_arraybuffer(env, v, &is), false);
  if (is) {
    NAPI_CHECK_OR(env, napi_get_arraybuffer_info(env, v, &p, len), false);
    *data = p;
    return true;
  }
  NAPI_CHECK_OR(env, napi_is_typedarray(env, v, &is), false);
  if (is) {
    napi_typedarray_type type;
    size_t count = 0;
    NAPI_CHECK_OR(env, napi_get_typedarray_info(env, v, &type, &count, &p, NULL, NULL), false);
    *data = p; /* already adjusted by the view's byte offset */
    *len = count * vfs_element_size(type);
    return true;
  }
  NAPI_CHECK_OR(env, napi_is_dataview(env, v, &is), false);
  if (is) {
    NAPI_CHECK_OR(env, napi_get_dataview_info(env, v, len, &p, NULL, NULL), false);
    *data = p;
    return true;
  }
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "virtiofsd-ts native: expected an ArrayBuffer or ArrayBufferView");
  return false;
}

static bool vfs_get_typed(napi_env env, napi_value v, napi_typedarray_type want, const char *name, void **data,
                          size_t *count) {
  bool is = false;
  napi_typedarray_type type;
  NAPI_CHECK_OR(env, napi_is_typedarray(env, v, &is), false);
  if (is) NAPI_CHECK_OR(env, napi_get_typedarray_info(env, v, &type, count, data, NULL, NULL), false);
  if (!is || type != want) {
    char msg[96];
    snprintf(msg, sizeof msg, "virtiofsd-ts native: expected an %s", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  return true;
}

bool vfs_get_int32_array(napi_env env, napi_value v, int32_t **data, size_t *count) {
  void *p = NULL;
  if (!vfs_get_typed(env, v, napi_int32_array, "Int32Array", &p, count)) return false;
  *data = p;
  return true;
}

bool vfs_get_bigint64_array(napi_env env, napi_value v, int64_t **data, size_t *count) {
  void *p = NULL;
  if (!vfs_get_typed(env, v, napi_bigint64_array, "BigInt64Array", &p, count)) return false;
  *data = p;
  return true;
}

bool vfs_get_float64_array(napi_env env, napi_value v, double **data, size_t *count) {
  void *p = NULL;
  if (!vfs_get_typed(env, v, napi_float64_array, "Float64Array", &p, count)) return false;
  *data = p;
  return true;
}

napi_value vfs_int(napi_env env, int64_t v) {
  napi_value out;
  NAPI_CALL(env, napi_create_int64(env, v, &out));
  return out;
}

napi_value vfs_errno(napi_env env) { return vfs_int(env, -(int64_t)errno); }

napi_value vfs_result(napi_env env, int64_t r) { return r < 0 ? vfs_errno(env) : vfs_int(env, r); }

/* ---- strerror ------------------------------------------------------------------------------------------- */

VFS_FN(vfs_strerror) {
  VFS_ARGS(env, info, 1);
  int32_t e;
  if (!vfs_get_i32(env, argv[0], &e)) return NULL;
  char buf[256];
  const char *s = strerror_r(e < 0 ? -e : e, buf, sizeof buf); /* GNU strerror_r returns the message */
  napi_value out;
  NAPI_CALL(env, napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out));
  return out;
}

/* ---- constants ------------------------------------------------------------------------------------------ */

struct vfs_constant {
  const char *name;
  int64_t value;
};

/* Every value comes from the C headers, never typed by hand. */
#define K(name) {#name, (int64_t)(name)}

static const struct vfs_constant vfs_constants[] = {
    /* open(2) (O_LARGEFILE is 0 in 64-bit userspace headers; the kernel ABI bit differs) */
    K(O_RDONLY), K(O_WRONLY), K(O_RDWR), K(O_ACCMODE), K(O_CREAT), K(O_EXCL), K(O_NOCTTY), K(O_TRUNC),
    K(O_APPEND), K(O_NONBLOCK), K(O_DSYNC), K(O_SYNC), K(O_DIRECT), K(O_LARGEFILE), K(O_DIRECTORY),
    K(O_NOFOLLOW), K(O_NOATIME), K(O_CLOEXEC), K(O_PATH), K(O_TMPFILE),
    /* *at flags */
    K(AT_FDCWD), K(AT_EMPTY_PATH), K(AT_SYMLINK_NOFOLLOW), K(AT_SYMLINK_FOLLOW), K(AT_REMOVEDIR),
    K(AT_NO_AUTOMOUNT),
    /* renameat2 */
    K(RENAME_NOREPLACE), K(RENAME_EXCHANGE), K(RENAME_WHITEOUT),
    /* utimensat */
    K(UTIME_NOW), K(UTIME_OMIT),
    /* statx */
    K(STATX_BASIC_STATS), K(STATX_BTIME), K(STATX_MNT_ID), K(STATX_ATTR_MOUNT_ROOT),
    /* file handles */
    K(MAX_HANDLE_SZ),
    /* lseek */
    K(SEEK_SET), K(SEEK_CUR), K(SEEK_END), K(SEEK_DATA), K(SEEK_HOLE),
    /* mode bits */
    K(S_IFMT), K(S_IFREG), K(S_IFDIR), K(S_IFLNK), K(S_IFIFO), K(S_IFSOCK), K(S_IFCHR), K(S_IFBLK),
    K(S_ISUID), K(S_ISGID), K(S_ISVTX), K(S_IXGRP),
    /* xattr flags, fallocate modes */
    K(XATTR_CREATE), K(XATTR_REPLACE), K(F_OFD_GETLK), K(F_OFD_SETLK), K(F_OFD_SETLKW), K(F_RDLCK), K(F_WRLCK),
    K(F_UNLCK), K(LOCK_SH), K(LOCK_EX), K(LOCK_UN), K(LOCK_NB), K(FALLOC_FL_KEEP_SIZE), K(FALLOC_FL_PUNCH_HOLE), K(FALLOC_FL_ZERO_RANGE),
    /* mmap / memfd / eventfd / epoll */
    K(PROT_READ), K(PROT_WRITE), K(MFD_CLOEXEC), K(MFD_ALLOW_SEALING), K(EFD_NONBLOCK), K(EFD_SEMAPHORE),
    K(EPOLLIN), K(EPOLLOUT), K(EPOLLERR), K(EPOLLHUP), K(EPOLLRDHUP), K(EPOLLET),
    /* mount(2) / umount2(2) */
    K(MS_RDONLY), K(MS_NOSUID), K(MS_NODEV), K(MS_NOEXEC), K(MNT_FORCE), K(MNT_DETACH), K(UMOUNT_NOFOLLOW),
    /* seccompInstall's `action` */
    K(SECCOMP_RET_KILL_PROCESS), K(SECCOMP_RET_TRAP), K(SECCOMP_RET_LOG), K(SECCOMP_RET_ALLOW),
    /* io-pool.c's job kinds and thread limit (common.h) */
    K(VFS_POOL_READ), K(VFS_POOL_WRITE), K(VFS_POOL_FSYNC), K(VFS_POOL_FDATASYNC), K(VFS_POOL_FALLOCATE),
    K(VFS_POOL_COPY_FILE_RANGE), K(VFS_POOL_MAX_THREADS),
};

static const struct vfs_constant vfs_errnos[] = {
    K(ENOENT), K(EIO), K(EBADF), K(EAGAIN), K(ENOMEM), K(EACCES), K(EFAULT), K(EBUSY), K(EEXIST),
    K(EXDEV), K(ENODEV), K(ENOTDIR), K(EISDIR), K(EINVAL), K(ENFILE), K(EMFILE), K(ENOTTY), K(EFBIG),
    K(ENOSPC), K(ESPIPE), K(EROFS), K(EMLINK), K(EPIPE), K(ERANGE), K(ENAMETOOLONG), K(ENOSYS),
    K(ENOTEMPTY), K(ELOOP), K(ENODATA), K(EOPNOTSUPP), K(ENOTSUP), K(EOVERFLOW), K(EPROTO), K(EMSGSIZE),
    K(ECONNRESET), K(ENOTCONN), K(EADDRINUSE), K(EINTR), K(EPERM), K(ESRCH), K(ENXIO), K(E2BIG),
    K(ETIMEDOUT), K(ECONNREFUSED), K(ENOTSOCK), K(EWOULDBLOCK), K(ECHILD), K(ENOLCK), K(ESTALE),
    K(EDEADLK), K(ETXTBSY), K(EDQUOT), K(ECANCELED), K(EINPROGRESS), K(EALREADY), K(EADDRNOTAVAIL),
    K(ENOBUFS), K(EISCONN), K(ECONNABORTED), K(ENOMSG), K(EILSEQ), K(EBADMSG), K(ENOTBLK),
};

#undef K

static bool vfs_set_table(napi_env env, napi_value obj, const struct vfs_constant *table, size_t n) {
  for (size_t i = 0; i < n; i++) {
    napi_value v;
    NAPI_CHECK_OR(env, napi_create_int64(env, table[i].value, &v), false);
    NAPI_CHECK_OR(env, napi_set_named_property(env, obj, table[i].name, v), false);
  }
  return true;
}

napi_value vfs_make_constants(napi_env env) {
  napi_value obj, errnos, page;
  NAPI_CALL(env, napi_create_object(env, &obj));
  if (!vfs_set_table(env, obj, vfs_constants, sizeof vfs_constants / sizeof vfs_constants[0])) return NULL;
  NAPI_CALL(env, napi_create_int64(env, (int64_t)sysconf(_SC_PAGESIZE), &page));
  NAPI_CALL(env, napi_set_named_property(env, obj, "PAGE_SIZE", page));
  NAPI_CALL(env, napi_create_object(env, &errnos));
  if (!vfs_set_table(env, errnos, vfs_errnos, sizeof vfs_errnos / sizeof vfs_errnos[0])) return NULL;
  NAPI_CALL(env, napi_object_freeze(env, errnos));
  NAPI_CALL(env, napi_set_named_property(env, obj, "errno", errnos));
  NAPI_CALL(env, napi_object_freeze(env, obj));
  return obj;
}

/* ---- registration --------------------------------------------------------------------------------------- */

#define FN(js, c) {js, NULL, c, NULL, NULL, NULL, napi_enumerable, NULL}

NAPI_MODULE_INIT() {
  static const napi_property_descriptor fns[] = {
      FN("strerror", vfs_strerror),
      /* socket.c */
      FN("unixListen", vfs_unix_listen),
      FN("unixConnect", vfs_unix_connect),
      FN("unixDatagram", vfs_unix_datagram),
      FN("accept", vfs_accept),
      FN("socketpair", vfs_socketpair),
      FN("recvmsg", vfs_recvmsg),
      FN("sendmsg", vfs_sendmsg),
      FN("setNonblocking", vfs_set_nonblocking),
      FN("setCloexec", vfs_set_cloexec),
      FN("shutdown", vfs_shutdown),
      /* mman.c */
      FN("memfdCreate", vfs_memfd_create),
      FN("mmapInto", vfs_mmap_into),
      FN("unmapFrom", vfs_unmap_from),
      FN("addressOf", vfs_address_of),
      FN("windowReserve", vfs_window_reserve),
      FN("windowUnmap", vfs_window_unmap),
      FN("fcntlGetfl", vfs_fcntl_getfl),
      FN("mmapShared", vfs_mmap_shared),
      FN("munmap", vfs_munmap),
      FN("mallocTrim", vfs_malloc_trim),
      /* eventfd.c */
      FN("eventfd", vfs_eventfd),
      FN("eventfdRead", vfs_eventfd_read),
      FN("eventfdWrite", vfs_eventfd_write),
      FN("timerfdCreate", vfs_timerfd_create),
      FN("timerfdArm", vfs_timerfd_arm),
      /* poller.c */
      FN("pollerCreate", vfs_poller_create),
      FN("pollerCreateOnLoop", vfs_poller_create_on_loop),
      FN("pollerAdd", vfs_poller_add),
      FN("pollerRearm", vfs_poller_rearm),
      FN("pollerRemove", vfs_poller_remove),
      FN("pollerClose", vfs_poller_close),
      FN("loopIdleMetricOff", vfs_loop_idle_metric_off),
      FN("epollCreate", vfs_epoll_create),
      FN("epollCtl", vfs_epoll_ctl),
      FN("epollWait", vfs_epoll_wait),
      FN("clockUs", vfs_clock_us),
      /* io-pool.c */
      FN("ioPoolCreate", vfs_io_pool_create),
      FN("ioPoolEventfd", vfs_io_pool_eventfd),
      FN("ioPoolSubmit", vfs_io_pool_submit),
      FN("ioPoolSubmitCall", vfs_io_pool_submit_call),
      FN("ioPoolReap", vfs_io_pool_reap),
      FN("ioPoolPending", vfs_io_pool_pending),
      FN("ioPoolClose", vfs_io_pool_close),
      /* closer.c */
      FN("closerCreate", vfs_closer_create),
      FN("closerAdd", vfs_closer_add),
      FN("closerWake", vfs_closer_wake),
      FN("closerFlush", vfs_closer_flush),
      FN("closerStats", vfs_closer_stats),
      FN("closerClose", vfs_closer_close),
      /* fsat.c */
      FN("preadvNowait", vfs_preadv_nowait),
      FN("pwritevNowait", vfs_pwritev_nowait),
      FN("close", vfs_close),
      FN("dup", vfs_dup),
      FN("openat", vfs_openat),
      FN("statx", vfs_statx),
      FN("statxName", vfs_statx_name),
      FN("openStatxName", vfs_open_statx_name),
      FN("mkdirat", vfs_mkdirat),
      FN("mknodat", vfs_mknodat),
      FN("symlinkat", vfs_symlinkat),
      FN("readlinkat", vfs_readlinkat),
      FN("linkat", vfs_linkat),
      FN("unlinkat", vfs_unlinkat),
      FN("renameat2", vfs_renameat2),
      FN("fchmodat", vfs_fchmodat),
      FN("fchmod", vfs_fchmod),
      FN("fchownat", vfs_fchownat),
      FN("utimensat", vfs_utimensat),
      FN("fstatvfs", vfs_fstatvfs),
      FN("fstatfsType", vfs_fstatfs_type),
      FN("getdents64", vfs_getdents64),
      FN("lseek", vfs_lseek),
      FN("ftruncate", vfs_ftruncate),
      FN("fsync", vfs_fsync),
      FN("fdatasync", vfs_fdatasync),
      FN("fallocate", vfs_fallocate),
      FN("preadv", vfs_preadv),
      FN("pwritev", vfs_pwritev),
      FN("pread", vfs_pread),
      FN("pwrite", vfs_pwrite),
      FN("getxattr", vfs_getxattr),
      FN("listxattr", vfs_listxattr),
      FN("setxattr", vfs_setxattr),
      FN("removexattr", vfs_removexattr),
      FN("copyFileRange", vfs_copy_file_range),
      FN("syncfs", vfs_syncfs),
      FN("fcntlLock", vfs_fcntl_lock),
      FN("flock", vfs_flock),
      FN("umask", vfs_umask),
      /* creds.c */
      FN("setfsuid", vfs_setfsuid),
      FN("setfsgid", vfs_setfsgid),
      FN("getrlimitNofile", vfs_getrlimit_nofile),
      FN("setrlimitNofile", vfs_setrlimit_nofile),
      /* fuse-dev.c */
      FN("mount", vfs_mount),
      FN("umount2", vfs_umount2),
      FN("read", vfs_read),
      FN("write", vfs_write),
      /* handle.c */
      FN("nameToHandleAt", vfs_name_to_handle_at),
      FN("openByHandleAt", vfs_open_by_handle_at),
      /* sandbox.c */
      FN("pivotRoot", vfs_pivot_root),
      FN("chroot", vfs_chroot),
      FN("chdir", vfs_chdir),
      FN("fchdir", vfs_fchdir),
      FN("geteuid", vfs_geteuid),
      FN("execve", vfs_execve),
      FN("sandboxRequest", vfs_sandbox_request),
      /* seccomp.c */
      FN("seccompArch", vfs_seccomp_arch),
      FN("seccompInstall", vfs_seccomp_install),
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns));

  napi_value constants = vfs_make_constants(env);
  if (constants == NULL) return NULL;
  napi_property_descriptor c = {"constants", NULL, NULL, NULL, NULL, constants, napi_enumerable, NULL};
  NAPI_CALL(env, napi_define_properties(env, exports, 1, &c));
  return exports;
}
