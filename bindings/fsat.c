/*
 * fsat.c: fd-relative filesystem syscalls (the PassthroughFs request path).
 * No heap allocation: names are copied to PATH_MAX stack buffers, iovecs to a fixed stack array.
 */
#include "common.h"

#include <sys/vfs.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/file.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

_Static_assert(sizeof(struct statx) == 256, "struct statx is 256 bytes");

VFS_FN(vfs_close) {
  VFS_ARGS(env, info, 1);
  int32_t fd;
  if (!vfs_get_i32(env, argv[0], &fd)) return NULL;
  /* No EINTR retry: on Linux the fd is released even when close reports EINTR. */
  return vfs_result(env, close(fd));
}

VFS_FN(vfs_dup) {
  VFS_ARGS(env, info, 1);
  int32_t fd;
  if (!vfs_get_i32(env, argv[0], &fd)) return NULL;
  return vfs_result(env, fcntl(fd, F_DUPFD_CLOEXEC, 0));
}

VFS_FN(vfs_openat) {
  VFS_ARGS(env, info, 4);
  int32_t dirfd, flags;
  uint32_t mode;
  char path[VFS_NAME_BUF];
  if (!vfs_get_i32(env, argv[0], &dirfd)) return NULL;
  if (!vfs_get_i32(env, argv[2], &flags) || !vfs_get_u32(env, argv[3], &mode)) return NULL;
  VFS_BYTES(env, argv[1], path);
  return vfs_result(env, openat(dirfd, path, flags | O_CLOEXEC, (mode_t)mode));
}

VFS_FN(vfs_statx) {
  VFS_ARGS(env, info, 6);
  int32_t dirfd, flags;
  uint32_t mask;
  int64_t offset;
  uint8_t *mem;
  size_t len;
  char path[VFS_NAME_BUF];
  if (!vfs_get_i32(env, argv[0], &dirfd)) return NULL;
  if (!vfs_get_i32(env, argv[2], &flags) || !vfs_get_u32(env, argv[3], &mask)) return NULL;
  if (!vfs_get_memory(env, argv[4], &mem, &len) || !vfs_get_i64(env, argv[5], &offset)) return NULL;
  VFS_BYTES(env, argv[1], path);
  if (!vfs_in_range(len, offset, sizeof(struct statx))) return vfs_int(env, -EFAULT);
  struct statx stx; /* on the stack, then copied: mem + offset need not be 8-byte aligned */
  if (statx(dirfd, path, flags, mask, &stx) < 0) return vfs_errno(env);
  memcpy(mem + offset, &stx, sizeof stx);
  return vfs_int(env, 0);
}

/*
 * A name given as bytes in memory (a directory listing's record: no string is made for it), copied to `buf` with
 * its NUL. 0, or -EINVAL (empty, or holding '/' or NUL: not one name), -ENAMETOOLONG, -EFAULT (outside mem).
 */
static int vfs_name_in(const uint8_t *mem, size_t len, int64_t offset, int64_t length, char *buf) {
  if (!vfs_in_range(len, offset, length)) return -EFAULT;
  if (length == 0) return -EINVAL;
  if (length > NAME_MAX) return -ENAMETOOLONG;
  const uint8_t *name = mem + offset;
  if (memchr(name, '/', (size_t)length) != NULL || memchr(name, 0, (size_t)length) != NULL) return -EINVAL;
  memcpy(buf, name, (size_t)length);
  buf[length] = 0;
  return 0;
}

/* The arguments statxName and openStatxName share: (dirfd, nameMem, nameOffset, nameLength) first, then from
 * argv[at]: (flags, mask, mem, offset). */
struct vfs_named_statx {
  int32_t dirfd, flags;
  uint32_t mask;
  uint8_t *dst; /* where the struct statx goes */
  char name[NAME_MAX + 1];
};

