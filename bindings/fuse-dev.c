/*
 * fuse-dev.c: what the /dev/fuse transport needs beyond fsat.c: mount(2), umount2(2), and plain read(2)/write(2)
 * between an fd and a memory (the core's linear memory: a request lands where the core reads it, a reply is
 * written from where the core put it, no copy in JS).
 */
#include "common.h"

#include <sys/mount.h>
#include <unistd.h>

VFS_FN(vfs_mount) {
  VFS_ARGS(env, info, 5);
  char source[VFS_NAME_BUF], target[VFS_NAME_BUF], fstype[VFS_NAME_BUF], data[VFS_NAME_BUF];
  int64_t flags;
  if (!vfs_get_i64(env, argv[3], &flags)) return NULL;
  VFS_NAME(env, argv[0], source);
  VFS_NAME(env, argv[1], target);
  VFS_NAME(env, argv[2], fstype);
  VFS_NAME(env, argv[4], data);
  return vfs_result(env, mount(source, target, fstype, (unsigned long)flags, data));
}

VFS_FN(vfs_umount2) {
  VFS_ARGS(env, info, 2);
  char target[VFS_NAME_BUF];
  int32_t flags;
  if (!vfs_get_i32(env, argv[1], &flags)) return NULL;
  VFS_NAME(env, argv[0], target);
  return vfs_result(env, umount2(target, flags));
}

/* read(fd, mem + offset, length) / write(fd, mem + offset, length); [offset, offset+length) must lie in mem. */
static napi_value vfs_rw(napi_env env, napi_callback_info info, bool writing) {
  VFS_ARGS(env, info, 4);
  int32_t fd;
  int64_t offset, length;
  uint8_t *mem;
  size_t len;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_memory(env, argv[1], &mem, &len)) return NULL;
  if (!vfs_get_i64(env, argv[2], &offset) || !vfs_get_i64(env, argv[3], &length)) return NULL;
  if (!vfs_in_range(len, offset, length)) return vfs_int(env, -EFAULT);
  ssize_t r = writing ? write(fd, mem + offset, (size_t)length) : read(fd, mem + offset, (size_t)length);
  return vfs_result(env, r);
}

VFS_FN(vfs_read) { return vfs_rw(env, info, false); }

VFS_FN(vfs_write) { return vfs_rw(env, info, true); }
