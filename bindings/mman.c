/*
 * mman.c: memfd_create and mapping files into the pages of a JS buffer (guest RAM inside the core's
 * WebAssembly.Memory, see DESIGN.md "Guest memory inside the core").
 */
#include "common.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

VFS_FN(vfs_memfd_create) {
  VFS_ARGS(env, info, 2);
  uint32_t flags;
  char name[VFS_NAME_BUF];
  if (!vfs_get_u32(env, argv[1], &flags)) return NULL;
  VFS_NAME(env, argv[0], name);
  return vfs_result(env, memfd_create(name, flags | MFD_CLOEXEC));
}

/*
 * Resolves mem[offset, offset+length) to an address and checks it for a MAP_FIXED mapping:
 * 0 and *addr on success, -EFAULT outside mem, -EINVAL for an unaligned or empty range, 1 = exception pending.
 */
static int vfs_map_target(napi_env env, napi_value memv, napi_value offv, napi_value lenv, uint8_t **addr,
                          size_t *length) {
  uint8_t *mem;
  size_t len;
  int64_t offset, n;
  if (!vfs_get_memory(env, memv, &mem, &len)) return 1;
  if (!vfs_get_i64(env, offv, &offset) || !vfs_get_i64(env, lenv, &n)) return 1;
  if (!vfs_in_range(len, offset, n)) return -EFAULT;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = (uintptr_t)(mem + offset);
  if (n == 0 || start % page != 0 || (uint64_t)n % page != 0) return -EINVAL;
  *addr = (uint8_t *)start;
  *length = (size_t)n;
  return 0;
}

VFS_FN(vfs_mmap_into) {
  VFS_ARGS(env, info, 6);
  int32_t prot, fd;
  int64_t file_offset;
  uint8_t *addr;
  size_t length;
  if (!vfs_get_i32(env, argv[3], &prot) || !vfs_get_i32(env, argv[4], &fd)) return NULL;
  if (!vfs_get_i64(env, argv[5], &file_offset)) return NULL;
  int rc = vfs_map_target(env, argv[0], argv[1], argv[2], &addr, &length);
  if (rc > 0) return NULL;
  if (rc < 0) return vfs_int(env, rc);
  if (file_offset < 0 || (uint64_t)file_offset % (uint64_t)sysconf(_SC_PAGESIZE) != 0)
    return vfs_int(env, -EINVAL);
  /* MAP_FIXED replaces the buffer's own pages in place: the buffer's owner keeps using the same addresses. */
  void *p = mmap(addr, length, prot, MAP_SHARED | MAP_FIXED, fd, (off_t)file_offset);
  if (p == MAP_FAILED) return vfs_errno(env);
  return vfs_int(env, 0);
}

/* Replaces mem[offset, offset+length) with anonymous private pages of `prot` (MAP_FIXED). */
static napi_value vfs_map_anonymous_over(napi_env env, napi_callback_info info, int prot, int extra_flags) {
  VFS_ARGS(env, info, 3);
  uint8_t *addr;
  size_t length;
  int rc = vfs_map_target(env, argv[0], argv[1], argv[2], &addr, &length);
  if (rc > 0) return NULL;
  if (rc < 0) return vfs_int(env, rc);
  void *p = mmap(addr, length, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | extra_flags, -1, 0);
  if (p == MAP_FAILED) return vfs_errno(env);
  return vfs_int(env, 0);
}

/* Not munmap: a hole inside a WebAssembly.Memory would fault on the next access. Fresh zero pages instead. */
VFS_FN(vfs_unmap_from) {
  return vfs_map_anonymous_over(env, info, PROT_READ | PROT_WRITE, 0);
}

VFS_FN(vfs_address_of) {
  VFS_ARGS(env, info, 1);
  uint8_t *mem;
  size_t len;
  if (!vfs_get_memory(env, argv[0], &mem, &len)) return NULL;
  napi_value out;
  NAPI_CALL(env, napi_create_double(env, (double)(uintptr_t)mem, &out));
  return out;
}