/* 0, -errno for the caller to return as the result, or 1 with an exception pending. */
static int vfs_get_named_statx(napi_env env, napi_value *argv, int at, struct vfs_named_statx *a) {
  int64_t name_offset, name_length, offset;
  uint8_t *name_mem, *mem;
  size_t name_len, len;
  if (!vfs_get_i32(env, argv[0], &a->dirfd) || !vfs_get_memory(env, argv[1], &name_mem, &name_len) ||
      !vfs_get_i64(env, argv[2], &name_offset) || !vfs_get_i64(env, argv[3], &name_length) ||
      !vfs_get_i32(env, argv[at], &a->flags) || !vfs_get_u32(env, argv[at + 1], &a->mask) ||
      !vfs_get_memory(env, argv[at + 2], &mem, &len) || !vfs_get_i64(env, argv[at + 3], &offset))
    return 1;
  int r = vfs_name_in(name_mem, name_len, name_offset, name_length, a->name);
  if (r < 0) return r;
  if (!vfs_in_range(len, offset, sizeof(struct statx))) return -EFAULT;
  a->dst = mem + offset;
  return 0;
}

/* statxName(dirfd, nameMem, nameOffset, nameLength, flags, mask, mem, offset): statx of one name in dirfd. */
VFS_FN(vfs_statx_name) {
  VFS_ARGS(env, info, 8);
  struct vfs_named_statx a;
  int r = vfs_get_named_statx(env, argv, 4, &a);
  if (r > 0) return NULL;
  if (r < 0) return vfs_int(env, r);
  struct statx stx;
  if (statx(a.dirfd, a.name, a.flags, a.mask, &stx) < 0) return vfs_errno(env);
  memcpy(a.dst, &stx, sizeof stx);
  return vfs_int(env, 0);
}

/*
 * openStatxName(dirfd, nameMem, nameOffset, nameLength, openFlags, flags, mask, mem, offset): openat of one name
 * in dirfd, then statx of the new fd (AT_EMPTY_PATH): a lookup's two syscalls in one call. The fd, or -errno (the
 * fd is closed again when statx fails).
 */
VFS_FN(vfs_open_statx_name) {
  VFS_ARGS(env, info, 9);
  int32_t open_flags;
  struct vfs_named_statx a;
  if (!vfs_get_i32(env, argv[4], &open_flags)) return NULL;
  int r = vfs_get_named_statx(env, argv, 5, &a);
  if (r > 0) return NULL;
  if (r < 0) return vfs_int(env, r);
  int fd = openat(a.dirfd, a.name, open_flags | O_CLOEXEC);
  if (fd < 0) return vfs_errno(env);
  struct statx stx;
  if (statx(fd, "", a.flags | AT_EMPTY_PATH, a.mask, &stx) < 0) {
    int e = errno;
    close(fd);
    return vfs_int(env, -e);
  }
  memcpy(a.dst, &stx, sizeof stx);
  return vfs_int(env, fd);
}

VFS_FN(vfs_mkdirat) {
  VFS_ARGS(env, info, 3);
  int32_t dirfd;
  uint32_t mode;
  char name[VFS_NAME_BUF];
  if (!vfs_get_i32(env, argv[0], &dirfd) || !vfs_get_u32(env, argv[2], &mode)) return NULL;
  VFS_BYTES(env, argv[1], name);
  return vfs_result(env, mkdirat(dirfd, name, (mode_t)mode));
}

VFS_FN(vfs_mknodat) {
  VFS_ARGS(env, info, 4);
  int32_t dirfd;
  uint32_t mode;
  int64_t dev;
  char name[VFS_NAME_BUF];
  if (!vfs_get_i32(env, argv[0], &dirfd) || !vfs_get_u32(env, argv[2], &mode)) return NULL;
  if (!vfs_get_i64(env, argv[3], &dev)) return NULL;
  VFS_BYTES(env, argv[1], name);
  return vfs_result(env, mknodat(dirfd, name, (mode_t)mode, (dev_t)dev));
}

