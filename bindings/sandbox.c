/*
 * sandbox.c: the syscalls of the sandbox set-up (host/sandbox.ts has the policy). Each function is one syscall.
 * mount/umount2 are fuse-dev.c's; the flags they take are in `constants`.
 *
 * pivot_root, chroot and chdir change the root/cwd of the whole process: every thread of a pthread process shares
 * one fs_struct (CLONE_FS), so libuv's pool threads and V8's workers move with the JS thread.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

VFS_FN(vfs_pivot_root) {
  VFS_ARGS(env, info, 2);
  char new_root[VFS_NAME_BUF], put_old[VFS_NAME_BUF];
  VFS_NAME(env, argv[0], new_root);
  VFS_NAME(env, argv[1], put_old);
  return vfs_result(env, syscall(SYS_pivot_root, new_root, put_old));
}

VFS_FN(vfs_chroot) {
  VFS_ARGS(env, info, 1);
  char path[VFS_NAME_BUF];
  VFS_NAME(env, argv[0], path);
  return vfs_result(env, chroot(path));
}

VFS_FN(vfs_chdir) {
  VFS_ARGS(env, info, 1);
  char path[VFS_NAME_BUF];
  VFS_NAME(env, argv[0], path);
  return vfs_result(env, chdir(path));
}

VFS_FN(vfs_fchdir) {
  VFS_ARGS(env, info, 1);
  int32_t fd;
  if (!vfs_get_i32(env, argv[0], &fd)) return NULL;
  return vfs_result(env, fchdir(fd));
}

VFS_FN(vfs_geteuid) { return vfs_int(env, (int64_t)geteuid()); }

/* A JS array of strings as a NULL-terminated, heap-allocated char* array (freed by vfs_free_strv). */
static char **vfs_get_strv(napi_env env, napi_value arr) {
  bool is = false;
  NAPI_CHECK_OR(env, napi_is_array(env, arr, &is), NULL);
  if (!is) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "virtiofsd-ts native: expected an array of strings");
    return NULL;
  }
  uint32_t n = 0;
  NAPI_CHECK_OR(env, napi_get_array_length(env, arr, &n), NULL);
  char **v = calloc((size_t)n + 1, sizeof *v);
  if (v == NULL) {
    napi_throw_error(env, NULL, "virtiofsd-ts native: out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value s;
    size_t len = 0;
    napi_status st = napi_get_element(env, arr, i, &s);
    if (st == napi_ok) st = napi_get_value_string_utf8(env, s, NULL, 0, &len);
    if (st == napi_ok && (v[i] = malloc(len + 1)) == NULL) st = napi_generic_failure;
    if (st == napi_ok) st = napi_get_value_string_utf8(env, s, v[i], len + 1, &len);
    if (st != napi_ok) {
      vfs_throw_status(env, st, "string array element");
      for (uint32_t k = 0; k <= i; k++) free(v[k]);
      free(v);
      return NULL;
    }
  }
  return v;
}

static void vfs_free_strv(char **v) {
  if (v == NULL) return;
  for (char **p = v; *p != NULL; p++) free(*p);
  free(v);
}

/* execve(path, argv, envp), stdio kept open: only returns on failure (-errno). The kernel ends every other thread. */
VFS_FN(vfs_execve) {
  VFS_ARGS(env, info, 3);
  char path[VFS_NAME_BUF];
  VFS_NAME(env, argv[0], path);
  char **av = vfs_get_strv(env, argv[1]);
  if (av == NULL) return NULL;
  char **ev = vfs_get_strv(env, argv[2]);
  if (ev == NULL) {
    vfs_free_strv(av);
    return NULL;
  }
  /* libuv marks the stdio fds close-on-exec; the new program must keep them. */
  for (int fd = 0; fd <= 2; fd++) {
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0 && (fl & FD_CLOEXEC)) fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
  }
  /* A sampling profiler (node --cpu-prof) signals this thread with SIGPROF until the exec ends its thread. A signal
   * pending at the exec stays pending, and the new program meets it with the default action: termination. Ignored,
   * a pending SIGPROF is discarded and later ones are dropped; the disposition survives the exec, and the runtime
   * started next resets it (node does at start-up) or installs its own profiler's handler. */
  struct sigaction ignore, saved;
  memset(&ignore, 0, sizeof(ignore));
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPROF, &ignore, &saved);
  execve(path, av, ev);
  int e = errno;
  sigaction(SIGPROF, &saved, NULL);
  vfs_free_strv(av);
  vfs_free_strv(ev);
  return vfs_int(env, -(int64_t)e);
}

/*
 * One request to the sandbox helper over its socket pair (bindings/sandbox-helper.c has the protocol): sends
 * op + path + NUL as one SOCK_SEQPACKET message and waits for the int reply. 0, -errno of the helper's syscall, or
 * -errno of the exchange itself (-EPIPE: the helper has closed the channel). Blocking: start-up only.
 */
VFS_FN(vfs_sandbox_request) {
  VFS_ARGS(env, info, 3);
  int32_t fd, op;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_i32(env, argv[1], &op)) return NULL;
  char path[VFS_NAME_BUF];
  VFS_NAME(env, argv[2], path);
  size_t len = strlen(path);
  if (op <= 0 || op > 127 || len > 4096) return vfs_int(env, -EINVAL);
  char msg[1 + 4096 + 1];
  msg[0] = (char)op;
  memcpy(msg + 1, path, len + 1);
  ssize_t n;
  do n = send(fd, msg, len + 2, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return vfs_errno(env);
  int reply = 0;
  do n = recv(fd, &reply, sizeof reply, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return vfs_errno(env);
  if (n != (ssize_t)sizeof reply) return vfs_int(env, -EPIPE);
  return vfs_int(env, -(int64_t)reply);
}
