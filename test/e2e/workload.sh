#!/bin/sh
# The end-to-end workload, run by the guest's /init (busybox sh) as `sh workload.sh /mnt`.
#
# Works in <mount>/w (removed first). Each step prints one line the host parses:
#   E2E-RESULT <step> ok|fail <detail>
# and facts the host re-checks on the shared directory after the guest powers off:
#   E2E-INFO <key> <value>
# The host side (test/e2e/guest.ts, checkWorkloadOnHost) knows the exact names, contents, modes,
# owners and times below; change both together.

MNT="${1:-/mnt}"
W="$MNT/w"
FAILS=0
DETAIL=""

run() {
  name="$1"
  DETAIL=""
  if "$2"; then
    echo "E2E-RESULT $name ok $DETAIL"
  else
    echo "E2E-RESULT $name fail $DETAIL"
    FAILS=$((FAILS + 1))
  fi
  cd "$W" 2>/dev/null || cd "$MNT"
}

drop_caches() {
  sync
  echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
}

# expect <what> <actual> <expected>: sets DETAIL and fails on a mismatch.
expect() {
  if [ "$2" = "$3" ]; then
    return 0
  fi
  DETAIL="$1: got '$2' want '$3'"
  return 1
}

# Sets P to $1 zero-padded to three digits (no fork: every $(...) costs a fork, slow under TCG).
pad3() {
  if [ "$1" -lt 10 ]; then P="00$1"; elif [ "$1" -lt 100 ]; then P="0$1"; else P="$1"; fi
}

# Sets SC to the content of small file $1: the line "small file NNN" repeated (N % 17 + 1) times.
small_content() {
  pad3 "$1"
  n=$(( $1 % 17 + 1 ))
  SC=""
  while [ "$n" -gt 0 ]; do
    SC="${SC}small file $P
"
    n=$((n - 1))
  done
}

step_setup() {
  rm -rf "$W" && mkdir "$W" && cd "$W" || { DETAIL="cannot create $W"; return 1; }
}

step_small_files() {
  mkdir s || return 1
  : > /tmp/small.expected
  i=0
  while [ "$i" -lt 200 ]; do
    small_content "$i"
    printf '%s' "$SC" > "s/f$P" || { DETAIL="write f$P"; return 1; }
    printf '%s' "$SC" >> /tmp/small.expected
    i=$((i + 1))
  done
  drop_caches
  # One read of every file (the glob sorts f000..f199) compared with the expected concatenation;
  # the per-file search runs only on a mismatch.
  cat s/f* > /tmp/small.got || { DETAIL="read back"; return 1; }
  if ! cmp -s /tmp/small.expected /tmp/small.got; then
    i=0
    while [ "$i" -lt 200 ]; do
      small_content "$i"
      printf '%s' "$SC" > /tmp/small.one
      cmp -s /tmp/small.one "s/f$P" || DETAIL="$DETAIL mismatch:f$P"
      i=$((i + 1))
    done
    return 1
  fi
  count=$(ls s | wc -l)
  expect "entries" "$count" 200 && DETAIL="200 files"
}

step_big_file() {
  # Hash the bytes on their way in (before the filesystem sees them), then read back after dropping
  # the page cache: the host compares both with its own hash of the file.
  # Staged in the guest's RAM so the share sees 1 MiB writes (a pipe would make them 4 KiB).
  dd if=/dev/urandom of=/tmp/big.src bs=1048576 count=32 2>/dev/null || { DETAIL="urandom"; return 1; }
  src=$(sha256sum /tmp/big.src | cut -d' ' -f1)
  dd if=/tmp/big.src of=big bs=1048576 2>/dev/null || { DETAIL="write big"; return 1; }
  rm -f /tmp/big.src
  drop_caches
  back=$(sha256sum big | cut -d' ' -f1)
  size=$(stat -c %s big)
  echo "E2E-INFO big-sha256 $src"
  expect "size" "$size" 33554432 && expect "sha256 readback" "$back" "$src" && DETAIL="$src"
}

step_mkdir_p() {
  mkdir -p a/b/c && [ -d a/b/c ] || { DETAIL="a/b/c not a directory"; return 1; }
}

step_rename() {
  echo one > r1 && mv r1 r2 || return 1
  [ ! -e r1 ] || { DETAIL="r1 still exists"; return 1; }
  expect "r2" "$(cat r2)" one || return 1
  # over an existing file
  echo src > rs && echo dst > rd && mv rs rd || return 1
  [ ! -e rs ] || { DETAIL="rs still exists"; return 1; }
  expect "rd" "$(cat rd)" src || return 1
  # a directory, with its content
  mkdir dmv1 && echo inside > dmv1/f && mv dmv1 dmv2 || return 1
  [ ! -e dmv1 ] || { DETAIL="dmv1 still exists"; return 1; }
  expect "dmv2/f" "$(cat dmv2/f)" inside || return 1
  # across directories
  echo moved > x && mv x a/b/c/x || return 1
  [ ! -e x ] || { DETAIL="x still exists"; return 1; }
  drop_caches
  expect "a/b/c/x" "$(cat a/b/c/x)" moved
}