VFS_FN(vfs_symlinkat) {
  VFS_ARGS(env, info, 3);
  int32_t dirfd;
  char target[VFS_NAME_BUF], name[VFS_NAME_BUF];
  if (!vfs_get_i32(env, argv[1], &dirfd)) return NULL;
  VFS_BYTES(env, argv[0], target);
  VFS_BYTES(env, argv[2], name);
  return vfs_result(env, symlinkat(target, dirfd, name));
}

VFS_FN(vfs_readlinkat) {
  VFS_ARGS(env, info, 2);
  int32_t dirfd;
  char name[VFS_NAME_BUF], target[PATH_MAX];
  if (!vfs_get_i32(env, argv[0], &dirfd)) return NULL;
  VFS_BYTES(env, argv[1], name);
  ssize_t n = readlinkat(dirfd, name, target, sizeof target);
  if (n < 0) return vfs_errno(env);
  if ((size_t)n == sizeof target) return vfs_int(env, -ENAMETOOLONG); /* possibly truncated */
  napi_value out;
  NAPI_CALL(env, napi_create_string_latin1(env, target, (size_t)n, &out));
  return out;
}

VFS_FN(vfs_linkat) {
  VFS_ARGS(env, info, 5);
  int32_t olddirfd, newdirfd, flags;
  char oldname[VFS_NAME_BUF], newname[VFS_NAME_BUF];
  if (!vfs_get_i32(env, argv[0], &olddirfd) || !vfs_get_i32(env, argv[2], &newdirfd)) return NULL;
  if (!vfs_get_i32(env, argv[4], &flags)) return NULL;
  VFS_BYTES(env, argv[1], oldname);
  VFS_BYTES(env, argv[3], newname);
  return vfs_result(env, linkat(olddirfd, oldname, newdirfd, newname, flags));
}

VFS_FN(vfs_unlinkat) {
  VFS_ARGS(env, info, 3);
  int32_t dirfd, flags;
  char name[VFS_NAME_BUF];
  if (!vfs_get_i32(env, argv[0], &dirfd) || !vfs_get_i32(env, argv[2], &flags)) return NULL;
  VFS_BYTES(env, argv[1], name);
  return vfs_result(env, unlinkat(dirfd, name, flags));
}

VFS_FN(vfs_renameat2) {
  VFS_ARGS(env, info, 5);
  int32_t olddirfd, newdirfd;
  uint32_t flags;
  char oldname[VFS_NAME_BUF], newname[VFS_NAME_BUF];
  if (!vfs_get_i32(env, argv[0], &olddirfd) || !vfs_get_i32(env, argv[2], &newdirfd)) return NULL;
  if (!vfs_get_u32(env, argv[4], &flags)) return NULL;
  VFS_BYTES(env, argv[1], oldname);
  VFS_BYTES(env, argv[3], newname);
  return vfs_result(env, renameat2(olddirfd, oldname, newdirfd, newname, flags));
}

VFS_FN(vfs_fchmodat) {
  VFS_ARGS(env, info, 3);
  int32_t dirfd;
  uint32_t mode;
  char name[VFS_NAME_BUF];
  if (!vfs_get_i32(env, argv[0], &dirfd) || !vfs_get_u32(env, argv[2], &mode)) return NULL;
  VFS_BYTES(env, argv[1], name);
  return vfs_result(env, fchmodat(dirfd, name, (mode_t)mode, 0));
}

VFS_FN(vfs_fchmod) {
  VFS_ARGS(env, info, 2);
  int32_t fd;
  uint32_t mode;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_u32(env, argv[1], &mode)) return NULL;
  return vfs_result(env, fchmod(fd, (mode_t)mode));
}

