#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The image-library benchmark: sendense-img against qemu-img (7.x) on the
# same workloads, in the same run, on the same files. See bench/README.md
# for what each row measures and how to read the table.
#
#   bench/img-bench.sh [--quick] [--dir DIR] [--tmpfs] [--reps N]
#                      [--bin PATH] [--results DIR] [--rows LIST]
#                      [--reads cold|hot|both]
#
# Every tool run is timed as a whole process (bash's time): open, the
# requests and the flush at close (fdatasync) for both tools. A benchmark,
# not a test: it never fails on a slow number, only on a tool that fails
# or on images that differ.
set -euo pipefail

ME=$(basename "$0")
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)

QUICK=0
SCRATCH_PARENT=${SENDENSE_BENCH_DIR:-/var/tmp}
TMPFS=0
REPS=3
BIN=${SENDENSE_IMG:-}
RESULTS=$BENCH_DIR/results
ROWS=all
READS=auto
DEPTH=16

usage() {
    cat <<EOF
Usage: $ME [--quick] [--dir DIR] [--tmpfs] [--reps N] [--bin PATH]
           [--results DIR] [--rows LIST] [--reads cold|hot|both]

  --quick        256 MiB per workload instead of 4 GiB
  --dir DIR      scratch files go in a fresh folder under DIR
                 (default \$SENDENSE_BENCH_DIR or /var/tmp)
  --tmpfs        run every row a second time with the scratch folder on
                 /dev/shm (no disk: shows CPU cost alone)
  --reps N       repetitions per measurement (default 3; median, min, max)
  --bin PATH     sendense-img to use (default \$SENDENSE_IMG, else
                 ./qcow2/sendense-img of the current build folder, else PATH)
  --results DIR  where the CSV and the text report go (default bench/results)
  --rows LIST    comma-separated row groups: raw,qcow2,overlay,convert
                 (default all; overlay also runs qcow2, whose image is the
                 backing file, and convert needs raw, whose file it reads)
  --reads KIND   read rows from a cold page cache (dropped first: the
                 disk), a hot one (the CPU cost), or both. Default: cold
                 on disk when the cache can be dropped, hot otherwise
                 and always hot on tmpfs
EOF
}

die() { echo "$ME: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1 ;;
    --dir) SCRATCH_PARENT=${2:?}; shift ;;
    --tmpfs) TMPFS=1 ;;
    --reps) REPS=${2:?}; shift ;;
    --bin) BIN=${2:?}; shift ;;
    --results) RESULTS=${2:?}; shift ;;
    --rows) ROWS=${2:?}; shift ;;
    --reads) READS=${2:?}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
    shift
done

