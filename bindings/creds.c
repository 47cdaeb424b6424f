/*
 * creds.c: per-thread filesystem credentials and the fd limit.
 *
 * setfsuid/setfsgid go through the raw syscall: Linux credentials are per thread, and glibc only broadcasts the
 * set*id calls POSIX makes process-wide (setuid, setgid, setgroups, ...), never setfsuid. So only the calling
 * thread (the JS thread that serves FUSE requests) changes; libuv's pool threads keep the daemon's identity.
 */
#include "common.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The syscalls return the previous value and never an error; success is seen by asking again with -1. */
static napi_value vfs_set_fsid(napi_env env, napi_callback_info info, long nr) {
  VFS_ARGS(env, info, 1);
  int64_t id;
  if (!vfs_get_i64(env, argv[0], &id)) return NULL;
  long prev = syscall(nr, (unsigned int)(uint32_t)id);
  if (id == -1) return vfs_int(env, (int64_t)(uint32_t)prev);
  long now = syscall(nr, (unsigned int)-1);
  return vfs_int(env, (uint32_t)now == (uint32_t)id ? (int64_t)(uint32_t)prev : -EPERM);
}

VFS_FN(vfs_setfsuid) { return vfs_set_fsid(env, info, SYS_setfsuid); }

VFS_FN(vfs_setfsgid) { return vfs_set_fsid(env, info, SYS_setfsgid); }

VFS_FN(vfs_getrlimit_nofile) {
  VFS_ARGS(env, info, 1);
  double *out;
  size_t count;
  if (!vfs_get_float64_array(env, argv[0], &out, &count)) return NULL;
  if (count < 2) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "virtiofsd-ts native: getrlimitNofile needs a Float64Array(2)");
    return NULL;
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return vfs_errno(env);
  out[0] = rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur;
  out[1] = rl.rlim_max == RLIM_INFINITY ? -1 : (double)rl.rlim_max;
  return vfs_int(env, 0);
}

VFS_FN(vfs_setrlimit_nofile) {
  VFS_ARGS(env, info, 2);
  int64_t soft, hard;
  if (!vfs_get_i64(env, argv[0], &soft) || !vfs_get_i64(env, argv[1], &hard)) return NULL;
  struct rlimit rl = {.rlim_cur = soft < 0 ? RLIM_INFINITY : (rlim_t)soft,
                      .rlim_max = hard < 0 ? RLIM_INFINITY : (rlim_t)hard};
  return vfs_result(env, setrlimit(RLIMIT_NOFILE, &rl));
}
