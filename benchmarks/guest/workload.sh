#!/bin/sh
# The guest benchmark's workload, run by the bench init (busybox sh) as `sh /bench/workload.sh /mnt`
# on a share mounted as virtiofs or 9p. benchmarks/guest/run.ts parses what it prints:
#   BENCH fio <job> <read|write> bs=<bytes> io_kib=<n> runtime_ms=<n> iops=<n> bw_kib=<n> clat_us=<mean> lat_us=<mean>
#   BENCH meta <phase> n=<count> cs=<centiseconds>
#   BENCH-INFO <key> <value>
#   E2E-RESULT <step> ok|fail <detail>
# Knobs from the kernel command line: bench_runtime=<s per fio job> bench_size=<MiB test file>
# bench_files=<small files> bench_passes=<readdir passes> bench_jobs=<comma list of fio jobs>
# bench_numjobs=<fio threads per job, on the same file; results summed (group_reporting)>.
#
# fio runs with O_DIRECT so that every request reaches the backend: with cache=auto the guest page cache
# would otherwise serve the re-reads of virtio-fs, while 9p (cache=none) goes to the host every time.
# All three backends drop O_DIRECT on the host side, so the host page cache serves all of them alike.

MNT="${1:-/mnt}"
W="$MNT/bench"
RUNTIME=10
SIZE=64
FILES=2000
PASSES=10
JOBS="seq-read,seq-write,rand-read,rand-write,rand-read-aio"
NUMJOBS=1
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    bench_runtime=*) RUNTIME="${arg#bench_runtime=}" ;;
    bench_size=*) SIZE="${arg#bench_size=}" ;;
    bench_files=*) FILES="${arg#bench_files=}" ;;
    bench_passes=*) PASSES="${arg#bench_passes=}" ;;
    bench_jobs=*) JOBS="${arg#bench_jobs=}" ;;
    bench_numjobs=*) NUMJOBS="${arg#bench_numjobs=}" ;;
  esac
done

drop_caches() {
  sync
  echo 3 > /proc/sys/vm/drop_caches
}

# Sets NOW to the uptime in centiseconds (no fork; /proc/uptime has two decimals).
now() {
  read -r up _ < /proc/uptime
  NOW=$(( ${up%.*} * 100 + 1${up#*.} - 100 ))
}

rm -rf "$W"
if ! mkdir -p "$W"; then
  echo "E2E-RESULT setup fail mkdir $W"
  exit 1
fi
echo "BENCH-INFO fio $(cat /bench/fio-version)"
echo "BENCH-INFO cpus $(grep -c ^processor /proc/cpuinfo)"
echo "BENCH-INFO params runtime=$RUNTIME size=$SIZE files=$FILES passes=$PASSES"

# ---------------------------------------------------------------------------------------------------
# fio: one job at a time on one test file, written once up front.

F="$W/fio.dat"
now; t0=$NOW
if dd if=/dev/zero of="$F" bs=1M count="$SIZE" 2>/dev/null && sync; then
  now
  echo "BENCH meta layout n=$SIZE cs=$((NOW - t0))"
  echo "E2E-RESULT layout ok ${SIZE}MiB"
else
  echo "E2E-RESULT layout fail dd of ${SIZE}MiB"
fi

# fio_job <name> <rw> <bs> <ioengine> <iodepth>
fio_job() {
  out=$(fio --name="$1" --filename="$F" --size="${SIZE}M" --rw="$2" --bs="$3" --ioengine="$4" --iodepth="$5" \
    --numjobs="$NUMJOBS" --group_reporting \
    --direct=1 --thread --norandommap --runtime="$RUNTIME" --time_based \
    --output-format=terse --terse-version=3 2>&1)
  status=$?
  # Terse v3: 5 error; read 6 io_kib, 7 bw KiB/s, 8 iops, 9 runtime ms, 16 clat mean us, 40 lat mean us;
  # write 47 io_kib, 48 bw, 49 iops, 50 runtime, 57 clat mean, 81 lat mean.
  line=$(echo "$out" | awk -F';' -v job="$1" -v bs="$3" '
    $1 == "3" && NF > 90 {
      if ($6 > 0) printf "BENCH fio %s read bs=%d io_kib=%s runtime_ms=%s iops=%s bw_kib=%s clat_us=%s lat_us=%s err=%s\n", job, bs, $6, $9, $8, $7, $16, $40, $5
      if ($47 > 0) printf "BENCH fio %s write bs=%d io_kib=%s runtime_ms=%s iops=%s bw_kib=%s clat_us=%s lat_us=%s err=%s\n", job, bs, $47, $50, $49, $48, $57, $81, $5
    }')
  if [ "$status" = 0 ] && [ -n "$line" ]; then
    echo "$line"
    echo "E2E-RESULT fio-$1 ok"
  else
    echo "E2E-RESULT fio-$1 fail status $status"
    echo "$out" | head -n 20 | sed 's/^/BENCH-LOG /'
  fi
}

case ",$JOBS," in *,seq-read,*) fio_job seq-read read 131072 psync 1 ;; esac
case ",$JOBS," in *,seq-write,*) fio_job seq-write write 131072 psync 1 ;; esac
case ",$JOBS," in *,rand-read,*) fio_job rand-read randread 4096 psync 1 ;; esac
case ",$JOBS," in *,rand-write,*) fio_job rand-write randwrite 4096 psync 1 ;; esac
case ",$JOBS," in *,rand-read-aio,*) fio_job rand-read-aio randread 4096 libaio 16 ;; esac
rm -f "$F"

