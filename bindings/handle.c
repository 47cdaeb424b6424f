/*
 * handle.c: file handles (name_to_handle_at(2), open_by_handle_at(2)) for an inode table that holds a handle
 * instead of an open fd per inode.
 *
 * A handle travels through JS as the raw `struct file_handle` in caller memory:
 *
 *   0               4               8                         8 + handle_bytes (<= 8 + MAX_HANDLE_SZ)
 *   +---------------+---------------+-------------------------+
 *   | handle_bytes  | handle_type   | f_handle[handle_bytes]  |
 *   +---------------+---------------+-------------------------+
 *
 * No heap allocation: the struct is copied through an aligned stack buffer.
 */
#include "common.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* struct file_handle with its largest payload, aligned for the kernel's u32 fields. */
union vfs_file_handle {
  struct file_handle fh;
  uint8_t bytes[sizeof(struct file_handle) + MAX_HANDLE_SZ];
};

_Static_assert(sizeof(struct file_handle) == 8, "struct file_handle header is 8 bytes");

/*
 * nameToHandleAt(dirfd, name, flags, mem, offset): name_to_handle_at(2) writing the struct file_handle at
 * mem[offset] (room for 8 + MAX_HANDLE_SZ bytes needed). Returns the mount id (>= 0) or -errno.
 */
VFS_FN(vfs_name_to_handle_at) {
  VFS_ARGS(env, info, 5);
  int32_t dirfd, flags;
  int64_t offset;
  uint8_t *mem;
  size_t len;
  char name[VFS_NAME_BUF];
  if (!vfs_get_i32(env, argv[0], &dirfd) || !vfs_get_i32(env, argv[2], &flags)) return NULL;
  if (!vfs_get_memory(env, argv[3], &mem, &len) || !vfs_get_i64(env, argv[4], &offset)) return NULL;
  VFS_BYTES(env, argv[1], name);
  if (!vfs_in_range(len, offset, sizeof(union vfs_file_handle))) return vfs_int(env, -EFAULT);
  union vfs_file_handle h;
  h.fh.handle_bytes = MAX_HANDLE_SZ;
  int mount_id = -1;
  if (name_to_handle_at(dirfd, name, &h.fh, &mount_id, flags) < 0) return vfs_errno(env);
  memcpy(mem + offset, h.bytes, sizeof(struct file_handle) + h.fh.handle_bytes);
  return vfs_int(env, mount_id);
}

/*
 * openByHandleAt(mountFd, mem, offset, flags): open_by_handle_at(2) of the struct file_handle at mem[offset].
 * The fd, or -errno (-EINVAL for a handle_bytes above MAX_HANDLE_SZ; needs CAP_DAC_READ_SEARCH).
 */
VFS_FN(vfs_open_by_handle_at) {
  VFS_ARGS(env, info, 4);
  int32_t mount_fd, flags;
  int64_t offset;
  uint8_t *mem;
  size_t len;
  if (!vfs_get_i32(env, argv[0], &mount_fd) || !vfs_get_i32(env, argv[3], &flags)) return NULL;
  if (!vfs_get_memory(env, argv[1], &mem, &len) || !vfs_get_i64(env, argv[2], &offset)) return NULL;
  if (!vfs_in_range(len, offset, sizeof(struct file_handle))) return vfs_int(env, -EFAULT);
  union vfs_file_handle h;
  memcpy(h.bytes, mem + offset, sizeof(struct file_handle));
  if (h.fh.handle_bytes > MAX_HANDLE_SZ) return vfs_int(env, -EINVAL);
  if (!vfs_in_range(len, offset, sizeof(struct file_handle) + h.fh.handle_bytes)) return vfs_int(env, -EFAULT);
  memcpy(h.bytes + sizeof(struct file_handle), mem + offset + sizeof(struct file_handle), h.fh.handle_bytes);
  return vfs_result(env, open_by_handle_at(mount_fd, &h.fh, flags | O_CLOEXEC));
}
