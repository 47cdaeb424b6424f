/*
 * socket.c: the vhost-user transport: Unix stream sockets, and messages carrying fds (SCM_RIGHTS).
 */
#include "common.h"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The kernel's SCM_MAX_FD: the most fds one message can carry. Control buffers are sized for it, so surplus
 * fds arrive (and get closed) instead of being truncated. */
#define VFS_MAX_FDS 253

/* Fills a sockaddr_un; -ENAMETOOLONG if path does not fit, 1 = exception pending. */
static int vfs_unix_addr(napi_env env, napi_value v, struct sockaddr_un *addr) {
  char path[VFS_NAME_BUF];
  int rc = vfs_get_name(env, v, path);
  if (rc != 0) return rc;
  size_t n = strlen(path);
  if (n == 0) return -EINVAL;
  if (n >= sizeof addr->sun_path) return -ENAMETOOLONG;
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, path, n + 1);
  return 0;
}

VFS_FN(vfs_unix_listen) {
  VFS_ARGS(env, info, 2);
  int32_t backlog;
  struct sockaddr_un addr;
  if (!vfs_get_i32(env, argv[1], &backlog)) return NULL;
  int rc = vfs_unix_addr(env, argv[0], &addr);
  if (rc > 0) return NULL;
  if (rc < 0) return vfs_int(env, rc);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return vfs_errno(env);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, backlog) < 0) {
    int e = errno;
    close(fd);
    return vfs_int(env, -(int64_t)e);
  }
  return vfs_int(env, fd);
}

VFS_FN(vfs_unix_connect) {
  VFS_ARGS(env, info, 1);
  struct sockaddr_un addr;
  int rc = vfs_unix_addr(env, argv[0], &addr);
  if (rc > 0) return NULL;
  if (rc < 0) return vfs_int(env, rc);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return vfs_errno(env);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int e = errno;
    close(fd);
    return vfs_int(env, -(int64_t)e);
  }
  return vfs_int(env, fd);
}

/* A nonblocking Unix datagram socket, connected to (syslog's /dev/log) or bound at (a log receiver) path. */
VFS_FN(vfs_unix_datagram) {
  VFS_ARGS(env, info, 2);
  bool bind_it;
  struct sockaddr_un addr;
  if (!vfs_get_bool(env, argv[1], &bind_it)) return NULL;
  int rc = vfs_unix_addr(env, argv[0], &addr);
  if (rc > 0) return NULL;
  if (rc < 0) return vfs_int(env, rc);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return vfs_errno(env);
  int r = bind_it ? bind(fd, (struct sockaddr *)&addr, sizeof addr) : connect(fd, (struct sockaddr *)&addr, sizeof addr);
  if (r < 0) {
    int e = errno;
    close(fd);
    return vfs_int(env, -(int64_t)e);
  }
  return vfs_int(env, fd);
}

VFS_FN(vfs_accept) {
  VFS_ARGS(env, info, 1);
  int32_t fd;
  if (!vfs_get_i32(env, argv[0], &fd)) return NULL;
  return vfs_result(env, accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK));
}

VFS_FN(vfs_socketpair) {
  VFS_ARGS(env, info, 1);
  int32_t *out;
  size_t count;
  if (!vfs_get_int32_array(env, argv[0], &out, &count)) return NULL;
  if (count < 2) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "virtiofsd-ts native: socketpair needs an Int32Array(2)");
    return NULL;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return vfs_errno(env);
  out[0] = sv[0];
  out[1] = sv[1];
  return vfs_int(env, 0);
}

/* Control buffer with room for VFS_MAX_FDS descriptors, aligned for struct cmsghdr. */
union vfs_cmsg_buf {
  struct cmsghdr align;
  char buf[CMSG_SPACE(sizeof(int) * VFS_MAX_FDS)];
};

