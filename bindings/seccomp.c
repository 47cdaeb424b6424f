/*
 * seccomp.c: builds and installs a seccomp allow-list filter (host/sandbox.ts owns the list and the action; here
 * only the BPF and the syscall).
 *
 * The program, for the architecture this addon was compiled for:
 *
 *   ld  arch                 ; seccomp_data.arch
 *   jeq AUDIT_ARCH_<ours>    ; another ABI (i386 through int 0x80 on x86_64): the action, its numbers differ
 *   ld  nr                   ; seccomp_data.nr
 *   (x86_64) jge 0x40000000  ; the x32 ABI shares our arch value, marked by this bit: the action
 *   jeq nr[0] -> ret ALLOW   ; one test per allowed syscall (two instructions each: BPF jumps reach 255 ahead)
 *   ...
 *   ret action               ; anything else
 *
 * Installed with SECCOMP_FILTER_FLAG_TSYNC: the kernel attaches it to every thread of the process at once (V8's
 * platform threads, the libuv pool, our poller), which a per-thread prctl(PR_SET_SECCOMP) could not. no_new_privs
 * is set first (the kernel requires it without CAP_SYS_ADMIN, and TSYNC copies it to every thread).
 */
#include "common.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) && !defined(__ILP32__)
#define VFS_AUDIT_ARCH AUDIT_ARCH_X86_64
#define VFS_ARCH_NAME "x86_64"
#define VFS_X32_SYSCALL_BIT 0x40000000u
#elif defined(__aarch64__)
#define VFS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#define VFS_ARCH_NAME "aarch64"
#else
#define VFS_ARCH_NAME "unsupported"
#endif

#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000u
#endif
#ifndef SECCOMP_RET_LOG
#define SECCOMP_RET_LOG 0x7ffc0000u
#endif

/* The architecture the filter is built for: "x86_64", "aarch64" or "unsupported". */
VFS_FN(vfs_seccomp_arch) {
  napi_value s;
  NAPI_CALL(env, napi_create_string_utf8(env, VFS_ARCH_NAME, NAPI_AUTO_LENGTH, &s));
  return s;
}

/*
 * seccompInstall(syscalls: Int32Array, action: number): 0 or -errno. -ENOSYS: no filter for this architecture;
 * -ESRCH: a thread could not be synchronised (it has a filter of its own that is not an ancestor of ours).
 */
VFS_FN(vfs_seccomp_install) {
  VFS_ARGS(env, info, 2);
  int32_t *nrs;
  size_t count;
  uint32_t action;
  if (!vfs_get_int32_array(env, argv[0], &nrs, &count) || !vfs_get_u32(env, argv[1], &action)) return NULL;
#ifndef VFS_AUDIT_ARCH
  (void)nrs;
  (void)count;
  (void)action;
  return vfs_int(env, -ENOSYS);
#else
  if (action == SECCOMP_RET_ALLOW || count > 1000) return vfs_int(env, -EINVAL);
  size_t cap = 8 + 2 * count;
  struct sock_filter *prog = calloc(cap, sizeof *prog);
  if (prog == NULL) return vfs_int(env, -ENOMEM);
  size_t n = 0;
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, VFS_AUDIT_ARCH, 1, 0);
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, action);
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#ifdef VFS_X32_SYSCALL_BIT
  prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, VFS_X32_SYSCALL_BIT, 0, 1);
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, action);
#endif
  for (size_t i = 0; i < count; i++) {
    prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nrs[i], 0, 1);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  }
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, action);
  struct sock_fprog fprog = {.len = (unsigned short)n, .filter = prog};
  long r = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (r == 0) r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog);
  int e = errno;
  free(prog);
  if (r > 0) return vfs_int(env, -ESRCH); /* TSYNC failed: r is the thread that could not take the filter */
  return vfs_int(env, r < 0 ? -(int64_t)e : 0);
#endif
}