step_symlink() {
  ln -s s/f007 sl && ln -s /nonexistent/target dangling || return 1
  expect "readlink sl" "$(readlink sl)" s/f007 || return 1
  expect "readlink dangling" "$(readlink dangling)" /nonexistent/target || return 1
  [ -L sl ] && [ -L dangling ] || { DETAIL="not symlinks"; return 1; }
  [ ! -e dangling ] || { DETAIL="dangling resolves"; return 1; }
  small_content 7
  expect "through sl" "$(cat sl)
" "$SC"
}

step_hardlink() {
  echo hl > h1 && ln h1 h2 || return 1
  drop_caches
  expect "nlink h1" "$(stat -c %h h1)" 2 || return 1
  expect "nlink h2" "$(stat -c %h h2)" 2 || return 1
  expect "inode" "$(stat -c %i h1)" "$(stat -c %i h2)" || return 1
  echo more >> h2
  expect "h1 via h2" "$(cat h1)" "$(printf 'hl\nmore')"
}

step_chmod() {
  echo m > m1 && chmod 0754 m1 || return 1
  mkdir m2 && chmod 0700 m2 || return 1
  drop_caches
  expect "m1 mode" "$(stat -c %a m1)" 754 && expect "m2 mode" "$(stat -c %a m2)" 700
}

step_chown() {
  echo o > o1 && chown 1234:5678 o1 || { DETAIL="chown failed"; return 1; }
  drop_caches
  expect "o1 owner" "$(stat -c %u:%g o1)" 1234:5678
}

step_utimes() {
  touch -t 202001020304.05 t1 || return 1
  echo t > t2 && touch -d '2001-02-03 04:05:06' t2 || return 1
  drop_caches
  expect "t1 mtime" "$(stat -c %Y t1)" 1577934245 && expect "t1 atime" "$(stat -c %X t1)" 1577934245 &&
    expect "t2 mtime" "$(stat -c %Y t2)" 981173106
}

step_truncate() {
  printf '0123456789abcdef' > tr1 && truncate -s 1048576 tr1 || return 1
  expect "grown size" "$(stat -c %s tr1)" 1048576 || return 1
  expect "grown head" "$(head -c 16 tr1)" 0123456789abcdef || return 1
  expect "grown tail zeros" "$(tail -c +17 tr1 | tr -d '\000' | wc -c)" 0 || return 1
  truncate -s 10 tr1 || return 1
  drop_caches
  expect "shrunk size" "$(stat -c %s tr1)" 10 && expect "shrunk bytes" "$(cat tr1)" 0123456789 || return 1
  # grown only, for the host to check the hole reads as zeros
  printf 'head' > tr2 && truncate -s 65536 tr2
}

step_mkfifo() {
  mkfifo ff || return 1
  [ -p ff ] || { DETAIL="not a fifo"; return 1; }
  expect "type" "$(stat -c %F ff)" fifo
}

step_rmdir() {
  mkdir rd1 && rmdir rd1 || return 1
  [ ! -e rd1 ] || { DETAIL="rd1 still exists"; return 1; }
  mkdir rd2 && touch rd2/keep || return 1
  if rmdir rd2 2>/dev/null; then
    DETAIL="rmdir of a non-empty directory succeeded"
    return 1
  fi
  [ -d rd2 ] || { DETAIL="rd2 vanished"; return 1; }
}

step_rm_rf() {
  mkdir -p tree/one/two tree/three || return 1
  i=0
  while [ "$i" -lt 20 ]; do
    echo "$i" > "tree/one/two/f$i" && echo "$i" > "tree/three/g$i" || return 1
    i=$((i + 1))
  done
  ln -s one tree/link && mkfifo tree/three/pipe || return 1
  rm -rf tree || { DETAIL="rm -rf exited non-zero"; return 1; }
  [ ! -e tree ] || { DETAIL="tree still exists"; return 1; }
}

step_unlink() {
  echo gone > u1 && rm u1 || return 1
  [ ! -e u1 ] || { DETAIL="u1 still exists"; return 1; }
}

step_append() {
  echo a > ap && echo b >> ap || return 1
  drop_caches
  expect "ap" "$(cat ap)" "$(printf 'a\nb')"
}