[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps wants a positive number"
[[ $READS =~ ^(auto|cold|hot|both)$ ]] || die "--reads wants cold, hot or both"
if [ -z "$BIN" ]; then
    if [ -x ./qcow2/sendense-img ]; then BIN=$PWD/qcow2/sendense-img
    else BIN=$(command -v sendense-img || true); fi
fi
[ -n "$BIN" ] && [ -x "$BIN" ] || die "no sendense-img found (use --bin PATH)"
command -v qemu-img >/dev/null || die "qemu-img is needed (apt-get install qemu-utils)"

if [ "$QUICK" = 1 ]; then SIZE=$((256 << 20)); MODE=quick
else SIZE=$((4 << 30)); MODE=full; fi
MIB=$((1 << 20))
CLUSTER=65536

wants_rows() { [ "$ROWS" = all ] || [[ ",$ROWS," == *",$1,"* ]]; }

# ---------------------------------------------------------------- plumbing

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS"
RESULT_STEM=$RESULTS/img-bench-$MODE-$STAMP
RAW_CSV=$RESULT_STEM.runs.csv
SUM_CSV=$RESULT_STEM.csv
REPORT=$RESULT_STEM.txt
LOGDIR=$(mktemp -d /tmp/img-bench-log.XXXXXX)
SCRATCH=

cleanup() {
    [ -n "$SCRATCH" ] && rm -rf "$SCRATCH"
    rm -rf "$LOGDIR"
}
trap cleanup EXIT

# Dropping the page cache needs root; without it, reads are "hot" only.
CAN_DROP=0
if [ -w /proc/sys/vm/drop_caches ] && echo 1 > /proc/sys/vm/drop_caches 2>/dev/null
then CAN_DROP=1; fi

settle() {
    sync
    if [ "$CAN_DROP" = 1 ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}

# Bring a file (and what it needs) into the page cache.
warm() { cat "$@" > /dev/null; }

echo "place,row,workload,tool,rep,bytes,wall_s,run_s,user_s,sys_s,load1" > "$RAW_CSV"

# The 1-minute load average: other work on the machine skews a run.
load1() { cut -d ' ' -f 1 /proc/loadavg; }

# measure PLACE ROW WORKLOAD TOOL REP BYTES -- CMD...
# Times one tool run as a whole process and appends a line to the runs CSV.
measure() {
    local place=$1 row=$2 workload=$3 tool=$4 rep=$5 bytes=$6
    shift 7
    local out=$LOGDIR/out tm=$LOGDIR/time run_s wall user sys load
    load=$(load1)
    # bash's time keyword: wall, user and system seconds of the process and
    # its threads, in milliseconds (/usr/bin/time has 10 ms steps).
    local TIMEFORMAT='%3R %3U %3S'
    if ! { time "$@" > "$out" 2>&1; } 2> "$tm"; then
        cat "$out" >&2
        die "failed: $*"
    fi
    run_s=$(sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' "$out")
    read -r wall user sys < <(tail -n 1 "$tm")
    echo "$place,$row,$workload,$tool,$rep,$bytes,$wall,${run_s:-},$user,$sys,$load" \
        >> "$RAW_CSV"
    printf '  %-22s %-26s rep %d: %6.2f s wall\n' "$row" "$tool" "$rep" "$wall" >&2
}

new_qcow2() {   # new_qcow2 FILE [extended_l2] [BACKING]
    local opts="cluster_size=$CLUSTER"
    [ "${2:-}" = ext ] && opts="$opts,extended_l2=on"
    if [ -n "${3:-}" ]; then
        qemu-img create -q -f qcow2 -o "$opts" -b "$3" -F qcow2 "$1"
    else
        qemu-img create -q -f qcow2 -o "$opts" "$1" "$SIZE"
    fi
}

# The two bench commands; the workload flags that follow are the same.
# Both use the page cache ("writeback", qemu-img bench's default, named
# here so that it shows) and flush at close.
OURS_BENCH=("$BIN" bench -t writeback)
QEMU_BENCH=(qemu-img bench -t writeback)

# Both images must read the same through qemu (and ours must be clean).
verify_same() {  # verify_same OURS THEIRS
    if [ "$(head -c 3 "$1")" = QFI ]; then
        qemu-img check -q "$1" || die "qemu-img check found problems in $1"
    fi
    qemu-img compare -q "$1" "$2" || die "$1 and $2 differ"
}

# ------------------------------------------------------------------- rows
#
# rep_order REP ITEM...: the items, reversed on even reps, so that no tool
# always runs right after the same other one (writeback, cache, load).
rep_order() {
    local rep=$1; shift
    if [ $((rep % 2)) = 0 ]; then
        local i out=()
        for i in "$@"; do out=("$i" "${out[@]}"); done
        echo "${out[@]}"
    else
        echo "$@"
    fi
}

# write_row PLACE ROW WORKLOAD PREP VARIANTS -- BENCH_ARGS...
# For each rep and each tool variant: PREP makes a fresh target, the tool
# writes it. Variants are "ours", "qemu" and, for overlays, "qemu-plainL2"
# (PREP decides the image kind from the variant name). The last rep's
# images are kept as $SCRATCH/ROW.VARIANT for the read rows.
write_row() {
    local place=$1 row=$2 workload=$3 prep=$4 variants=$5
    shift 6
    local rep v f
    for rep in $(seq 1 "$REPS"); do
        for v in $(rep_order "$rep" $variants); do
            f=$SCRATCH/$row.$v
            rm -f "$f"
            "$prep" "$f" "$v"
            settle
            case $v in
            ours*) measure "$place" "$row" "$workload" "sendense-img${v#ours}" \
                       "$rep" "$SIZE" -- "${OURS_BENCH[@]}" -w "$@" "$f" ;;
            qemu*) measure "$place" "$row" "$workload" "qemu-img${v#qemu}" \
                       "$rep" "$SIZE" -- "${QEMU_BENCH[@]}" -w "$@" "$f" ;;
            esac
        done
    done
}

# Which page-cache states the read rows of a place run with. Cold means
# read from the disk: not possible without dropping the page cache, and
# meaningless on tmpfs.
read_caches() {
    local cold_ok=1
    { [ "$CAN_DROP" = 0 ] || [ "$1" = tmpfs ]; } && cold_ok=0
    case $READS in
    hot) echo hot ;;
    cold|auto) [ "$cold_ok" = 1 ] && echo cold || echo hot ;;
    both) [ "$cold_ok" = 1 ] && echo cold hot || echo hot ;;
    esac
}