VFS_FN(vfs_fchownat) {
  VFS_ARGS(env, info, 5);
  int32_t dirfd, flags;
  int64_t uid, gid; /* -1 (or 0xffffffff) leaves the id unchanged */
  char name[VFS_NAME_BUF];
  if (!vfs_get_i32(env, argv[0], &dirfd) || !vfs_get_i64(env, argv[2], &uid)) return NULL;
  if (!vfs_get_i64(env, argv[3], &gid) || !vfs_get_i32(env, argv[4], &flags)) return NULL;
  VFS_BYTES(env, argv[1], name);
  return vfs_result(env, fchownat(dirfd, name, (uid_t)uid, (gid_t)gid, flags));
}

VFS_FN(vfs_utimensat) {
  VFS_ARGS(env, info, 7);
  int32_t dirfd, flags;
  int64_t asec, ansec, msec, mnsec;
  char name[VFS_NAME_BUF];
  if (!vfs_get_i32(env, argv[0], &dirfd)) return NULL;
  if (!vfs_get_i64(env, argv[2], &asec) || !vfs_get_i64(env, argv[3], &ansec)) return NULL;
  if (!vfs_get_i64(env, argv[4], &msec) || !vfs_get_i64(env, argv[5], &mnsec)) return NULL;
  if (!vfs_get_i32(env, argv[6], &flags)) return NULL;
  VFS_BYTES(env, argv[1], name);
  struct timespec ts[2] = {{.tv_sec = asec, .tv_nsec = ansec}, {.tv_sec = msec, .tv_nsec = mnsec}};
  /* "" with AT_EMPTY_PATH (the fd itself): glibc refuses a NULL path, the kernel (>= 5.8) takes "" directly. */
  return vfs_result(env, utimensat(dirfd, name, ts, flags));
}

/* fstatfsType(fd) -> f_type (the filesystem's magic number, linux/magic.h) or -errno. */
VFS_FN(vfs_fstatfs_type) {
  VFS_ARGS(env, info, 1);
  int32_t fd;
  if (!vfs_get_i32(env, argv[0], &fd)) return NULL;
  struct statfs st;
  if (fstatfs(fd, &st) < 0) return vfs_errno(env);
  napi_value v;
  NAPI_CALL(env, napi_create_double(env, (double)(uint32_t)st.f_type, &v));
  return v;
}

VFS_FN(vfs_fstatvfs) {
  VFS_ARGS(env, info, 2);
  int32_t fd;
  double *out;
  size_t count;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_float64_array(env, argv[1], &out, &count)) return NULL;
  if (count < 8) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "virtiofsd-ts native: fstatvfs needs a Float64Array(8)");
    return NULL;
  }
  struct statvfs st;
  if (fstatvfs(fd, &st) < 0) return vfs_errno(env);
  out[0] = (double)st.f_bsize;
  out[1] = (double)st.f_frsize;
  out[2] = (double)st.f_blocks;
  out[3] = (double)st.f_bfree;
  out[4] = (double)st.f_bavail;
  out[5] = (double)st.f_files;
  out[6] = (double)st.f_ffree;
  out[7] = (double)st.f_namemax;
  return vfs_int(env, 0);
}

VFS_FN(vfs_getdents64) {
  VFS_ARGS(env, info, 4);
  int32_t fd;
  uint8_t *mem;
  size_t len;
  int64_t offset, length;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_memory(env, argv[1], &mem, &len)) return NULL;
  if (!vfs_get_i64(env, argv[2], &offset) || !vfs_get_i64(env, argv[3], &length)) return NULL;
  if (!vfs_in_range(len, offset, length)) return vfs_int(env, -EFAULT);
  if (length > INT_MAX) length = INT_MAX;
  return vfs_result(env, syscall(SYS_getdents64, fd, mem + offset, (size_t)length));
}