VFS_FN(vfs_recvmsg) {
  VFS_ARGS(env, info, 6);
  int32_t fd, *fds_out;
  uint8_t *mem;
  size_t len, fds_cap;
  int64_t offset, length;
  bool wait_all;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_memory(env, argv[1], &mem, &len)) return NULL;
  if (!vfs_get_i64(env, argv[2], &offset) || !vfs_get_i64(env, argv[3], &length)) return NULL;
  if (!vfs_get_int32_array(env, argv[4], &fds_out, &fds_cap) || !vfs_get_bool(env, argv[5], &wait_all)) return NULL;
  for (size_t i = 0; i < fds_cap; i++) fds_out[i] = -1;
  if (!vfs_in_range(len, offset, length)) return vfs_int(env, -EFAULT);

  union vfs_cmsg_buf control;
  struct iovec iov = {.iov_base = mem + offset, .iov_len = (size_t)length};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                       .msg_controllen = sizeof control.buf};
  ssize_t r;
  do {
    r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | (wait_all ? MSG_WAITALL : 0));
  } while (r < 0 && errno == EINTR);
  if (r < 0) return vfs_errno(env);

  /* Hand out what fits in fds_out, close the rest (and everything if the control data was truncated). */
  bool truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  size_t n = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int rfd;
      memcpy(&rfd, CMSG_DATA(c) + i * sizeof(int), sizeof rfd);
      if (!truncated && n < fds_cap)
        fds_out[n++] = rfd;
      else
        close(rfd);
    }
  }
  if (truncated) {
    for (size_t i = 0; i < n; i++) {
      close(fds_out[i]);
      fds_out[i] = -1;
    }
    return vfs_int(env, -EMSGSIZE);
  }
  return vfs_int(env, r);
}

VFS_FN(vfs_sendmsg) {
  VFS_ARGS(env, info, 5);
  int32_t fd;
  uint8_t *mem;
  size_t len;
  int64_t offset, length;
  uint32_t nfds = 0;
  napi_value lenv;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_memory(env, argv[1], &mem, &len)) return NULL;
  if (!vfs_get_i64(env, argv[2], &offset) || !vfs_get_i64(env, argv[3], &length)) return NULL;
  /* fds: any ArrayLike<number> (Array, Int32Array, ...) */
  NAPI_CALL(env, napi_get_named_property(env, argv[4], "length", &lenv));
  if (!vfs_get_u32(env, lenv, &nfds)) return NULL;
  if (nfds > VFS_MAX_FDS) return vfs_int(env, -EINVAL);
  int fds[VFS_MAX_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value e;
    int32_t v;
    NAPI_CALL(env, napi_get_element(env, argv[4], i, &e));
    if (!vfs_get_i32(env, e, &v)) return NULL;
    fds[i] = v;
  }
  if (!vfs_in_range(len, offset, length)) return vfs_int(env, -EFAULT);

  union vfs_cmsg_buf control;
  struct iovec iov = {.iov_base = mem + offset, .iov_len = (size_t)length};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    memset(control.buf, 0, CMSG_SPACE(sizeof(int) * nfds));
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t r;
  do {
    r = sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
  return vfs_result(env, r);
}

/* Sets or clears `bit` among the flags fcntl(get) reads and fcntl(set) writes. */
static napi_value vfs_fd_flag(napi_env env, napi_callback_info info, int get, int set, int bit) {
  VFS_ARGS(env, info, 2);
  int32_t fd;
  bool on;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_bool(env, argv[1], &on)) return NULL;
  int flags = fcntl(fd, get);
  if (flags < 0) return vfs_errno(env);
  int want = on ? (flags | bit) : (flags & ~bit);
  if (want != flags && fcntl(fd, set, want) < 0) return vfs_errno(env);
  return vfs_int(env, 0);
}

VFS_FN(vfs_set_nonblocking) { return vfs_fd_flag(env, info, F_GETFL, F_SETFL, O_NONBLOCK); }

/* FD_CLOEXEC: an fd the daemon must keep across its own re-exec (an inherited --fd socket). */
VFS_FN(vfs_set_cloexec) { return vfs_fd_flag(env, info, F_GETFD, F_SETFD, FD_CLOEXEC); }

VFS_FN(vfs_shutdown) {
  VFS_ARGS(env, info, 1);
  int32_t fd;
  if (!vfs_get_i32(env, argv[0], &fd)) return NULL;
  return vfs_result(env, shutdown(fd, SHUT_RDWR));
}
