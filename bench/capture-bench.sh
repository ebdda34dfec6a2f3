#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The Capture Agent benchmark: sendense-capture against nbdcopy, full and
# incremental copies of the same source disk into fresh qcow2 targets,
# in one run: (a) sendense-capture into sendense-nbd, (b) nbdcopy into
# sendense-nbd, (c) nbdcopy into qemu-nbd. Every target is compared with
# its source afterwards. See bench/README.md for what is measured and why
# it is fair.
#
#   bench/capture-bench.sh [--quick] [--size N] [--reps N] [--build DIR]
#                          [--out DIR] [--qemu-cache none|writeback]
#                          [--seed N] [--no-install]
#
# A benchmark, not a test: it never fails on a slow number. A run that
# fails, or whose target differs from its source, is recorded as such in
# its row and the script goes on; a row with a wrong target gets no ratio.
set -euo pipefail

ME=$(basename "$0")
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
SRC_DIR=$(dirname "$BENCH_DIR")
PY=/usr/bin/python3
TOOL="$PY $BENCH_DIR/capture-bench-tool.py"
RPC="$PY $BENCH_DIR/nbd-bench-tool.py rpc-time"

MODE=full
BUILD=
OUT=$BENCH_DIR/results
SIZE=
REPS=
QEMU_CACHE=none
SEED=20261206
CHANGE_FRACTION=0.05
INCR_REQUEST_SIZE=65536
CAPTURE_OPTS=
INSTALL=1

usage() {
    cat <<EOF
Usage: $ME [--quick] [--size N] [--reps N] [--build DIR] [--out DIR]
           [--qemu-cache none|writeback] [--incr-request-size N]
           [--capture-opts 'OPTIONS'] [--seed N] [--no-install]

  (default)        a 2 GiB source disk, 3 repetitions (median, min, max)
  --quick          a 256 MiB source disk, 1 repetition: a smoke test
  --size N         source disk size in bytes or with K/M/G (a multiple
                   of 1 MiB, at least 16 MiB)
  --reps N         repetitions of every copy
  --build DIR      build folder with capture/sendense-capture,
                   server/sendense-nbd and qcow2/sendense-img
                   (default: the current folder)
  --out DIR        where the .txt, .csv and .runs.csv go (bench/results)
  --qemu-cache M   qemu-nbd's --cache (default none: O_DIRECT, like
                   sendense-nbd's large data requests; writeback: the
                   page cache for everything)
  --incr-request-size N
                   nbdcopy's --request-size in the incremental (default
                   64K, the changes' granularity: nbdcopy copies every
                   request-size block a change touches, so with its own
                   default, 256K, it copies more than the changed areas)
  --capture-opts 'OPTIONS'
                   more sendense-capture options for every copy (split on
                   spaces), e.g. '--request-size 256K'; default none
  --seed N         seed of the source layout and the changes
  --no-install     do not apt-get install missing tools
EOF
}

die() { echo "$ME: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

to_bytes() {
    local n=$1
    case $n in
    *[kK]) echo $(( ${n%?} << 10 )) ;;
    *[mM]) echo $(( ${n%?} << 20 )) ;;
    *[gG]) echo $(( ${n%?} << 30 )) ;;
    *) echo $(( n )) ;;
    esac
}

while [ $# -gt 0 ]; do
    case $1 in
    --quick) MODE=quick ;;
    --full) MODE=full ;;
    --size) SIZE=$(to_bytes "${2:?}"); shift ;;
    --reps) REPS=${2:?}; shift ;;
    --build) BUILD=${2:?}; shift ;;
    --out) OUT=${2:?}; shift ;;
    --qemu-cache) QEMU_CACHE=${2:?}; shift ;;
    --seed) SEED=${2:?}; shift ;;
    --incr-request-size) INCR_REQUEST_SIZE=$(to_bytes "${2:?}"); shift ;;
    --capture-opts) CAPTURE_OPTS=$2; shift ;;
    --no-install) INSTALL=0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
    shift
done

if [ "$MODE" = full ]; then
    : "${SIZE:=$((2 << 30))}" "${REPS:=3}"
else
    : "${SIZE:=$((256 << 20))}" "${REPS:=1}"
fi
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps wants a positive number"
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed wants a number"
case $QEMU_CACHE in none|writeback) ;; *) die "--qemu-cache: none or writeback" ;; esac
(( SIZE >= (16 << 20) && SIZE % (1 << 20) == 0 )) ||
    die "--size must be a multiple of 1 MiB, at least 16 MiB"