VFS_FN(vfs_lseek) {
  VFS_ARGS(env, info, 3);
  int32_t fd, whence;
  int64_t offset;
  napi_valuetype type;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_i32(env, argv[2], &whence)) return NULL;
  NAPI_CALL(env, napi_typeof(env, argv[1], &type));
  if (type == napi_bigint) {
    bool lossless; /* a cookie above 2^63 wraps to its int64 bit pattern, which is what the kernel wants */
    NAPI_CALL(env, napi_get_value_bigint_int64(env, argv[1], &offset, &lossless));
  } else if (!vfs_get_i64(env, argv[1], &offset)) {
    return NULL;
  }
  off_t r = lseek(fd, (off_t)offset, whence);
  napi_value out;
  NAPI_CALL(env, napi_create_bigint_int64(env, r < 0 ? -(int64_t)errno : (int64_t)r, &out));
  return out;
}

VFS_FN(vfs_ftruncate) {
  VFS_ARGS(env, info, 2);
  int32_t fd;
  int64_t size;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_i64(env, argv[1], &size)) return NULL;
  return vfs_result(env, ftruncate(fd, (off_t)size));
}

VFS_FN(vfs_fsync) {
  VFS_ARGS(env, info, 1);
  int32_t fd;
  if (!vfs_get_i32(env, argv[0], &fd)) return NULL;
  return vfs_result(env, fsync(fd));
}

VFS_FN(vfs_fdatasync) {
  VFS_ARGS(env, info, 1);
  int32_t fd;
  if (!vfs_get_i32(env, argv[0], &fd)) return NULL;
  return vfs_result(env, fdatasync(fd));
}

VFS_FN(vfs_fallocate) {
  VFS_ARGS(env, info, 4);
  int32_t fd, mode;
  int64_t offset, length;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_i32(env, argv[1], &mode)) return NULL;
  if (!vfs_get_i64(env, argv[2], &offset) || !vfs_get_i64(env, argv[3], &length)) return NULL;
  return vfs_result(env, fallocate(fd, mode, (off_t)offset, (off_t)length));
}

const struct iovec *vfs_iov_table(const uint8_t *mem, size_t len, int64_t iov_offset, int32_t count, int *err) {
  *err = 0;
  if (count < 0 || count > VFS_IOV_MAX) *err = -EINVAL;
  else if (!vfs_in_range(len, iov_offset, (int64_t)count * (int64_t)sizeof(struct iovec))) *err = -EFAULT;
  else if ((uintptr_t)(mem + iov_offset) % _Alignof(struct iovec) != 0) *err = -EINVAL;
  return *err < 0 ? NULL : (const struct iovec *)(mem + iov_offset);
}

enum vfs_rwv_op { VFS_RWV_READ, VFS_RWV_WRITE, VFS_RWV_READ_NOWAIT, VFS_RWV_WRITE_NOWAIT };

/*
 * Shared body of preadv/pwritev/preadvNowait/pwritevNowait: iovCount `struct iovec` entries at mem[iovOffset] (8-aligned) go to
 * the kernel as they are. Their bases are process addresses the core computed from its memory table (guest RAM as
 * the host mapped it, or the core's linear memory); the kernel answers -EFAULT for an unmapped one.
 */
static napi_value vfs_rwv(napi_env env, napi_callback_info info, enum vfs_rwv_op op) {
  VFS_ARGS(env, info, 5);
  int32_t fd, count;
  uint8_t *mem;
  size_t len;
  int64_t iov_offset, position;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_memory(env, argv[1], &mem, &len)) return NULL;
  if (!vfs_get_i64(env, argv[2], &iov_offset) || !vfs_get_i32(env, argv[3], &count)) return NULL;
  if (!vfs_get_i64(env, argv[4], &position)) return NULL;
  int err;
  const struct iovec *iov = vfs_iov_table(mem, len, iov_offset, count, &err);
  if (iov == NULL) return vfs_int(env, err);
  bool is_write = op == VFS_RWV_WRITE;
  ssize_t r;
  if (op == VFS_RWV_READ_NOWAIT)
    r = preadv2(fd, iov, count, (off_t)position, RWF_NOWAIT); /* -EAGAIN: not in the page cache */
  else if (op == VFS_RWV_WRITE_NOWAIT)
    r = pwritev2(fd, iov, count, (off_t)position, RWF_NOWAIT); /* -EAGAIN would block; -EOPNOTSUPP on some fs */
  else if (position == -1)
    r = is_write ? writev(fd, iov, count) : readv(fd, iov, count);
  else
    r = is_write ? pwritev(fd, iov, count, (off_t)position) : preadv(fd, iov, count, (off_t)position);
  return vfs_result(env, r);
}

