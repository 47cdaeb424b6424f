#!/usr/bin/env bash
# Fetches Debian 12's arm64 nodejs with the libraries it needs and unpacks them (dpkg-deb -x, nothing installed)
# into $ARM64_NODE_DIR/root (default .cache/arm64-node/root), so that the linux-arm64 prebuilt can be loaded on an
# x86 machine under qemu-user: `qemu-aarch64-static -L ROOT ROOT/usr/bin/node ...` (test/e2e/package.test.ts).
# apt runs with a private state (arm64 package lists, cache, an empty dpkg status): the machine's own
# architectures and package lists are left alone. Needs the Debian archive and ~120 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${ARM64_NODE_DIR:-.cache/arm64-node}"
if [[ -x "$dest/root/usr/bin/node" ]]; then exit 0; fi

state="$(mktemp -d)"
trap 'rm -rf "$state"' EXIT
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/debs"
touch "$state/status"
chmod 755 "$state"; chmod 777 "$state/debs" # apt downloads as its _apt user
apt=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o "Dir::State::Lists=$state/lists"
     -o "Dir::Cache=$state/cache" -o "Dir::State::status=$state/status")
apt-get "${apt[@]}" update -qq
# nodejs and, recursively, what it depends on (virtual packages, shown as <name>, are provided by real ones).
mapfile -t packages < <(apt-cache "${apt[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
  --no-breaks --no-replaces --no-enhances nodejs | grep -v -e '^ ' -e '^<' | sort -u)
(cd "$state/debs" && apt-get "${apt[@]}" download "${packages[@]}" >/dev/null)

rm -rf "$dest.partial"
mkdir -p "$dest.partial/root"
for deb in "$state"/debs/*.deb; do dpkg-deb -x "$deb" "$dest.partial/root"; done
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "fetch-arm64-node: nodejs:arm64 and its libraries (${#packages[@]} packages) in $dest/root"
