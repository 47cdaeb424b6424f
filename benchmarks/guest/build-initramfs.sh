#!/usr/bin/env bash
# Build the guest benchmark's initramfs: .cache/guest-bench/initramfs-bench.img
# (override the directory with BENCH_GUEST_DIR; the e2e image is read from GUEST_DIR, default .cache/guest).
#
# The image is the e2e initramfs (scripts/build-initramfs.sh: static busybox, virtio/fuse/virtiofs modules)
# with a second cpio archive appended — Linux unpacks concatenated archives in order, later files replacing
# earlier ones — that adds:
#   /lib/modules/bench/*.ko   the 9p client modules of the same Debian kernel (netfs, fscache, 9pnet,
#                             9pnet_virtio, 9p), taken from its .deb (apt-get download, cached)
#   /usr/bin/fio              Debian's fio, its shared libraries (from ldd) and the dynamic loader
#   /bench/workload.sh        benchmarks/guest/workload.sh
#   /init                     the bench init (replaces the e2e one): mounts the share as virtiofs or 9p
#                             (kernel command line `bench_fs=virtiofs|9p`), runs the workload, powers off.
# The appended archive is not compressed: fio's libraries are ~85 MB and gunzip under TCG costs seconds
# at every boot, while QEMU copies an uncompressed initrd into guest RAM at memory speed.
#
# fio is installed with apt-get when it is missing (needs root and the Debian archive).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
GUEST_DIR="${GUEST_DIR:-$ROOT/.cache/guest}"
BENCH_GUEST_DIR="${BENCH_GUEST_DIR:-$ROOT/.cache/guest-bench}"
BASE="$GUEST_DIR/initramfs.cpio.gz"
OUT="$BENCH_GUEST_DIR/initramfs-bench.img"
# Load order; each needs the ones before it (and virtio/virtio_ring from the e2e image).
NINEP_MODULES=(netfs fscache 9pnet 9pnet_virtio 9p)

say() { echo "bench-initramfs: $*"; }
die() { echo "bench-initramfs: $*" >&2; exit 1; }

[[ -s "$BASE" ]] || die "$BASE missing; run scripts/fetch-guest-kernel.sh and scripts/build-initramfs.sh first"
[[ -s "$GUEST_DIR/kernel-version" ]] || die "$GUEST_DIR/kernel-version missing; run scripts/fetch-guest-kernel.sh"
KVER="$(cat "$GUEST_DIR/kernel-version")"
command -v cpio >/dev/null || die "cpio not found (apt-get install cpio)"
command -v ldd >/dev/null || die "ldd not found (libc-bin)"

if ! command -v fio >/dev/null; then
  say "fio missing; apt-get install fio"
  apt-get install -y -q fio >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -q fio >/dev/null; } \
    || die "could not install fio (apt-get install fio)"
fi
FIO="$(command -v fio)"

mkdir -p "$BENCH_GUEST_DIR"

# --- 9p modules of the guest kernel, cached in $BENCH_GUEST_DIR/modules-<version>/ ---
MODCACHE="$BENCH_GUEST_DIR/modules-$KVER"
if [[ ! -f "$MODCACHE/order" ]]; then
  WORK="$(mktemp -d)"
  chmod 755 "$WORK"   # apt-get download may drop privileges to _apt
  say "downloading linux-image-$KVER for the 9p modules"
  # The unsigned package where only that one exists (the 6.12 backport guest, GUEST_KERNEL_SERIES=6.12).
  for pkg in "linux-image-$KVER" "linux-image-$KVER-unsigned"; do
    (cd "$WORK" && apt-get download -q "$pkg" 2>&1 | grep -v -e unsandboxed -e '^Get:' -e '^Fetched' -e '^E:' || true)
    ls "$WORK"/*.deb >/dev/null 2>&1 && break
  done
  DEB="$(ls "$WORK"/*.deb 2>/dev/null | head -n 1 || true)"
  [[ -n "$DEB" ]] || { rm -rf "$WORK"; die "apt-get download linux-image-$KVER produced no .deb"; }
  dpkg -x "$DEB" "$WORK/root"
  MODDIR="$WORK/root/lib/modules/$KVER"
  rm -rf "$MODCACHE.tmp"
  mkdir -p "$MODCACHE.tmp"
  : > "$MODCACHE.tmp/order"
  for mod in "${NINEP_MODULES[@]}"; do
    file="$(find "$MODDIR/kernel" -regextype posix-extended -regex ".*/${mod}\.ko(\.xz|\.zst|\.gz)?" | head -n 1 || true)"
    if [[ -z "$file" ]]; then
      if grep -Eq "/${mod}\.ko$" "$MODDIR/modules.builtin" 2>/dev/null; then
        say "  $mod built in"
        continue
      fi
      if [[ "$mod" == fscache ]]; then
        say "  fscache absent (part of netfs since Linux 6.4)"
        continue
      fi
      rm -rf "$WORK"
      die "module $mod neither in $DEB nor built in"
    fi
    case "$file" in
      *.ko.xz)  xz -dc "$file" > "$MODCACHE.tmp/$mod.ko" ;;
      *.ko.zst) zstd -qdc "$file" > "$MODCACHE.tmp/$mod.ko" ;;
      *.ko.gz)  gzip -dc "$file" > "$MODCACHE.tmp/$mod.ko" ;;
      *)        cp "$file" "$MODCACHE.tmp/$mod.ko" ;;
    esac
    echo "$mod.ko" >> "$MODCACHE.tmp/order"
    say "  $mod module"
  done
  rm -rf "$WORK" "$MODCACHE"
  mv "$MODCACHE.tmp" "$MODCACHE"