VFS_FN(vfs_preadv) { return vfs_rwv(env, info, VFS_RWV_READ); }

VFS_FN(vfs_pwritev) { return vfs_rwv(env, info, VFS_RWV_WRITE); }

VFS_FN(vfs_preadv_nowait) { return vfs_rwv(env, info, VFS_RWV_READ_NOWAIT); }

VFS_FN(vfs_pwritev_nowait) { return vfs_rwv(env, info, VFS_RWV_WRITE_NOWAIT); }

static napi_value vfs_rw(napi_env env, napi_callback_info info, bool is_write) {
  VFS_ARGS(env, info, 3);
  int32_t fd;
  uint8_t *buf;
  size_t len;
  int64_t position;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_memory(env, argv[1], &buf, &len)) return NULL;
  if (!vfs_get_i64(env, argv[2], &position)) return NULL;
  ssize_t r;
  if (position == -1)
    r = is_write ? write(fd, buf, len) : read(fd, buf, len);
  else
    r = is_write ? pwrite(fd, buf, len, (off_t)position) : pread(fd, buf, len, (off_t)position);
  return vfs_result(env, r);
}

VFS_FN(vfs_pread) { return vfs_rw(env, info, false); }

VFS_FN(vfs_pwrite) { return vfs_rw(env, info, true); }

/* ---- extended attributes ----------------------------------------------------------------------------------------
 * Path forms (the caller passes "/proc/self/fd/N" for an O_PATH fd: the magic link lands on the inode itself, a
 * symlink included, and nothing further is followed). A zero length asks for the size only.
 */

/* Reads [offset, offset+length) of a memory argument; returns false on a pending exception, *ok = in range. */
static bool vfs_mem_range(napi_env env, napi_value m, napi_value o, napi_value l, uint8_t **p, int64_t *length,
                          bool *ok) {
  uint8_t *mem;
  size_t len;
  int64_t offset;
  if (!vfs_get_memory(env, m, &mem, &len) || !vfs_get_i64(env, o, &offset) || !vfs_get_i64(env, l, length))
    return false;
  *ok = vfs_in_range(len, offset, *length);
  *p = *ok ? mem + offset : NULL;
  return true;
}

VFS_FN(vfs_getxattr) {
  VFS_ARGS(env, info, 5);
  char path[VFS_NAME_BUF], name[VFS_NAME_BUF];
  uint8_t *p;
  int64_t length;
  bool ok;
  if (!vfs_mem_range(env, argv[2], argv[3], argv[4], &p, &length, &ok)) return NULL;
  VFS_BYTES(env, argv[0], path);
  VFS_BYTES(env, argv[1], name);
  if (!ok) return vfs_int(env, -EFAULT);
  return vfs_result(env, getxattr(path, name, length == 0 ? NULL : p, (size_t)length));
}

VFS_FN(vfs_listxattr) {
  VFS_ARGS(env, info, 4);
  char path[VFS_NAME_BUF];
  uint8_t *p;
  int64_t length;
  bool ok;
  if (!vfs_mem_range(env, argv[1], argv[2], argv[3], &p, &length, &ok)) return NULL;
  VFS_BYTES(env, argv[0], path);
  if (!ok) return vfs_int(env, -EFAULT);
  return vfs_result(env, listxattr(path, length == 0 ? NULL : (char *)p, (size_t)length));
}

