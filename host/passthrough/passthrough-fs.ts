/**
 * PassthroughFs: shares one host directory with the guest.
 *
 * Safety rules (the guest is untrusted):
 * - Every operation is relative to an fd: `*at` calls on the O_PATH fds the InodeStore holds, the fd itself with
 *   AT_EMPTY_PATH, or `/proc/self/fd/N` (an fd-relative name under an O_PATH fd of /proc/self/fd) where a syscall
 *   has no fd form (chmod, utimes, truncate and open of an O_PATH inode, link). No path string is ever joined.
 * - Names from the guest are one component: empty names and names containing `/` or NUL are refused with EINVAL;
 *   `.` and `..` are refused (EPERM) for everything but LOOKUP, and LOOKUP of `..` at the root is the root.
 * - Symlinks are never followed on the host: lookups open with O_NOFOLLOW, creation with O_NOFOLLOW|O_EXCL, stat
 *   with AT_SYMLINK_NOFOLLOW, and a symlink node cannot be opened or used as a directory.
 * - Special files (CVE-2020-35517 class): MKNOD of a char/block device is EPERM unless `allowMknodDevices` (the
 *   overlayfs whiteout, char 0:0, excepted), and OPEN/CREATE of anything but a regular file is refused (ENXIO), so
 *   the daemon never opens a host device or blocks on a FIFO. test/escape.test.ts checks each of these rules.
 *
 * Credentials (credentials.ts): the guest kernel checks permissions itself (virtio-fs mounts with
 * default_permissions, and it knows the caller's supplementary groups, which FUSE 7.37 does not send us). So the
 * daemon switches its fsuid/fsgid to the caller's only where the caller's identity decides the outcome: creating a
 * node (MKNOD, MKDIR, SYMLINK, CREATE of a new file, TMPFILE): the host kernel then gives the node its owner and
 * group (a setgid parent's group included) and applies its own setgid stripping. Everything else runs with the
 * daemon's identity, so a guest user's access through a supplementary group is not refused on the host.
 * - CVE-2022-0358 class: the daemon keeps its own supplementary groups (setgroups is process-wide), so the host
 *   kernel could let a caller keep S_ISGID on a file created in a setgid directory whose group only the daemon is
 *   in. New non-directories therefore lose S_ISGID here first when the parent is setgid, the caller is not root and
 *   its gid is not the parent's group.
 * - Killpriv (FUSE_HANDLE_KILLPRIV_V2): FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID with a size change and
 *   FUSE_OPEN_KILL_SUIDGID with O_TRUNC clear setuid, and setgid when group-executable, as the kernel does for an
 *   unprivileged writer; chown by the daemon clears them by itself; security.capability goes on write, truncate
 *   and chown by the host kernel.
 *
 * Layout: one class, one file per family of FUSE operations, each family a subclass of the one before, so that every
 * operation is a plain method of PassthroughFs (no forwarding call or allocation per request) and all of it is type
 * checked. A family uses only what PassthroughBase has, never another family's methods: the order of the chain is
 * just the order of the FUSE spec.
 *   passthrough-base.ts  PassthroughBase: state (inode-store.ts, handle-table.ts, credentials.ts), shared steps
 *   entry-ops.ts         EntryOps: LOOKUP FORGET MKNOD MKDIR SYMLINK LINK UNLINK RMDIR RENAME CREATE TMPFILE
 *   attr-ops.ts          AttrOps: GETATTR SETATTR STATFS ACCESS READLINK
 *   data-ops.ts          DataOps: OPEN READ WRITE FLUSH RELEASE FSYNC FALLOCATE LSEEK COPY_FILE_RANGE SYNCFS
 *   dir-ops.ts           DirOps: OPENDIR READDIR READDIRPLUS RELEASEDIR FSYNCDIR
 *   xattr-ops.ts         XattrOps: GETXATTR LISTXATTR SETXATTR REMOVEXATTR
 *   lock-ops.ts          LockOps: GETLK SETLK SETLKW (POSIX and flock)
 * blocking-io.ts (BlockingIo, --thread-pool-size) serves the data families' calls that may sleep on a thread pool.
 */
import type { FileSystem } from '../fuse/filesystem.js';
import { LockOps } from './lock-ops.js';

export { checkName, type PassthroughOptions } from './passthrough-base.js';

export class PassthroughFs extends LockOps implements FileSystem {
  destroy(): void {
    this.dropLocks();
    this.handles.clear();
    this.inodes.clear();
  }
}
