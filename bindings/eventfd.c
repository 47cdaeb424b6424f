/* eventfd.c: vhost-user kick/call/err notifiers, and the timers that end a queue's batch windows. */
#include "common.h"

#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

VFS_FN(vfs_eventfd) {
  VFS_ARGS(env, info, 2);
  uint32_t initval;
  int32_t flags;
  if (!vfs_get_u32(env, argv[0], &initval) || !vfs_get_i32(env, argv[1], &flags)) return NULL;
  return vfs_result(env, eventfd(initval, flags | EFD_CLOEXEC));
}

VFS_FN(vfs_eventfd_read) {
  VFS_ARGS(env, info, 1);
  int32_t fd;
  if (!vfs_get_i32(env, argv[0], &fd)) return NULL;
  uint64_t value;
  ssize_t r = read(fd, &value, sizeof value);
  if (r < 0) return vfs_errno(env);
  if (r != sizeof value) return vfs_int(env, -EIO); /* not an eventfd */
  napi_value out;
  /* The counter is at most 2^64-2; exact as a number up to 2^53, which notifications never approach. */
  NAPI_CALL(env, napi_create_double(env, (double)value, &out));
  return out;
}

VFS_FN(vfs_eventfd_write) {
  VFS_ARGS(env, info, 2);
  int32_t fd;
  int64_t v;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_i64(env, argv[1], &v)) return NULL;
  uint64_t value = (uint64_t)v;
  ssize_t r = write(fd, &value, sizeof value);
  if (r < 0) return vfs_errno(env);
  if (r != sizeof value) return vfs_int(env, -EIO);
  return vfs_int(env, 0);
}

/* timerfdCreate(): a one-shot CLOCK_MONOTONIC timer fd, nonblocking and close-on-exec; readable (an 8-byte
 * expiration count, as an eventfd's counter) once it fires. */
VFS_FN(vfs_timerfd_create) {
  (void)info;
  return vfs_result(env, timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
}

/* timerfdArm(fd, us): fires once `us` µs from now (replacing any earlier arming); 0 disarms. 0 or -errno. */
VFS_FN(vfs_timerfd_arm) {
  VFS_ARGS(env, info, 2);
  int32_t fd;
  uint32_t us;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_u32(env, argv[1], &us)) return NULL;
  struct itimerspec t = {.it_value = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000}};
  return vfs_result(env, timerfd_settime(fd, 0, &t, NULL));
}
