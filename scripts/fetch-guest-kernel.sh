#!/usr/bin/env bash
# Fetch the Debian guest kernel used by the end-to-end tests.
#
# Puts into .cache/guest/ (override with GUEST_DIR):
#   vmlinuz            the kernel image (bzImage)
#   vmlinux            the same kernel uncompressed (ELF): QEMU boots it through its PVH entry point,
#                      which skips the bzImage's decompression (seconds under TCG); absent if extraction failed
#   modules/*.ko       the virtio / fuse / virtiofs modules, decompressed, that exist as modules
#   modules.order      the insmod order (one file name a line)
#   kernel-version     e.g. 6.1.0-57-amd64
#
# The kernel package is the one `linux-image-amd64` depends on, fetched with `apt-get download`
# and unpacked with `dpkg -x`. Idempotent: does nothing when the files are already there.
#
# GUEST_KERNEL_SERIES=6.12 fetches the newest Debian 12 backport of that series instead
# (`linux-image-6.12.*+deb12-amd64-unsigned`, the first kernel whose virtiofs driver spreads requests over
# several request queues) into .cache/guest-6.12/ by default; the default guest in .cache/guest/ is left alone.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SERIES="${GUEST_KERNEL_SERIES:-}"
if [[ -n "$SERIES" ]]; then
  GUEST_DIR="${GUEST_DIR:-$ROOT/.cache/guest-$SERIES}"
else
  GUEST_DIR="${GUEST_DIR:-$ROOT/.cache/guest}"
fi

# Loaded in this order by the guest's /init; those built into the kernel are skipped.
WANTED_MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci fuse virtiofs)

if [[ -s "$GUEST_DIR/vmlinuz" && -f "$GUEST_DIR/modules.order" && -s "$GUEST_DIR/kernel-version" ]]; then
  echo "fetch-guest-kernel: present in $GUEST_DIR ($(cat "$GUEST_DIR/kernel-version"))"
  exit 0
fi

for tool in apt-get apt-cache dpkg xz; do
  command -v "$tool" >/dev/null || { echo "fetch-guest-kernel: '$tool' is required" >&2; exit 1; }
done

resolve_package() {
  if [[ -n "$SERIES" ]]; then
    # The unsigned flavour of the series with the highest version that has a candidate.
    apt-cache pkgnames "linux-image-$SERIES." 2>/dev/null \
      | grep -E "^linux-image-${SERIES//./\\.}\.[0-9]+\+deb[0-9]+-amd64-unsigned$" | sort -V -r \
      | while read -r name; do
          policy="$(apt-cache policy "$name" 2>/dev/null)"
          if [[ "$policy" == *"Candidate: "[0-9]* ]]; then echo "$name"; break; fi
        done
    return
  fi
  apt-cache depends linux-image-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: *\(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1
}

PKG="$(resolve_package || true)"
if [[ -z "$PKG" ]]; then
  echo "fetch-guest-kernel: package lists missing or stale; running apt-get update" >&2
  apt-get update -qq
  PKG="$(resolve_package || true)"
fi
if [[ -z "$PKG" ]]; then
  echo "fetch-guest-kernel: could not resolve the package that linux-image-amd64 depends on" >&2
  exit 1
fi
VERSION="${PKG#linux-image-}"
VERSION="${VERSION%-unsigned}"
echo "fetch-guest-kernel: $PKG"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"   # apt-get download may drop privileges to _apt
(cd "$WORK" && apt-get download -q "$PKG" 2>&1 | grep -v 'unsandboxed' || true)
DEB="$(ls "$WORK"/*.deb 2>/dev/null | head -n 1 || true)"
if [[ -z "$DEB" ]]; then
  echo "fetch-guest-kernel: apt-get download $PKG produced no .deb" >&2
  exit 1
fi
dpkg -x "$DEB" "$WORK/root"

MODDIR="$WORK/root/lib/modules/$VERSION"
[[ -d "$MODDIR" ]] || MODDIR="$(ls -d "$WORK"/root/lib/modules/* | head -n 1)"
VMLINUZ="$WORK/root/boot/vmlinuz-$VERSION"
[[ -f "$VMLINUZ" ]] || { echo "fetch-guest-kernel: no $VMLINUZ in $DEB" >&2; exit 1; }

STAGE="$WORK/out"
mkdir -p "$STAGE/modules"
cp "$VMLINUZ" "$STAGE/vmlinuz"

# The bzImage carries the kernel ELF as a compressed payload: find its magic, decompress from there
# (the decompressor stops at the payload's end; trailing bytes only make it complain), keep the first
# result that is an ELF file.
extract_vmlinux() {
  local image="$1" out="$2" magic tool offset
  for spec in 'fd377a585a00:xz -dc' '1f8b0800:gzip -dc' '28b52ffd:zstd -qdc'; do
    magic="${spec%%:*}"
    tool="${spec#*:}"
    command -v "${tool%% *}" >/dev/null || continue
    printf "$(echo "$magic" | sed 's/../\\x&/g')" > "$WORK/magic"
    for offset in $(LC_ALL=C grep -aboF -f "$WORK/magic" "$image" | cut -d: -f1 | head -n 4); do
      tail -c +"$((offset + 1))" "$image" | $tool > "$out" 2>/dev/null || true
      if [[ "$(head -c 4 "$out" | od -An -tx1 | tr -d ' ')" == 7f454c46 ]]; then
        return 0
      fi
    done
  done
  rm -f "$out"
  return 1
}
if extract_vmlinux "$VMLINUZ" "$STAGE/vmlinux"; then
  echo "fetch-guest-kernel:   vmlinux extracted ($(stat -c %s "$STAGE/vmlinux") bytes)"
else
  echo "fetch-guest-kernel:   no vmlinux extracted; the guest boots the bzImage"
fi
: > "$STAGE/modules.order"
for mod in "${WANTED_MODULES[@]}"; do
  # Module files may use '-' or '_' in their names; match both.
  pattern="$(echo "$mod" | sed 's/[-_]/[-_]/g')"
  file="$(find "$MODDIR/kernel" -regextype posix-extended \
            -regex ".*/${pattern}\.ko(\.xz|\.zst|\.gz)?" | head -n 1 || true)"
  if [[ -z "$file" ]]; then
    if grep -Eq "/${pattern}\.ko$" "$MODDIR/modules.builtin" 2>/dev/null; then
      echo "fetch-guest-kernel:   $mod built in"
    else
      echo "fetch-guest-kernel:   $mod absent (neither module nor built in)"
    fi
    continue
  fi
  out="$STAGE/modules/$mod.ko"
  case "$file" in
    *.ko.xz)  xz -dc "$file" > "$out" ;;
    *.ko.zst) zstd -qdc "$file" > "$out" ;;
    *.ko.gz)  gzip -dc "$file" > "$out" ;;
    *.ko)     cp "$file" "$out" ;;
  esac
  echo "$mod.ko" >> "$STAGE/modules.order"
  echo "fetch-guest-kernel:   $mod module ($(basename "$file"))"
done
echo "$VERSION" > "$STAGE/kernel-version"

mkdir -p "$(dirname "$GUEST_DIR")"
rm -rf "$GUEST_DIR.tmp"
mv "$STAGE" "$GUEST_DIR.tmp"
rm -rf "$GUEST_DIR"
mv "$GUEST_DIR.tmp" "$GUEST_DIR"
echo "fetch-guest-kernel: ready in $GUEST_DIR"