VFS_FN(vfs_setxattr) {
  VFS_ARGS(env, info, 6);
  char path[VFS_NAME_BUF], name[VFS_NAME_BUF];
  uint8_t *p;
  int64_t length;
  int32_t flags;
  bool ok;
  if (!vfs_mem_range(env, argv[2], argv[3], argv[4], &p, &length, &ok)) return NULL;
  if (!vfs_get_i32(env, argv[5], &flags)) return NULL;
  VFS_BYTES(env, argv[0], path);
  VFS_BYTES(env, argv[1], name);
  if (!ok) return vfs_int(env, -EFAULT);
  return vfs_result(env, setxattr(path, name, p, (size_t)length, flags));
}

VFS_FN(vfs_removexattr) {
  VFS_ARGS(env, info, 2);
  char path[VFS_NAME_BUF], name[VFS_NAME_BUF];
  VFS_BYTES(env, argv[0], path);
  VFS_BYTES(env, argv[1], name);
  return vfs_result(env, removexattr(path, name));
}

/* ---- whole-file operations -------------------------------------------------------------------------------------- */

VFS_FN(vfs_copy_file_range) {
  VFS_ARGS(env, info, 6);
  int32_t fd_in, fd_out;
  int64_t off_in, off_out, length;
  uint32_t flags;
  if (!vfs_get_i32(env, argv[0], &fd_in) || !vfs_get_i64(env, argv[1], &off_in)) return NULL;
  if (!vfs_get_i32(env, argv[2], &fd_out) || !vfs_get_i64(env, argv[3], &off_out)) return NULL;
  if (!vfs_get_i64(env, argv[4], &length) || !vfs_get_u32(env, argv[5], &flags)) return NULL;
  if (length < 0) return vfs_int(env, -EINVAL);
  loff_t in = off_in, out = off_out;
  return vfs_result(env, copy_file_range(fd_in, &in, fd_out, &out, (size_t)length, flags));
}

VFS_FN(vfs_syncfs) {
  VFS_ARGS(env, info, 1);
  int32_t fd;
  if (!vfs_get_i32(env, argv[0], &fd)) return NULL;
  return vfs_result(env, syncfs(fd));
}

/*
 * fcntl record locks with a struct flock held in a BigInt64Array(5): [l_type, l_whence, l_start, l_len, l_pid].
 * cmd is F_OFD_GETLK / F_OFD_SETLK / F_OFD_SETLKW (or the classic ones); GETLK writes the answer back.
 */
VFS_FN(vfs_fcntl_lock) {
  VFS_ARGS(env, info, 3);
  int32_t fd, cmd;
  int64_t *lk;
  size_t count;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_i32(env, argv[1], &cmd)) return NULL;
  if (!vfs_get_bigint64_array(env, argv[2], &lk, &count)) return NULL;
  if (count < 5) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "virtiofsd-ts native: fcntlLock needs a BigInt64Array(5)");
    return NULL;
  }
  struct flock fl = {.l_type = (short)lk[0], .l_whence = (short)lk[1], .l_start = (off_t)lk[2],
                     .l_len = (off_t)lk[3], .l_pid = 0};
  if (fcntl(fd, cmd, &fl) < 0) return vfs_errno(env);
  lk[0] = fl.l_type;
  lk[1] = fl.l_whence;
  lk[2] = fl.l_start;
  lk[3] = fl.l_len;
  lk[4] = fl.l_pid;
  return vfs_int(env, 0);
}

/* flock(fd, op) with op = LOCK_SH | LOCK_EX | LOCK_UN, optionally | LOCK_NB. */
VFS_FN(vfs_flock) {
  VFS_ARGS(env, info, 2);
  int32_t fd, op;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_i32(env, argv[1], &op)) return NULL;
  return vfs_result(env, flock(fd, op));
}

/* umask(mask): the previous mask (umask cannot fail). Process-wide, so callers restore it at once. */
VFS_FN(vfs_umask) {
  VFS_ARGS(env, info, 1);
  uint32_t mask;
  if (!vfs_get_u32(env, argv[0], &mask)) return NULL;
  return vfs_int(env, (int32_t)umask((mode_t)(mask & 0777)));
}
