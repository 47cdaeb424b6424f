/**
 * Numbers a FileSystem author needs, as plain constants (Linux values; the same on x86-64 and arm64): errno values
 * to return negated (`return -Errno.ENOENT`), file type bits for `Attr.mode`, and dirent types for
 * `DirTarget.add`. test/library.test.ts checks them against the host's own.
 */

/** errno values (include/uapi/asm-generic/errno-base.h, errno.h). Methods return them negated. */
export const Errno = {
  EPERM: 1, ENOENT: 2, EINTR: 4, EIO: 5, ENXIO: 6, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EBUSY: 16,
  EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, ENFILE: 23, EMFILE: 24, ENOTTY: 25,
  EFBIG: 27, ENOSPC: 28, ESPIPE: 29, EROFS: 30, EMLINK: 31, ERANGE: 34, ENAMETOOLONG: 36, ENOSYS: 38,
  ENOTEMPTY: 39, ELOOP: 40, ENODATA: 61, EOVERFLOW: 75, EOPNOTSUPP: 95, ESTALE: 116, EDQUOT: 122,
} as const;

/** File type bits of `mode` (S_IF*). */
export const FileType = {
  S_IFMT: 0o170000, S_IFSOCK: 0o140000, S_IFLNK: 0o120000, S_IFREG: 0o100000, S_IFBLK: 0o060000,
  S_IFDIR: 0o040000, S_IFCHR: 0o020000, S_IFIFO: 0o010000,
} as const;

/** Directory entry types for `DirTarget.add` (DT_*): the file type bits shifted right by 12. */
export const DirentType = {
  DT_UNKNOWN: 0, DT_FIFO: 1, DT_CHR: 2, DT_DIR: 4, DT_BLK: 6, DT_REG: 8, DT_LNK: 10, DT_SOCK: 12,
} as const;

/** RENAME2 flags (`FileSystem.rename`). */
export const RenameFlags = { RENAME_NOREPLACE: 1, RENAME_EXCHANGE: 2, RENAME_WHITEOUT: 4 } as const;

/** open(2) flags a filesystem looks at in `open`/`create` (Linux generic values). */
export const OpenFlags = {
  O_ACCMODE: 0o3, O_RDONLY: 0, O_WRONLY: 1, O_RDWR: 2, O_CREAT: 0o100, O_EXCL: 0o200, O_TRUNC: 0o1000,
  O_APPEND: 0o2000,
} as const;