[ -n "$BUILD" ] || BUILD=$PWD
BUILD=$(cd "$BUILD" && pwd)
SD_CAP=${SENDENSE_CAPTURE:-$BUILD/capture/sendense-capture}
SD_NBD=${SENDENSE_NBD:-$BUILD/server/sendense-nbd}
SD_IMG=${SENDENSE_IMG:-$BUILD/qcow2/sendense-img}
for b in "$SD_CAP" "$SD_NBD" "$SD_IMG"; do
    [ -x "$b" ] || die "$b not built (use --build DIR)"
done

# ------------------------------------------------------------- tools

declare -A PKG_OF=([qemu-nbd]=qemu-utils [qemu-img]=qemu-utils
    [nbdkit]=nbdkit [nbdcopy]=libnbd-bin [nbdinfo]=libnbd-bin)
install_missing() {
    local cmd pkgs=()
    for cmd in "${!PKG_OF[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || pkgs+=("${PKG_OF[$cmd]}")
    done
    [ ${#pkgs[@]} -gt 0 ] || return 0
    mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
    if [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        note "installing missing packages: ${pkgs[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" \
            > /dev/null || note "apt-get install failed"
    fi
}
install_missing
for cmd in "${!PKG_OF[@]}"; do
    command -v "$cmd" >/dev/null || die "$cmd is needed (apt-get install ${PKG_OF[$cmd]})"
done
[ -e "$(nbdkit --dump-config | sed -n 's/^filterdir=//p')/nbdkit-extentlist-filter.so" ] ||
    die "nbdkit's extentlist filter is needed (the nbdcopy incremental)"

# ------------------------------------------------------------- plumbing

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
STEM=$OUT/capture-bench-$MODE-$STAMP
RUNS_CSV=$STEM.runs.csv
RUN=$(mktemp -d /tmp/capture-bench.XXXXXX)             # sockets, configs, logs
DISK_DIR=$(mktemp -d "${SENDENSE_BENCH_DIR:-/var/tmp}/capture-bench.XXXXXX")   # targets
SHM_DIR=$(mktemp -d /dev/shm/capture-bench.XXXXXX)     # the sources
SERVER_PID=
HELPER_PID=
CLK_TCK=$(getconf CLK_TCK)

cleanup() {
    stop_pid HELPER_PID || :
    stop_pid SERVER_PID || :
    rm -rf "$RUN" "$DISK_DIR" "$SHM_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CAN_DROP=0
if [ -w /proc/sys/vm/drop_caches ] && echo 1 > /proc/sys/vm/drop_caches 2>/dev/null
then CAN_DROP=1; fi

# Before every run: no dirty pages of the previous run, cold cache for
# the targets (the sources live in tmpfs, which a drop leaves alone).
settle() {
    sync
    if [ "$CAN_DROP" = 1 ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}

# CPU ticks (user + system, all threads, and reaped children) of a PID.
cpu_ticks() {
    local f
    [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || { echo 0; return; }
    f=$(sed 's/^.*) //' "/proc/$1/stat")
    # Fields after "comm)": state is 1, utime 12 ... cstime 15.
    set -- $f
    echo $(( ${12} + ${13} + ${14} + ${15} ))
}
ticks_s() { awk -v a="$1" -v b="$2" -v t="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / t }'; }

alloc_bytes() { echo $(( $(stat -c '%b * %B' "$1") )); }

stop_pid() {  # stop_pid VARNAME: SIGTERM the PID in $VARNAME, wait, clear it
    local pid=${!1}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || :
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        note "PID $pid did not stop on SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || :
    fi
    wait "$pid" 2>/dev/null || :
    printf -v "$1" ''
}

wait_ready() {  # wait_ready URI PID: the export answers a handshake
    local _
    for _ in $(seq 1 200); do
        nbdinfo --size "$1" > /dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# ------------------------------------------------------------- servers
# Each run starts its server fresh on a private unix socket with the one
# target image as export "bench", and sets URI.

SERVER_LOG=$RUN/server.log
start_sendense() {  # start_sendense IMAGE
    local dir=$RUN/sd
    rm -rf "$dir"; mkdir -p "$dir/exports.d"
    printf 'listen:\n  - unix: %s\nexport_dir: %s\ncontrol_socket: %s\n' \
        "$dir/nbd.sock" "$dir/exports.d" "$dir/control.sock" > "$dir/sendense-nbd.yaml"
    printf 'name: bench\npath: %s\nformat: qcow2\n' "$1" > "$dir/exports.d/bench.yaml"
    "$SD_NBD" --foreground -c "$dir/sendense-nbd.yaml" >> "$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    SD_CTL=$dir/control.sock
    URI="nbd+unix:///bench?socket=$dir/nbd.sock"
    wait_ready "$URI" "$SERVER_PID"
}

start_qemu() {  # start_qemu IMAGE
    local sock=$RUN/qemu.sock
    rm -f "$sock"
    qemu-nbd --cache="$QEMU_CACHE" --aio=io_uring -e 8 -t -f qcow2 -x bench \
        -k "$sock" "$1" >> "$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    URI="nbd+unix:///bench?socket=$sock"
    wait_ready "$URI" "$SERVER_PID"
}

# The nbdcopy incremental's source: the changed disk through nbdkit's
# extentlist filter, which reports only the changed areas as data and
# everything else as holes that read as zeros. nbdcopy --target-is-zero
# then skips all but the changed areas, and -S 0 keeps it from skipping
# zero blocks inside them (a change to zeros must be written). nbdcopy
# copies whole --request-size blocks: 64 KiB, the changes' alignment,
# makes it copy exactly the changed areas.
start_helper() {
    local sock=$RUN/src.sock
    rm -f "$sock"
    nbdkit -r -f -U "$sock" --filter=extentlist file "$SRC1" \
        extentlist="$EXTENTLIST" >> "$RUN/helper.log" 2>&1 &
    HELPER_PID=$!
    SRC_URI="nbd+unix:///?socket=$sock"
    wait_ready "$SRC_URI" "$HELPER_PID"
}

# ------------------------------------------------------------- inputs

SRC0=$SHM_DIR/source.raw          # the disk at the full backup
SRC1=$SHM_DIR/source-changed.raw  # the same disk at the incremental
CHANGES=$SHM_DIR/changes.json
EXTENTLIST=$SHM_DIR/changes.extents
note "making a $((SIZE >> 20)) MiB source disk and its changes in $SHM_DIR"
read -r _ SRC_RUNS _ SRC_DATA _ SRC_ZERO _ SRC_HOLE < <($TOOL mksource "$SRC0" "$SIZE" "$SEED")
read -r _ CHG_AREAS _ CHG_BYTES < <($TOOL mkchange "$SRC0" "$SRC1" "$CHANGES" "$EXTENTLIST" \
    "$CHANGE_FRACTION" $(( SEED + 1 )))

# ------------------------------------------------------------- one run

TOOLS=(capture/sendense-nbd nbdcopy/sendense-nbd nbdcopy/qemu-nbd)
declare -A TAG=([capture/sendense-nbd]=cap-sd [nbdcopy/sendense-nbd]=copy-sd
                [nbdcopy/qemu-nbd]=copy-qemu)

echo "copy,tool,client,server,rep,status,wall_s,client_user_s,client_sys_s,client_cpu_s,server_cpu_s,helper_cpu_s,total_cpu_s,basis_bytes,wire_write_bytes,wire_zero_bytes,wire_write_ops,wire_zero_ops,alloc_bytes,compare,client_summary,note,load1" > "$RUNS_CSV"

record() {  # record FIELD... (every column up to note; load1 is added)
    local IFS=,
    echo "$*,$(cut -d ' ' -f 1 /proc/loadavg)" >> "$RUNS_CSV"
}

fail_run() {  # fail_run COPY TOOL REP WHY
    local client=${2%%/*} server=${2#*/}
    record "$1" "$2" "$client" "$server" "$3" failed "" "" "" "" "" "" "" "" "" "" "" "" "" "" "" "$4"
}

# new_target COPY TOOL FILE: a fresh image made by the server's own tool,
# as sendensed makes them: a plain qcow2 image for a full, an overlay with
# extended L2 entries (subclusters) over the full for an incremental;
# qemu-img makes the same formats for qemu-nbd.
new_target() {
    local copy=$1 tool=$2 file=$3 backing
    backing=$DISK_DIR/full.${TAG[$tool]}.qcow2
    rm -f "$file"
    if [ "$copy" = full ]; then
        if [ "$tool" = nbdcopy/qemu-nbd ]; then qemu-img create -q -f qcow2 "$file" "$SIZE"
        else "$SD_IMG" create -q -f qcow2 "$file" "$SIZE"; fi
    else
        [ -s "$backing" ] || return 1
        if [ "$tool" = nbdcopy/qemu-nbd ]; then
            qemu-img create -q -f qcow2 -b "$backing" -F qcow2 -o extended_l2=on "$file"
        else
            "$SD_IMG" create -q -f qcow2 -b "$backing" -F qcow2 -o extended_l2=on "$file"
        fi
    fi
}

run_copy() {  # run_copy full|incr TOOL REP
    local copy=$1 tool=$2 rep=$3 client=${2%%/*} server=${2#*/}
    local file=$DISK_DIR/$1.${TAG[$2]}.qcow2 src=$SRC0 basis=$SIZE log=$RUN/client.log
    [ "$copy" = incr ] && { src=$SRC1; basis=$CHG_BYTES; }
    : > "$SERVER_LOG"; : > "$log"
    if ! new_target "$copy" "$tool" "$file" > "$log" 2>&1; then
        fail_run "$copy" "$tool" "$rep" "no target image (did the full copy fail?)"
        return 0
    fi
    settle
    if ! "start_${server%%-*}" "$file"; then
        tail -5 "$SERVER_LOG" >&2 || :
        stop_pid SERVER_PID
        fail_run "$copy" "$tool" "$rep" "server did not start"
        return 0
    fi
    local cmd extra=()
    read -r -a extra <<< "$CAPTURE_OPTS"
    case $client:$copy in
    capture:full) cmd=("$SD_CAP" copy --quiet --target-is-zero "${extra[@]}" "$src" "$URI") ;;
    capture:incr) cmd=("$SD_CAP" copy --quiet --changes "$CHANGES" "${extra[@]}" "$src" "$URI") ;;
    nbdcopy:full) cmd=(nbdcopy --flush --target-is-zero "$src" "$URI") ;;
    nbdcopy:incr)
        if ! start_helper; then
            tail -5 "$RUN/helper.log" >&2 || :
            stop_pid HELPER_PID; stop_pid SERVER_PID
            fail_run "$copy" "$tool" "$rep" "nbdkit did not start"
            return 0
        fi
        cmd=(nbdcopy --flush --target-is-zero -S 0 --request-size="$INCR_REQUEST_SIZE"
             "$SRC_URI" "$URI") ;;
    esac
    local c0 c1 h0 h1 rc=0 wall user sys
    c0=$(cpu_ticks "$SERVER_PID"); h0=$(cpu_ticks "$HELPER_PID")
    $TOOL run "$RUN/result" -- "${cmd[@]}" > "$log" 2>&1 || rc=$?
    c1=$(cpu_ticks "$SERVER_PID"); h1=$(cpu_ticks "$HELPER_PID")
    local wire_w='' wire_z='' ops_w='' ops_z=''
    if [ "$server" = sendense-nbd ] &&
        $RPC "$SD_CTL" export.stats '{"name":"bench"}' > "$RUN/stats" 2>&1; then
        read -r wire_w wire_z ops_w ops_z < <($TOOL stats "$RUN/stats")
    fi
    stop_pid HELPER_PID
    stop_pid SERVER_PID
    read -r wall user sys _ < "$RUN/result" || wall=
    local server_cpu helper_cpu=0.000 client_cpu total summary
    server_cpu=$(ticks_s "$c0" "$c1")
    [ "$client:$copy" = nbdcopy:incr ] && helper_cpu=$(ticks_s "$h0" "$h1")
    if [ "$rc" != 0 ] || [ -z "$wall" ]; then
        note "$copy $tool: client exit $rc"; tail -5 "$log" >&2; tail -5 "$SERVER_LOG" >&2
        fail_run "$copy" "$tool" "$rep" "client exit $rc"
        return 0
    fi
    # The helper serves nbdcopy's source view: its CPU is the client's.
    client_cpu=$(awk -v u="$user" -v s="$sys" -v h="$helper_cpu" 'BEGIN { printf "%.3f", u + s + h }')
    total=$(awk -v c="$client_cpu" -v s="$server_cpu" 'BEGIN { printf "%.3f", c + s }')
    summary=$(grep -m 1 '^read ' "$log" | sed 's/,.*//' | tr -s ' ' || :)
    # Correctness: the target (with its backing chain) reads as the disk.
    local cmp
    if qemu-img compare -q -f raw -F qcow2 "$src" "$file" > "$RUN/compare.log" 2>&1; then
        cmp=identical
    else
        case $? in 1) cmp=DIFFERENT ;; *) cmp=compare-error ;; esac
        note "$copy $tool: target $cmp"; head -3 "$RUN/compare.log" >&2
    fi
    record "$copy" "$tool" "$client" "$server" "$rep" ok "$wall" "$user" "$sys" "$client_cpu" \
        "$server_cpu" "$helper_cpu" "$total" "$basis" "$wire_w" "$wire_z" "$ops_w" "$ops_z" \
        "$(alloc_bytes "$file")" "$cmp" "$summary" ""
}

# ------------------------------------------------------------- main

note "mode $MODE: $((SIZE >> 20)) MiB source, $((SRC_DATA >> 20)) MiB data + $((SRC_ZERO >> 20)) MiB zeros allocated in $SRC_RUNS runs; changes $((CHG_BYTES >> 20)) MiB in $CHG_AREAS areas; $REPS repetition(s)"
note "targets in $DISK_DIR; qemu-nbd --cache=$QEMU_CACHE"
T_START=$(date +%s)
LOAD_BEFORE=$(cut -d ' ' -f 1-3 /proc/loadavg)
for rep in $(seq 1 "$REPS"); do
    # Interleaved, so load that comes and goes hits every tool alike.
    for copy in full incr; do
        for tool in "${TOOLS[@]}"; do
            note "rep $rep: $copy $tool (at $(( $(date +%s) - T_START )) s)"
            run_copy "$copy" "$tool" "$rep"
        done
    done
    rm -f "$DISK_DIR"/*.qcow2
done
T_END=$(date +%s)

describe_machine() {
    local dev
    echo "# sendense-capture benchmark, $MODE mode, $STAMP ($(( T_END - T_START )) s)"
    echo "# source: $SIZE bytes (raw, in tmpfs): $SRC_DATA bytes random data and $SRC_ZERO bytes written zeros allocated in $SRC_RUNS runs, $SRC_HOLE bytes holes; seed $SEED"
    echo "# changes: $CHG_BYTES bytes in $CHG_AREAS areas (64 KiB aligned, a tenth of them zeros); $REPS repetition(s), medians"
    echo "# MiB/s: full = source size / wall, incr = changed bytes / wall; wire = WRITE payload sendense-nbd received (export.stats)"
    echo "# cores: $(nproc); cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "# memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); kernel: $(uname -r)"
    echo "# load average before: $LOAD_BEFORE; after: $(cut -d ' ' -f 1-3 /proc/loadavg)"
    dev=$(df --output=source "$DISK_DIR" | tail -n 1)
    echo "# targets: $DISK_DIR on $dev ($(df --output=fstype "$DISK_DIR" | tail -n 1 | tr -d ' ')); page cache dropped before each run: $([ "$CAN_DROP" = 1 ] && echo yes || echo no)"
    # The commit the measured build came from (its Makefile names the
    # tree), not the checkout this script runs from.
    local built_from
    built_from=$(sed -n 's/^abs_top_srcdir = //p' "$BUILD/Makefile" 2>/dev/null || :)
    echo "# sendense: $(git -C "${built_from:-$SRC_DIR}" log -1 --format='%h %s' 2>/dev/null | cut -c 1-70 || echo unknown)"
    echo "# qemu-nbd: $(qemu-nbd --version | head -n 1), --cache=$QEMU_CACHE --aio=io_uring"
    echo "# sendense-capture: its defaults${CAPTURE_OPTS:+ and $CAPTURE_OPTS}; nbdcopy full: --flush --target-is-zero"
    echo "# nbdcopy incremental: --request-size=$INCR_REQUEST_SIZE -S 0 --target-is-zero from nbdkit's extentlist view of the changed disk"
    echo "# nbdcopy: $(nbdcopy --version | head -n 1); nbdkit: $(nbdkit --version | head -n 1)"
}
describe_machine > "$RUN/machine"
$TOOL report "$RUNS_CSV" "$STEM" "$RUN/machine"
note "results: $STEM.txt $STEM.csv $STEM.runs.csv"
