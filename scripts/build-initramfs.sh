#!/usr/bin/env bash
# Build the end-to-end test guest's initramfs: .cache/guest/initramfs.cpio.gz (override with GUEST_DIR).
#
# Contents: a static busybox (applet symlinks in /bin), the modules listed by fetch-guest-kernel.sh
# in .cache/guest/modules.order, and /init. The init:
#   1. mounts proc, sys, devtmpfs;
#   2. insmods the modules in order;
#   3. mounts `-t virtiofs <tag> /mnt` (tag from the kernel command line `e2e_tag=`, default `e2e`);
#   4. runs `/mnt/.e2e/workload.sh /mnt` — the host writes the workload into the shared directory
#      before boot, so every test chooses its workload without rebuilding this image;
#   5. unmounts, prints `E2E-DONE`, and powers off (`poweroff -f`).
# Lines the host parses: `E2E-RESULT <name> ok|fail <detail>`, `E2E-INFO <key> <value>`, `E2E-DONE`.
#
# Always rebuilds (it takes a second); guest.ts calls it when the image is missing or older than this
# script or the kernel.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GUEST_DIR="${GUEST_DIR:-$ROOT/.cache/guest}"
OUT="$GUEST_DIR/initramfs.cpio.gz"

[[ -f "$GUEST_DIR/modules.order" ]] || {
  echo "build-initramfs: $GUEST_DIR/modules.order missing; run scripts/fetch-guest-kernel.sh first" >&2
  exit 1
}

BUSYBOX="${BUSYBOX:-}"
if [[ -z "$BUSYBOX" ]]; then
  for candidate in /bin/busybox /usr/bin/busybox "$(command -v busybox || true)"; do
    [[ -n "$candidate" && -x "$candidate" ]] && { BUSYBOX="$candidate"; break; }
  done
fi
[[ -n "$BUSYBOX" ]] || { echo "build-initramfs: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
# A dynamically linked busybox would not run in the initramfs (no libc there).
if head -c 4096 "$BUSYBOX" | grep -aq 'ld-linux'; then
  echo "build-initramfs: $BUSYBOX is dynamically linked; install busybox-static" >&2
  exit 1
fi
command -v cpio >/dev/null || { echo "build-initramfs: cpio not found (apt-get install cpio)" >&2; exit 1; }

STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,sbin,dev,proc,sys,mnt,tmp,lib/modules,etc}
cp "$BUSYBOX" "$STAGE/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ "$applet" == busybox ]] && continue
  ln -s busybox "$STAGE/bin/$applet"
done
cp "$GUEST_DIR/modules.order" "$STAGE/lib/modules/order"
while read -r mod; do
  [[ -n "$mod" ]] && cp "$GUEST_DIR/modules/$mod" "$STAGE/lib/modules/$mod"
done < "$GUEST_DIR/modules.order"
# The kernel opens /dev/console for init before devtmpfs is mounted.
mknod -m 600 "$STAGE/dev/console" c 5 1 2>/dev/null || true
mknod -m 666 "$STAGE/dev/null" c 1 3 2>/dev/null || true
echo 'root:x:0:0:root:/:/bin/sh' > "$STAGE/etc/passwd"
echo 'root:x:0:' > "$STAGE/etc/group"

cat > "$STAGE/init" <<'INIT'
#!/bin/sh
# e2e guest init (built by scripts/build-initramfs.sh)
export PATH=/bin:/sbin
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
  # poweroff failed: make the kernel stop (panic=-1 on the command line turns this into an exit)
  exit 1
}

TAG=e2e
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    e2e_tag=*) TAG="${arg#e2e_tag=}" ;;
  esac
done
echo "E2E-INFO kernel $(uname -r)"

loaded=""
while read -r mod; do
  [ -n "$mod" ] || continue
  if insmod "/lib/modules/$mod"; then
    loaded="$loaded ${mod%.ko}"
  else
    echo "E2E-RESULT insmod fail $mod"
    finish
  fi
done < /lib/modules/order
echo "E2E-RESULT modules ok$loaded"

if mount -t virtiofs "$TAG" /mnt; then
  echo "E2E-RESULT mount ok tag=$TAG"
else
  echo "E2E-RESULT mount fail tag=$TAG"
  finish
fi

if [ -f /mnt/.e2e/workload.sh ]; then
  cd /mnt
  sh /mnt/.e2e/workload.sh /mnt
  status=$?
  cd /
  if [ "$status" = 0 ]; then
    echo "E2E-RESULT workload-exit ok 0"
  else
    echo "E2E-RESULT workload-exit fail $status"
  fi
else
  echo "E2E-RESULT workload-exit fail no /mnt/.e2e/workload.sh"
fi
finish
INIT
chmod 755 "$STAGE/init"

mkdir -p "$GUEST_DIR"
(cd "$STAGE" && find . -print0 | sort -z | cpio --null -o -H newc --owner 0:0 --quiet) | gzip -9 > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "build-initramfs: wrote $OUT ($(stat -c %s "$OUT") bytes)"