step_parallel() {
  # Four writers at once, then four readers at once: several requests in flight on the queue.
  dd if=/dev/urandom of=/tmp/par.src bs=1048576 count=4 2>/dev/null || return 1
  want=$(sha256sum /tmp/par.src | cut -d' ' -f1)
  mkdir par || return 1
  for j in 1 2 3 4; do
    dd if=/tmp/par.src of="par/p$j" bs=65536 2>/dev/null &
  done
  wait
  rm -f /tmp/par.src
  drop_caches
  for j in 1 2 3 4; do
    sha256sum "par/p$j" > "/tmp/par.$j" &
  done
  wait
  for j in 1 2 3 4; do
    got=$(cut -d' ' -f1 "/tmp/par.$j")
    expect "par/p$j" "$got" "$want" || return 1
  done
  echo "E2E-INFO par-sha256 $want"
}

step_names() {
  long=$(printf '%0255d' 0)
  echo spaced > "with space" && echo utf8 > "$(printf 'caf\303\251-\342\230\203')" && echo long > "$long" || return 1
  drop_caches
  expect "with space" "$(cat "with space")" spaced || return 1
  expect "utf8" "$(cat "$(printf 'caf\303\251-\342\230\203')")" utf8 || return 1
  expect "255-byte name" "$(cat "$long")" long || return 1
  if echo x > "${long}x" 2>/dev/null; then
    DETAIL="a 256-byte name was accepted"
    return 1
  fi
  return 0
}

step_df() {
  out=$(df "$MNT") || { DETAIL="df exited non-zero"; return 1; }
  echo "$out"
  blocks=$(echo "$out" | awk 'NR == 2 { print $2 }')
  [ -n "$blocks" ] && [ "$blocks" -gt 0 ] || { DETAIL="no size: $blocks"; return 1; }
  DETAIL="${blocks}K"
}

step_ls_la() {
  out=$(ls -la "$W") || { DETAIL="ls -la exited non-zero"; return 1; }
  echo "$out"
  echo "$out" | grep -q '^p.* ff$' || { DETAIL="ff not listed as a fifo"; return 1; }
  echo "$out" | grep -q '^l.* sl -> s/f007$' || { DETAIL="sl not listed as a symlink"; return 1; }
  echo "$out" | grep -q ' big$' || { DETAIL="big not listed"; return 1; }
}

# test/conformance/posix-check.c, put in .e2e/ by the host. Runs from the guest's RAM (a copy in /tmp),
# not from the share, so what it checks is the share and nothing else. Every line it prints is
# prefixed with E2E-POSIX for the host to parse; the step's detail is its summary.
step_posix_check() {
  if [ ! -f "$MNT/.e2e/posix-check" ]; then
    echo "E2E-RESULT posix-check fail no $MNT/.e2e/posix-check"
    return
  fi
  cp "$MNT/.e2e/posix-check" /tmp/posix-check && chmod 755 /tmp/posix-check || {
    echo "E2E-RESULT posix-check fail cannot copy the binary"
    return
  }
  # Settings the host chose for this backend (e.g. POSIX_CHECK_SKIP_LOCK_EINTR), if any.
  [ -f "$MNT/.e2e/posix-check.env" ] && . "$MNT/.e2e/posix-check.env"
  # Streamed (the host's idle timeout watches the console), and kept for the summary.
  { /tmp/posix-check "$MNT" 2>&1; echo "posix-check-exit $?"; } | tee /tmp/posix-check.out | sed 's/^/E2E-POSIX /'
  status=$(sed -n 's/^posix-check-exit //p' /tmp/posix-check.out)
  summary=$(grep '^posix-check: ' /tmp/posix-check.out | tail -n 1)
  if [ "$status" = 0 ]; then
    echo "E2E-RESULT posix-check ok ${summary#posix-check: }"
  else
    echo "E2E-RESULT posix-check fail exit $status: ${summary#posix-check: }"
  fi
}

run setup step_setup || true
if [ ! -d "$W" ]; then
  echo "E2E-INFO fails 1"
  exit 1
fi
cd "$W"
run small-files step_small_files
run big-file step_big_file
run mkdir-p step_mkdir_p
run rename step_rename
run symlink step_symlink
run hardlink step_hardlink
run chmod step_chmod
run chown step_chown
run utimes step_utimes
run truncate step_truncate
run mkfifo step_mkfifo
run rmdir step_rmdir
run rm-rf step_rm_rf
run unlink step_unlink
run append step_append
run parallel step_parallel
run names step_names
run df step_df
run ls-la step_ls_la
cd /
sync
echo "E2E-INFO fails $FAILS"
# The POSIX conformance checker, last: its verdict is reported but not counted in FAILS (the host
# requires it of our daemon and only records it for the C reference).
step_posix_check
[ "$FAILS" = 0 ]