/* Unmaps a reserved DAX window when its ArrayBuffer is collected. `hint` carries the length. */
static void vfs_window_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

/*
 * windowReserve(length): an inaccessible (PROT_NONE) anonymous reservation of `length` bytes (page multiple), as an
 * external ArrayBuffer whose memory is that reservation: the cache window of a DAX frontend. File ranges are
 * mapped into it with mmapInto (MAP_FIXED) and given back with windowUnmap. Returns the ArrayBuffer, or -errno.
 * The reservation is released when the buffer is collected.
 */
VFS_FN(vfs_window_reserve) {
  VFS_ARGS(env, info, 1);
  int64_t n;
  if (!vfs_get_i64(env, argv[0], &n)) return NULL;
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  if (n <= 0 || (uint64_t)n % page != 0) return vfs_int(env, -EINVAL);
  void *p = mmap(NULL, (size_t)n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return vfs_errno(env);
  napi_value out;
  napi_status st = napi_create_external_arraybuffer(env, p, (size_t)n, vfs_window_finalize, (void *)(uintptr_t)n, &out);
  if (st != napi_ok) {
    munmap(p, (size_t)n);
    vfs_throw_status(env, st, "napi_create_external_arraybuffer");
    return NULL;
  }
  return out;
}

/* windowUnmap(mem, offset, length): the range becomes inaccessible again (PROT_NONE), dropping the file pages. */
VFS_FN(vfs_window_unmap) {
  return vfs_map_anonymous_over(env, info, PROT_NONE, MAP_NORESERVE);
}

/* fcntlGetfl(fd): the file status flags (the access mode in O_ACCMODE), or -errno. */
VFS_FN(vfs_fcntl_getfl) {
  VFS_ARGS(env, info, 1);
  int32_t fd;
  if (!vfs_get_i32(env, argv[0], &fd)) return NULL;
  return vfs_result(env, fcntl(fd, F_GETFL));
}

/*
 * mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_NORESERVE, fd, fileOffset): a guest memory region
 * mapped whole somewhere in the process (windowed mode: the addresses payload iovecs carry). Returns the address
 * as a BigInt, or a negative BigInt -errno.
 */
VFS_FN(vfs_mmap_shared) {
  VFS_ARGS(env, info, 3);
  int32_t fd;
  int64_t length, file_offset;
  napi_value out;
  if (!vfs_get_i32(env, argv[0], &fd) || !vfs_get_i64(env, argv[1], &length)) return NULL;
  if (!vfs_get_i64(env, argv[2], &file_offset)) return NULL;
  int64_t r;
  if (length <= 0 || file_offset < 0 || (uint64_t)file_offset % (uint64_t)sysconf(_SC_PAGESIZE) != 0) {
    r = -EINVAL;
  } else {
    void *p = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, (off_t)file_offset);
    r = p == MAP_FAILED ? -errno : (int64_t)(uintptr_t)p;
  }
  NAPI_CALL(env, napi_create_bigint_int64(env, r, &out));
  return out;
}

/* munmap(addr, length) of a mapping made by mmapShared. 0 or -errno. */
VFS_FN(vfs_munmap) {
  VFS_ARGS(env, info, 2);
  int64_t length;
  uint64_t addr;
  bool lossless;
  NAPI_CALL(env, napi_get_value_bigint_uint64(env, argv[0], &addr, &lossless));
  if (!vfs_get_i64(env, argv[1], &length)) return NULL;
  if (!lossless || length <= 0) return vfs_int(env, -EINVAL);
  return vfs_result(env, munmap((void *)(uintptr_t)addr, (size_t)length));
}

/*
 * malloc_trim(0): gives the free memory of every malloc arena back to the kernel. The engine's helper threads
 * (compilers, GC) leave arenas with megabytes free after start-up and after bursts; nothing else returns them.
 * 1 if memory was released, else 0.
 */
VFS_FN(vfs_malloc_trim) {
  (void)info;
  return vfs_int(env, malloc_trim(0));
}