# read_row PLACE ROW WORKLOAD FILE -- BENCH_ARGS...
read_row() {
    local place=$1 row=$2 workload=$3 file=$4 cache rep tool
    shift 5
    for cache in $(read_caches "$place"); do
        for rep in $(seq 1 "$REPS"); do
            for tool in $(rep_order "$rep" ours qemu); do
                if [ "$cache" = cold ]; then settle; else warm "$file" "$SCRATCH"/*.base 2>/dev/null || true; fi
                if [ $tool = ours ]; then
                    measure "$place" "$row-$cache" "$workload" sendense-img "$rep" \
                        "$SIZE" -- "${OURS_BENCH[@]}" "$@" "$file"
                else
                    measure "$place" "$row-$cache" "$workload" qemu-img "$rep" \
                        "$SIZE" -- "${QEMU_BENCH[@]}" "$@" "$file"
                fi
            done
        done
    done
}

prep_raw() { truncate -s "$SIZE" "$1"; }
prep_qcow2() { new_qcow2 "$1"; }
prep_overlay() {
    case $2 in
    *plainL2) new_qcow2 "$1" plain "$SCRATCH/full.base" ;;
    *) new_qcow2 "$1" ext "$SCRATCH/full.base" ;;
    esac
}

ours_has_qcow2() {
    local f=$SCRATCH/probe.qcow2
    qemu-img create -q -f qcow2 "$f" 1M
    ( "$BIN" bench -q -f qcow2 -c 1 -d 1 -s 4k "$f" ) > /dev/null 2>&1
}

run_place() {
    local place=$1 n1m=$((SIZE / MIB)) n64k=$((SIZE / CLUSTER - 1))
    local big="-s 1M -d $DEPTH -c $n1m"
    # 64 KiB writes at 4 KiB past each cluster boundary: each one covers the
    # tail of one cluster and the head of the next. The last one would run
    # past the end, so there is one fewer than SIZE / 64 KiB.
    local skew="-s 64K -o 4K -d $DEPTH -c $n64k"

    note "[$place] scratch folder $SCRATCH"
    if wants_rows raw; then
        note "[$place] raw: sequential write into an empty (sparse) file"
        write_row "$place" raw-write "1M x$n1m d$DEPTH" prep_raw "ours qemu" \
            -- -f raw $big --pattern=0x5a
        verify_same "$SCRATCH/raw-write.ours" "$SCRATCH/raw-write.qemu"
        rm -f "$SCRATCH/raw-write.qemu"
        read_row "$place" raw-read "1M x$n1m d$DEPTH" "$SCRATCH/raw-write.ours" \
            -- -f raw $big
    fi

    if ! ours_has_qcow2; then
        note "[$place] sendense-img cannot open qcow2 yet: qcow2 rows skipped"
        return 0
    fi

    if wants_rows qcow2 || wants_rows overlay; then
        note "[$place] qcow2: sequential write into an empty image (64K clusters)"
        write_row "$place" qcow2-write "1M x$n1m d$DEPTH" prep_qcow2 "ours qemu" \
            -- -f qcow2 $big --pattern=0x5a
        verify_same "$SCRATCH/qcow2-write.ours" "$SCRATCH/qcow2-write.qemu"
        # qemu's image becomes the full backing image of the overlay rows.
        mv "$SCRATCH/qcow2-write.qemu" "$SCRATCH/full.base"
        read_row "$place" qcow2-read "1M x$n1m d$DEPTH" \
            "$SCRATCH/qcow2-write.ours" -- -f qcow2 $big
        rm -f "$SCRATCH/qcow2-write.ours"
    fi

    if wants_rows overlay; then
        local ov="ours qemu qemu-plainL2"
        note "[$place] overlay over a full backing image: cluster-aligned 1M writes"
        write_row "$place" overlay-write-1M "1M x$n1m d$DEPTH" prep_overlay "$ov" \
            -- -f qcow2 $big --pattern=0xa5
        verify_same "$SCRATCH/overlay-write-1M.ours" "$SCRATCH/overlay-write-1M.qemu"
        read_row "$place" overlay-read-1M "1M x$n1m d$DEPTH" \
            "$SCRATCH/overlay-write-1M.ours" -- -f qcow2 $big
        rm -f "$SCRATCH"/overlay-write-1M.*

        note "[$place] overlay: 64K writes at 4K past cluster boundaries"
        write_row "$place" overlay-write-64K+4K "64K+4K x$n64k d$DEPTH" \
            prep_overlay "$ov" -- -f qcow2 $skew --pattern=0xa5
        verify_same "$SCRATCH/overlay-write-64K+4K.ours" \
            "$SCRATCH/overlay-write-64K+4K.qemu"
        verify_same "$SCRATCH/overlay-write-64K+4K.ours" \
            "$SCRATCH/overlay-write-64K+4K.qemu-plainL2"
        read_row "$place" overlay-read-64K+4K "1M x$n1m d$DEPTH" \
            "$SCRATCH/overlay-write-64K+4K.ours" -- -f qcow2 $big
        rm -f "$SCRATCH"/overlay-write-64K+4K.*
    fi

    if wants_rows convert && [ -f "$SCRATCH/raw-write.ours" ]; then
        if "$BIN" convert --help > /dev/null 2>&1; then
            convert_row "$place"
        else
            note "[$place] sendense-img has no convert yet: convert row skipped"
        fi
    fi
}

# Raw file (written by the raw row, all data) into a new qcow2.
convert_row() {
    local place=$1 src=$SCRATCH/raw-write.ours rep tool
    note "[$place] convert: raw file -> new qcow2"
    for rep in $(seq 1 "$REPS"); do
        for tool in $(rep_order "$rep" ours qemu); do
            rm -f "$SCRATCH/convert.$tool"
            warm "$src"
            if [ "$tool" = ours ]; then
                measure "$place" convert "raw->qcow2" sendense-img "$rep" \
                    "$SIZE" -- "$BIN" convert -f raw -O qcow2 "$src" \
                    "$SCRATCH/convert.ours"
            else
                measure "$place" convert "raw->qcow2" qemu-img "$rep" "$SIZE" \
                    -- qemu-img convert -t writeback -f raw -O qcow2 \
                    -o cluster_size=$CLUSTER "$src" "$SCRATCH/convert.qemu"
            fi
        done
    done
    verify_same "$SCRATCH/convert.ours" "$SCRATCH/convert.qemu"
    rm -f "$SCRATCH"/convert.*
}

# ------------------------------------------------------------------ report

describe_machine() {
    local dev disk
    echo "finished:  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "mode:      $MODE ($((SIZE / MIB)) MiB per workload, $REPS reps, depth $DEPTH)"
    echo "cpu:       $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "memory:    $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    dev=$(df --output=source "$SCRATCH_PARENT" | tail -n 1)
    disk=$(df --output=fstype "$SCRATCH_PARENT" | tail -n 1)
    echo "disk:      $SCRATCH_PARENT on $dev ($disk$(
        b=$(basename "$dev"); [ -e "/sys/block/$b/queue/rotational" ] &&
        { [ "$(cat /sys/block/$b/queue/rotational)" = 0 ] && echo ", non-rotational" || echo ", rotational as the kernel reports it"; }))"
    echo "kernel:    $(uname -r)"
    echo "qemu-img:  $(qemu-img --version | head -n 1)"
    echo "ours:      $BIN ($("$BIN" --version 2>/dev/null || echo '?'))"
    echo "page cache dropped before cold runs: $([ "$CAN_DROP" = 1 ] && echo yes || echo no)"
    echo "load avg:  $START_LOAD at the start, $(cut -d ' ' -f 1-3 /proc/loadavg) at the end (1, 5, 15 min)"
}

# Per (place, row, tool): median/min/max MiB/s over the whole process,
# median MiB/s of the request phase alone, median CPU seconds per GiB;
# then the ratio of ours to each qemu line of the same row.
summarize() {
    awk -F, -v mib="$MIB" '
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) {          # insertion sort, n is small
            t = a[i] + 0
            for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
            a[j + 1] = t
        }
        if (n == 0) return ""
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function minmax(list, want,   n, a, i, m) {
        n = split(list, a, " "); m = a[1] + 0
        for (i = 2; i <= n; i++)
            if ((want == "min" && a[i] + 0 < m) || (want == "max" && a[i] + 0 > m)) m = a[i] + 0
        return m
    }
    NR == 1 { next }
    {
        k = $1 SUBSEP $2 SUBSEP $4
        if (!(k in seen)) { seen[k] = 1; order[++nk] = k; wl[k] = $3 }
        gib = $6 / (1024 * mib)
        tput[k] = tput[k] " " ($6 / mib) / $7
        if ($8 != "") run[k] = run[k] " " ($6 / mib) / $8
        cpu[k] = cpu[k] " " ($9 + $10) / gib
        if ($11 + 0 > load[k]) load[k] = $11 + 0
    }
    END {
        print "place,row,workload,tool,mib_s_median,mib_s_min,mib_s_max,run_mib_s_median,cpu_s_per_gib,ours_over_this_mib_s,ours_over_this_cpu,load1_max"
        for (i = 1; i <= nk; i++) {
            k = order[i]; split(k, p, SUBSEP)
            med[k] = median(tput[k]); cmed[k] = median(cpu[k])
            if (p[3] == "sendense-img") ours[p[1] SUBSEP p[2]] = k
        }
        for (i = 1; i <= nk; i++) {
            k = order[i]; split(k, p, SUBSEP)
            o = ours[p[1] SUBSEP p[2]]
            r = c = ""
            if (o != "" && o != k && med[k] > 0) r = sprintf("%.2f", med[o] / med[k])
            if (o != "" && o != k && cmed[k] > 0) c = sprintf("%.2f", cmed[o] / cmed[k])
            printf "%s,%s,%s,%s,%.0f,%.0f,%.0f,%s,%.2f,%s,%s,%.2f\n", p[1], p[2], wl[k], p[3],
                med[k], minmax(tput[k], "min"), minmax(tput[k], "max"),
                run[k] == "" ? "" : sprintf("%.0f", median(run[k])), cmed[k], r, c, load[k]
        }
    }' "$RAW_CSV"
}

print_table() {
    awk -F, 'NR == 1 { next }
    {
        rng = sprintf("%s [%s-%s]", $5, $6, $7)
        printf "%-6s %-24s %-16s %-18s %-18s %9s %9s %8s %8s %6s\n", $1, $2, $3, $4, rng,
            $8 == "" ? "-" : $8, $9, $10 == "" ? "-" : $10, $11 == "" ? "-" : $11, $12
    }
    BEGIN {
        printf "%-6s %-24s %-16s %-18s %-18s %9s %9s %8s %8s %6s\n", "place", "row",
            "workload", "tool", "MiB/s med [min-max]", "run MiB/s", "CPU s/GiB",
            "x speed", "x CPU", "load"
    }' "$1"
}

# -------------------------------------------------------------------- main

run_in() {  # run_in PLACE PARENT
    # Peak use: the raw source, the backing image and three overlays,
    # plus room for the page cache when the place is tmpfs.
    local free_kib need_kib=$((SIZE / 1024 * 6))
    free_kib=$(df --output=avail -k "$2" | tail -n 1)
    if [ "$free_kib" -lt "$need_kib" ]; then
        note "[$1] skipped: $2 has $((free_kib / 1024)) MiB free, needs $((need_kib / 1024))"
        return 0
    fi
    SCRATCH=$(mktemp -d "$2/sendense-img-bench.XXXXXX")
    run_place "$1" "$2"
    rm -rf "$SCRATCH"
    SCRATCH=
}

START=$(date +%s)
START_LOAD=$(cut -d ' ' -f 1-3 /proc/loadavg)
run_in disk "$SCRATCH_PARENT"
[ "$TMPFS" = 1 ] && run_in tmpfs /dev/shm

summarize > "$SUM_CSV"
{
    describe_machine
    echo "elapsed:   $(( $(date +%s) - START )) s"
    echo
    print_table "$SUM_CSV"
} > "$REPORT"
cat "$REPORT"
echo
echo "results: $REPORT, $SUM_CSV, $RAW_CSV"
