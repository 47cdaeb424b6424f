/**
 * The files behind DAX mappings when the filesystem is a PassthroughFs: its own reopen of the inode (through
 * /proc/self/fd, so it works inside the sandbox) and a statx of the inode's fd for the size.
 */
import { native } from '../native-loader.js';
import type { PassthroughFs } from '../passthrough/passthrough-fs.js';
import type { MappingFiles } from './dax-device.js';

const C = native.constants;
const statxBuf = new Uint8Array(256);
const statxView = new DataView(statxBuf.buffer);

export function passthroughMappingFiles(fs: PassthroughFs): MappingFiles {
  return {
    openForMapping: (node, fh, write) => fs.openForMapping(node, fh, write),
    sizeOf: (node) => {
      const inode = fs.inodes.get(node);
      if (inode === undefined) return -C.errno.ENOENT;
      const fd = inode.fd;
      if (fd < 0) return fd;
      const rc = native.statx(fd, '', C.AT_EMPTY_PATH, C.STATX_BASIC_STATS, statxBuf, 0);
      return rc < 0 ? rc : Number(statxView.getBigUint64(40, true)); // stx_size
    },
  };
}