# ---------------------------------------------------------------------------------------------------
# Metadata: busybox builtins where possible (a fork costs milliseconds under TCG and would swamp the
# filesystem's own cost). Each phase starts with cold guest caches, so it reaches the backend.

D="$W/meta"
mkdir -p "$D"
drop_caches
now; t0=$NOW
i=0
while [ $i -lt "$FILES" ]; do
  echo "$i" > "$D/f$i"
  i=$((i + 1))
done
sync
now
echo "BENCH meta create n=$FILES cs=$((NOW - t0))"

drop_caches
now; t0=$NOW
i=0
missing=0
while [ $i -lt "$FILES" ]; do
  [ -e "$D/f$i" ] || missing=$((missing + 1))
  i=$((i + 1))
done
now
echo "BENCH meta stat n=$FILES cs=$((NOW - t0))"
[ "$missing" = 0 ] || echo "E2E-RESULT stat fail $missing files missing"

drop_caches
now; t0=$NOW
p=0
while [ $p -lt "$PASSES" ]; do
  set -- "$D"/*
  p=$((p + 1))
done
now
echo "BENCH meta readdir n=$((PASSES * $#)) cs=$((NOW - t0))"
[ "$#" = "$FILES" ] || echo "E2E-RESULT readdir fail $# entries, want $FILES"
set --

drop_caches
now; t0=$NOW
ls -l "$D" > /dev/null
now
echo "BENCH meta ls-l n=$FILES cs=$((NOW - t0))"

drop_caches
now; t0=$NOW
rm "$D"/f*
sync
now
echo "BENCH meta unlink n=$FILES cs=$((NOW - t0))"
rmdir "$D" || echo "E2E-RESULT unlink fail $D not empty"

# ---------------------------------------------------------------------------------------------------
# A source tree: untar (the tarball is in the share, put there by the host), then remove it.

TAR="$MNT/bench-src.tar"
if [ -f "$TAR" ]; then
  U="$W/untar"
  mkdir -p "$U"
  drop_caches
  now; t0=$NOW
  if tar xf "$TAR" -C "$U"; then
    sync
    now
    n=$(find "$U" | wc -l)
    echo "BENCH meta untar n=$n cs=$((NOW - t0))"
    drop_caches
    now; t0=$NOW
    rm -rf "$U"
    sync
    now
    echo "BENCH meta rm-tree n=$n cs=$((NOW - t0))"
    echo "E2E-RESULT untar ok $n entries"
  else
    echo "E2E-RESULT untar fail tar xf"
  fi
else
  echo "E2E-RESULT untar fail no $TAR"
fi

rm -rf "$W"
echo "E2E-RESULT bench ok"
exit 0