fi

# --- the overlay archive ---
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{usr/bin,bench,lib/modules/bench,tmp}
cp "$MODCACHE/order" "$STAGE/lib/modules/bench/"
for ko in "$MODCACHE"/*.ko; do
  [[ -f "$ko" ]] && cp "$ko" "$STAGE/lib/modules/bench/"
done
cp "$FIO" "$STAGE/usr/bin/fio"
# Every library ldd resolves, at the path the loader will look for it, plus the loader itself.
while read -r lib; do
  [[ -n "$lib" && -f "$lib" ]] || continue
  mkdir -p "$STAGE$(dirname "$lib")"
  cp -L "$lib" "$STAGE$lib"
done < <(ldd "$FIO" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
[[ -n "$(ls "$STAGE"/lib64/ld-linux* 2>/dev/null)" ]] || die "no dynamic loader found in ldd $FIO"
cp "$HERE/workload.sh" "$STAGE/bench/workload.sh"
chmod 755 "$STAGE/bench/workload.sh"
FIO_VERSION="$("$FIO" --version)"
echo "$FIO_VERSION" > "$STAGE/bench/fio-version"

cat > "$STAGE/init" <<'INIT'
#!/bin/sh
# guest benchmark init (built by benchmarks/guest/build-initramfs.sh)
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

finish() {
  cd /
  sync
  umount /mnt 2>/dev/null
  echo "E2E-DONE"
  poweroff -f
  exit 1
}

TAG=bench
FS=virtiofs
MSIZE=512000
NINEP_CACHE=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    e2e_tag=*) TAG="${arg#e2e_tag=}" ;;
    bench_fs=*) FS="${arg#bench_fs=}" ;;
    bench_msize=*) MSIZE="${arg#bench_msize=}" ;;
    bench_9p_cache=*) NINEP_CACHE="${arg#bench_9p_cache=}" ;;
  esac
done
echo "E2E-INFO kernel $(uname -r)"

insmod_list() {
  while read -r mod; do
    [ -n "$mod" ] || continue
    insmod "$1/$mod" || { echo "E2E-RESULT insmod fail $mod"; finish; }
  done < "$1/order"
}
insmod_list /lib/modules
[ "$FS" = 9p ] && insmod_list /lib/modules/bench
echo "E2E-RESULT modules ok"

if [ "$FS" = 9p ]; then
  OPTS="trans=virtio,version=9p2000.L,msize=$MSIZE"
  [ -n "$NINEP_CACHE" ] && OPTS="$OPTS,cache=$NINEP_CACHE"
  mount -t 9p -o "$OPTS" "$TAG" /mnt
else
  OPTS=""
  mount -t virtiofs "$TAG" /mnt
fi
if [ $? = 0 ]; then
  echo "E2E-RESULT mount ok fs=$FS tag=$TAG $OPTS"
else
  echo "E2E-RESULT mount fail fs=$FS tag=$TAG $OPTS"
  finish
fi
grep " /mnt " /proc/mounts | sed 's/^/E2E-INFO mount-line /'

cd /mnt
sh /bench/workload.sh /mnt
status=$?
cd /
if [ "$status" = 0 ]; then
  echo "E2E-RESULT workload-exit ok 0"
else
  echo "E2E-RESULT workload-exit fail $status"
fi
finish
INIT
chmod 755 "$STAGE/init"

OVERLAY="$BENCH_GUEST_DIR/overlay.cpio"
(cd "$STAGE" && find . -print0 | sort -z | cpio --null -o -H newc --owner 0:0 --quiet) > "$OVERLAY"
# The gzip member of the e2e image, then the plain archive (cpio pads to 512 bytes; the kernel skips
# zero padding between archives). The kernel takes a plain archive only at a 4-byte aligned offset
# (init/initramfs.c); a gzip member of another length would leave the overlay unread ("invalid magic"),
# so zeros pad the member to the next multiple of 4.
PAD=$(( (4 - $(stat -c %s "$BASE") % 4) % 4 ))
{ cat "$BASE"; head -c "$PAD" /dev/zero; cat "$OVERLAY"; } > "$OUT.tmp"
rm -f "$OVERLAY"
mv "$OUT.tmp" "$OUT"
say "wrote $OUT ($(stat -c %s "$OUT") bytes; $FIO_VERSION, kernel $KVER)"
