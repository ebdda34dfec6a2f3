#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The NBD server benchmark: sendense-nbd against qemu-nbd, nbdkit and
# nbd-server, each started fresh for every run, on the same workloads, in
# the same run. See bench/README.md for the rows and how to read the table.
#
#   bench/nbd-bench.sh [--quick|--full] [--build DIR] [--out DIR]
#                      [--rows REGEX] [--reps N] [--servers LIST]
#                      [--size N] [--fio-seconds N] [--clients N]
#                      [--exports N] [--idle N] [--no-install]
#
# A benchmark, not a test: it never fails on a slow number. A run that
# fails is recorded as "failed" in its row and the script goes on.
set -euo pipefail

ME=$(basename "$0")
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
SRC_DIR=$(dirname "$BENCH_DIR")
PY=/usr/bin/python3
TOOL="$PY $BENCH_DIR/nbd-bench-tool.py"

MODE=quick
BUILD=
OUT=$BENCH_DIR/results
ROWS_RE=
REPS=
SERVERS="sendense-nbd qemu-nbd nbdkit nbd-server"
SIZE=
FIO_SECONDS=
CLIENTS=64
EXPORTS=1000
IDLE=1000
QUIET_WAIT=180
INSTALL=1

usage() {
    cat <<EOF
Usage: $ME [--quick|--full] [--build DIR] [--out DIR] [--rows REGEX]
           [--reps N] [--servers LIST] [--size N] [--fio-seconds N]
           [--clients N] [--exports N] [--idle N] [--quiet-wait N]
           [--no-install]

  --quick          256 MiB transfers, 3 s fio runs, 1 repetition and a
                   subset of the place/transport matrix (default; minutes)
  --full           4 GiB transfers, 10 s fio runs, 3 repetitions, every
                   row on disk and tmpfs, unix socket and TCP (about two
                   minutes a row: hours for every row)
  --build DIR      build folder holding server/sendense-nbd and
                   qcow2/sendense-img (default: the current folder)
  --out DIR        where the .txt, .csv, .runs.csv and .png go
                   (default bench/results)
  --rows REGEX     only rows whose name matches (grep -E), e.g.
                   'seq-write' or '^rand-.*/tmpfs/'
  --reps N         repetitions per server and row (median, min, max)
  --servers LIST   space- or comma-separated subset of: $SERVERS
  --size N         transfer size in bytes or with K/M/G (overrides the mode)
  --fio-seconds N  length of each time-based fio run
  --clients N      clients (and exports) of the many-clients row (64)
  --exports N      exports in the reload rows (1000)
  --idle N         idle connections of the memory row (1000)
  --quiet-wait N   before each row, wait up to N seconds for the 1-minute
                   load average to fall to the number of cores (180; 0:
                   do not wait)
  --no-install     do not apt-get install missing peers
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
    --build) BUILD=${2:?}; shift ;;
    --out) OUT=${2:?}; shift ;;
    --rows) ROWS_RE=${2:?}; shift ;;
    --reps) REPS=${2:?}; shift ;;
    --servers) SERVERS=${2//,/ }; shift ;;
    --size) SIZE=$(to_bytes "${2:?}"); shift ;;
    --fio-seconds) FIO_SECONDS=${2:?}; shift ;;
    --clients) CLIENTS=${2:?}; shift ;;
    --exports) EXPORTS=${2:?}; shift ;;
    --idle) IDLE=${2:?}; shift ;;
    --quiet-wait) QUIET_WAIT=${2:?}; shift ;;
    --no-install) INSTALL=0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
    shift
done

if [ "$MODE" = full ]; then
    : "${SIZE:=$((4 << 30))}" "${FIO_SECONDS:=10}" "${REPS:=3}"
else
    : "${SIZE:=$((256 << 20))}" "${FIO_SECONDS:=3}" "${REPS:=1}"
fi
[[ $QUIET_WAIT =~ ^[0-9]+$ ]] || die "--quiet-wait wants a number of seconds"
for v in REPS FIO_SECONDS CLIENTS EXPORTS IDLE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "${v,,} wants a positive number"
done
CLUSTER=65536
(( SIZE >= 16 * CLUSTER && SIZE % CLUSTER == 0 )) ||
    die "--size must be a multiple of 64 KiB, at least 1 MiB"

[ -n "$BUILD" ] || BUILD=$PWD
BUILD=$(cd "$BUILD" && pwd)
SD_NBD=${SENDENSE_NBD:-$BUILD/server/sendense-nbd}
SD_PUMP=$BUILD/bench/socket-pump
SD_NBD_PUMP=$BUILD/bench/nbd-pump
SD_IMG=${SENDENSE_IMG:-$BUILD/qcow2/sendense-img}
[ -x "$SD_NBD" ] || die "$SD_NBD not built (use --build DIR)"
[ -x "$SD_IMG" ] || die "$SD_IMG not built (use --build DIR)"

# ------------------------------------------------------------- the peers

# Debian package of each command the harness drives.
declare -A PKG_OF=([qemu-nbd]=qemu-utils [qemu-img]=qemu-utils
    [nbdkit]=nbdkit [nbd-server]=nbd-server [nbdcopy]=libnbd-bin
    [nbdinfo]=libnbd-bin [fio]=fio [openssl]=openssl)

install_missing() {
    local cmd pkgs=()
    for cmd in "${!PKG_OF[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || pkgs+=("${PKG_OF[$cmd]}")
    done
    $PY -c 'import nbd' 2>/dev/null || pkgs+=(python3-libnbd)
    $PY -c 'import matplotlib' 2>/dev/null ||
        command -v gnuplot >/dev/null 2>&1 || pkgs+=(python3-matplotlib)
    [ ${#pkgs[@]} -gt 0 ] || return 0
    mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
    if [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        note "installing missing packages: ${pkgs[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" \
            > /dev/null || note "apt-get install failed; going on without them"
    else
        note "missing packages (not installed): ${pkgs[*]}"
    fi
}
install_missing

for cmd in nbdcopy nbdinfo fio; do
    command -v "$cmd" >/dev/null || die "$cmd is needed (apt-get install ${PKG_OF[$cmd]})"
done
$PY -c 'import nbd' 2>/dev/null || die "$PY needs the nbd module (python3-libnbd)"

# A server is "unavailable" (its rows say so) when its command is missing.
declare -A AVAILABLE=()
for s in $SERVERS; do
    case $s in
    sendense-nbd) AVAILABLE[$s]=1 ;;
    qemu-nbd|nbdkit|nbd-server)
        if command -v "$s" >/dev/null; then AVAILABLE[$s]=1
        else AVAILABLE[$s]=0; note "$s is not installed: its rows say unavailable"; fi ;;
    *) die "unknown server $s" ;;
    esac
done
command -v qemu-img >/dev/null && HAVE_QEMU_IMG=1 || HAVE_QEMU_IMG=0

# ------------------------------------------------------------- plumbing

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
STEM=$OUT/nbd-bench-$MODE-$STAMP
RUNS_CSV=$STEM.runs.csv
RUN=$(mktemp -d /tmp/nbd-bench.XXXXXX)       # sockets, configs, logs
DISK_DIR=$(mktemp -d "${SENDENSE_BENCH_DIR:-/var/tmp}/nbd-bench.XXXXXX")
TMPFS_DIR=$(mktemp -d /dev/shm/nbd-bench.XXXXXX)
SERVER_PIDS=()
SAMPLER_PID=
CLK_TCK=$(getconf CLK_TCK)

cleanup() {
    stop_server || :
    rm -rf "$RUN" "$DISK_DIR" "$TMPFS_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Enough descriptors for a thousand connections on each side.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"

place_dir() { if [ "$1" = disk ]; then echo "$DISK_DIR"; else echo "$TMPFS_DIR"; fi; }

CAN_DROP=0
if [ -w /proc/sys/vm/drop_caches ] && echo 1 > /proc/sys/vm/drop_caches 2>/dev/null
then CAN_DROP=1; fi

# Before a run on disk: no dirty pages of the previous run, cold cache.
settle() {
    [ "$1" = disk ] || return 0
    sync
    if [ "$CAN_DROP" = 1 ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}

now() { date +%s.%N; }
cpu_seconds() { awk -v a="$1" -v b="$2" -v t="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / t }'; }  # TICKS0 TICKS1
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }  # T0 T1
mib_per_s() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }  # BYTES SECS

# The client of a sequential row, the same for every server and the NBD
# pump: nbdcopy of SIZE bytes into or out of URI over N connections
# (WORKLOAD ends in -N).
seq_copy() {  # seq_copy WORKLOAD URI
    case $1 in
    *seq-write-*) nbdcopy --flush -C "${1##*-}" "$SRC_DATA" "$2" ;;
    *) nbdcopy -C "${1##*-}" "$2" null: ;;
    esac
}

# Before each row: a row that follows a heavy one (64 clients, say) would
# otherwise run while writeback and the load of the last still settle.
# Waits until the 1-minute load average is at most the number of cores,
# for at most QUIET_WAIT seconds, and says how long it waited.
wait_for_quiet() {
    local cores waited=0 load
    cores=$(nproc)
    sync
    while :; do
        load=$(cut -d ' ' -f 1 /proc/loadavg)
        awk -v l="$load" -v c="$cores" 'BEGIN { exit !(l <= c) }' && break
        (( waited >= QUIET_WAIT )) && { note "load still $load after ${waited} s; going on"; return 0; }
        sleep 5; waited=$(( waited + 5 ))
    done
    (( waited == 0 )) || note "waited ${waited} s for the load to settle ($load)"
}

# CPU ticks (user + system, own and reaped children) of the given PIDs.
cpu_ticks() {
    local pid total=0 f
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] || continue
        f=$(sed 's/^.*) //' "/proc/$pid/stat")
        # Fields after "comm)": state is 1, utime 12 ... cstime 15.
        set -- $f
        total=$(( total + ${12} + ${13} + ${14} + ${15} ))
        shift $#
    done
    echo "$total"
}

status_kib() {  # status_kib PID FIELD
    sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status" 2>/dev/null || :
}

# Peak memory of the server: the leader's VmHWM plus, for servers that
# fork a process per client (nbd-server), the largest sum of the
# children's VmRSS seen by a sampler every 0.1 s.
start_sampler() {
    local pid=$1 out=$RUN/children-rss
    echo 0 > "$out"
    (
        peak=0
        while kill -0 "$pid" 2>/dev/null; do
            # One cat and one awk per sample, however many children.
            kids=$(pgrep -P "$pid" 2>/dev/null | sed 's#.*#/proc/&/status#' || :)
            sum=0
            if [ -n "$kids" ]; then
                # shellcheck disable=SC2086 # one path per word
                sum=$(cat $kids 2>/dev/null | awk '/^VmRSS:/ { s += $2 } END { print s + 0 }')
            fi
            if (( sum > peak )); then peak=$sum; echo "$peak" > "$out"; fi
            sleep 0.1
        done
    ) &
    SAMPLER_PID=$!
}

peak_rss_kib() {
    local pid total=0 h
    for pid in "${SERVER_PIDS[@]}"; do
        h=$(status_kib "$pid" VmHWM); total=$(( total + ${h:-0} ))
    done
    if [ -n "$SAMPLER_PID" ]; then
        # Empty while the sampler rewrites it (or before its first write).
        h=$(cat "$RUN/children-rss" 2>/dev/null); total=$(( total + ${h:-0} ))
    fi
    echo "$total"
}

echo "row,workload,target,place,transport,server,rep,status,value,unit,bytes,requests,seconds,cpu_s,rss_kib,alloc_bytes,written_bytes,note,load1" > "$RUNS_CSV"

# record ROW SERVER REP STATUS VALUE UNIT BYTES REQUESTS SECONDS CPU RSS ALLOC WRITTEN NOTE
record() {
    local row=$1 w t p x
    IFS=/ read -r w t p x <<< "$row"
    shift
    local IFS=, load
    # The 1-minute load average: other work on the machine skews a run.
    load=$(cut -d ' ' -f 1 /proc/loadavg)
    echo "$row,$w,$t,$p,$x,$*,$load" >> "$RUNS_CSV"
}

# ------------------------------------------------------------- servers
#
# start_server SERVER TRANSPORT TLS EXPORTS-FILE [MAXCONN]
# EXPORTS-FILE has one "NAME PATH FORMAT" line per export. Sets
# SERVER_PIDS and URI[NAME] (the libnbd URI of each export, with the TLS
# certificates when TLS is on). Returns 1 (and logs why) when the server
# does not come up.

declare -A URI=()
SERVER_LOG=$RUN/server.log
TLS_DIR=$RUN/tls

make_uri() {  # make_uri TRANSPORT TLS SOCKET PORT NAME
    local scheme=nbd q=
    [ "$2" = 1 ] && scheme=nbds
    if [ "$1" = unix ]; then
        q="?socket=$3"
        [ "$2" = 1 ] && q="$q&tls-certificates=$TLS_DIR/client"
        echo "$scheme+unix:///$5$q"
    else
        [ "$2" = 1 ] && q="?tls-certificates=$TLS_DIR/client"
        echo "$scheme://127.0.0.1:$4/$5$q"
    fi
}

wait_ready() {  # wait_ready URI PID: the export answers a handshake
    local i
    for i in $(seq 1 200); do
        nbdinfo --size "$1" > /dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

start_sendense() {
    local transport=$1 tls=$2 exports=$3 dir=$RUN/sd name path fmt port i
    rm -rf "$dir"; mkdir -p "$dir/exports.d"
    port=$($TOOL port)
    {
        echo "listen:"
        echo "  - tcp: 127.0.0.1:$port"
        echo "  - unix: $dir/nbd.sock"
        echo "export_dir: $dir/exports.d"
        echo "control_socket: $dir/control.sock"
        if [ "$tls" = 1 ]; then
            echo "tls: {mode: required, cert: $TLS_DIR/server-cert.pem, key: $TLS_DIR/server-key.pem}"
        fi
    } > "$dir/sendense-nbd.yaml"
    while read -r name path fmt; do
        printf 'name: %s\npath: %s\nformat: %s\n' "$name" "$path" "$fmt" \
            > "$dir/exports.d/$name.yaml"
        URI[$name]=$(make_uri "$transport" "$tls" "$dir/nbd.sock" "$port" "$name")
    done < "$exports"
    "$SD_NBD" --foreground -c "$dir/sendense-nbd.yaml" >> "$SERVER_LOG" 2>&1 &
    SERVER_PIDS=($!)
    SD_CTL=$dir/control.sock
    SD_EXPORTS=$dir/exports.d
    for i in $(seq 1 200); do
        [ -S "$SD_CTL" ] && $TOOL rpc-time "$SD_CTL" server.info > /dev/null 2>&1 && break
        kill -0 "${SERVER_PIDS[0]}" 2>/dev/null || return 1
        sleep 0.05
    done
    wait_ready "${URI[$(head -n 1 "$exports" | cut -d ' ' -f 1)]}" "${SERVER_PIDS[0]}"
}

# One qemu-nbd process per export (it serves one image).
start_qemu() {
    local transport=$1 tls=$2 exports=$3 maxconn=${4:-8} name path fmt
    local port sock cache=none args n=0
    while read -r name path fmt; do
        n=$((n + 1))
        sock=$RUN/qemu-$n.sock; port=$($TOOL port)
        # tmpfs has no O_DIRECT: there the page cache is the only choice.
        case $path in /dev/shm/*) cache=writeback ;; *) cache=none ;; esac
        args=(--cache="$cache" --aio=io_uring -e "$maxconn" -t -f "$fmt" -x "$name")
        if [ "$transport" = unix ]; then args+=(-k "$sock")
        else args+=(-b 127.0.0.1 -p "$port"); fi
        if [ "$tls" = 1 ]; then
            args+=(--object "tls-creds-x509,id=tls0,dir=$TLS_DIR/server,endpoint=server,verify-peer=off"
                   --tls-creds tls0)
        fi
        qemu-nbd "${args[@]}" "$path" >> "$SERVER_LOG" 2>&1 &
        SERVER_PIDS+=($!)
        URI[$name]=$(make_uri "$transport" "$tls" "$sock" "$port" "$name")
    done < "$exports"
    local i=0
    while read -r name path fmt; do
        wait_ready "${URI[$name]}" "${SERVER_PIDS[$i]}" || return 1
        i=$((i + 1))
    done < "$exports"
}

# nbdkit's file plugin serves one file, or with dir= every file of a
# folder as an export of the same name.
start_nbdkit() {
    local transport=$1 tls=$2 exports=$3 sock=$RUN/nbdkit.sock port name path fmt
    local args=(-f --exit-with-parent) plugin
    port=$($TOOL port)
    rm -f "$sock"      # left behind by the previous run's nbdkit
    if [ "$(wc -l < "$exports")" -gt 1 ]; then
        plugin=(file "dir=$(dirname "$(head -n 1 "$exports" | cut -d ' ' -f 2)")")
    else
        plugin=(file "$(cut -d ' ' -f 2 "$exports")")
    fi
    if [ "$transport" = unix ]; then args+=(-U "$sock"); else args+=(-i 127.0.0.1 -p "$port"); fi
    [ "$tls" = 1 ] && args+=(--tls=require "--tls-certificates=$TLS_DIR/server")
    while read -r name path fmt; do
        [ "$fmt" = raw ] || return 2
        URI[$name]=$(make_uri "$transport" "$tls" "$sock" "$port" "$(basename "$path")")
    done < "$exports"
    nbdkit "${args[@]}" "${plugin[@]}" >> "$SERVER_LOG" 2>&1 &
    SERVER_PIDS=($!)
    wait_ready "${URI[$(head -n 1 "$exports" | cut -d ' ' -f 1)]}" "${SERVER_PIDS[0]}"
}

# nbd-server daemonizes (with -d it would serve a single client) and
# forks a process per client; its PID comes from its pid file.
start_nbd_server() {
    local transport=$1 tls=$2 exports=$3 conf=$RUN/nbd-server.conf port i
    local sock=$RUN/nbd-server.sock name path fmt
    port=$($TOOL port)
    rm -f "$sock" "$RUN/nbd-server.pid"
    {
        echo "[generic]"
        echo "listenaddr = 127.0.0.1"
        echo "port = $port"
        [ "$transport" = unix ] && echo "unixsock = $sock"
        if [ "$tls" = 1 ]; then
            echo "certfile = $TLS_DIR/server-cert.pem"
            echo "keyfile = $TLS_DIR/server-key.pem"
            echo "cacertfile = $TLS_DIR/ca-cert.pem"     # it will not start without
            echo "force_tls = true"
        fi
        while read -r name path fmt; do
            [ "$fmt" = raw ] || return 2
            # flush and fua are off by default; nbdcopy --flush needs them.
            printf '[%s]\nexportname = %s\nflush = true\nfua = true\n' "$name" "$path"
            URI[$name]=$(make_uri "$transport" "$tls" "$sock" "$port" "$name")
        done < "$exports"
    } > "$conf"
    nbd-server -C "$conf" -p "$RUN/nbd-server.pid" >> "$SERVER_LOG" 2>&1 || return 1
    for i in $(seq 1 100); do
        [ -s "$RUN/nbd-server.pid" ] && break
        sleep 0.05
    done
    local pid=
    read -r pid < "$RUN/nbd-server.pid" 2>/dev/null || return 1
    SERVER_PIDS=("$pid")
    start_sampler "${SERVER_PIDS[0]}"
    wait_ready "${URI[$(head -n 1 "$exports" | cut -d ' ' -f 1)]}" "${SERVER_PIDS[0]}"
}

# After the clients: wait (up to 5 s) until nbd-server has reaped its
# per-client processes, whose CPU time it then counts as its own.
children_gone() {
    local i
    [ -n "$SAMPLER_PID" ] || return 0
    for i in $(seq 1 100); do
        pgrep -P "${SERVER_PIDS[0]}" > /dev/null || return 0
        sleep 0.05
    done
}

start_server() {  # SERVER TRANSPORT TLS EXPORTS [MAXCONN]
    SERVER_PIDS=(); URI=(); SAMPLER_PID=
    : > "$SERVER_LOG"
    case $1 in
    sendense-nbd) start_sendense "${@:2}" ;;
    qemu-nbd) start_qemu "${@:2}" ;;
    nbdkit) start_nbdkit "${@:2}" ;;
    nbd-server) start_nbd_server "${@:2}" ;;
    esac
}

stop_server() {
    local pid i
    for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || :; done
    for pid in "${SERVER_PIDS[@]}"; do
        for i in $(seq 1 200); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null; then
            note "server PID $pid did not stop on SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || :
        fi
        wait "$pid" 2>/dev/null || :
    done
    if [ -n "$SAMPLER_PID" ]; then wait "$SAMPLER_PID" 2>/dev/null || :; fi
    SERVER_PIDS=(); SAMPLER_PID=
}

# Which server can serve which target.
supports() {  # supports SERVER TARGET TLS
    case $1:$2 in
    nbdkit:raw|nbd-server:raw|sendense-nbd:*|qemu-nbd:*) return 0 ;;
    esac
    return 1
}

# ------------------------------------------------------------- targets

# Shared inputs per place: a data file (the nbdcopy source and the raw
# image of read rows), the same data as qcow2 (read rows and the backing
# file of overlays). Made once, lazily.
declare -A MADE=()
SRC_DATA=$TMPFS_DIR/source.data       # nbdcopy's source: on tmpfs, free to read
ensure_inputs() {  # ensure_inputs PLACE
    local dir
    dir=$(place_dir "$1")
    if [ -z "${MADE[source]:-}" ]; then
        $TOOL mkdata "$SRC_DATA" "$SIZE"; MADE[source]=1
    fi
    if [ -z "${MADE[$1]:-}" ]; then
        cp "$SRC_DATA" "$dir/full.raw"
        if [ "$HAVE_QEMU_IMG" = 1 ]; then
            qemu-img convert -f raw -O qcow2 "$dir/full.raw" "$dir/full.qcow2"
        else
            "$SD_IMG" convert -f raw -O qcow2 "$dir/full.raw" "$dir/full.qcow2"
        fi
        MADE[$1]=1
    fi
}

# new_target SERVER TARGET PLACE FILE: an empty image for a write row,
# made by the server's own tool: sendense-img for sendense-nbd (overlays
# with extended L2, as the catalog makes incrementals), qemu-img for
# qemu-nbd (its defaults: plain L2).
new_target() {
    local server=$1 target=$2 place=$3 file=$4 backing
    backing=$(place_dir "$place")/full.qcow2
    rm -f "$file"
    case $target in
    raw) truncate -s "$SIZE" "$file" ;;
    qcow2)
        if [ "$server" = qemu-nbd ]; then qemu-img create -q -f qcow2 "$file" "$SIZE"
        else "$SD_IMG" create -q -f qcow2 "$file" "$SIZE"; fi ;;
    overlay)
        if [ "$server" = qemu-nbd ]; then
            qemu-img create -q -f qcow2 -b "$backing" -F qcow2 "$file"
        else
            "$SD_IMG" create -q -f qcow2 -b "$backing" -F qcow2 -o extended_l2=on "$file"
        fi ;;
    esac
}

target_format() { if [ "$1" = raw ]; then echo raw; else echo qcow2; fi; }

alloc_bytes() { echo $(( $(stat -c '%b * %B' "$1") )); }

# ------------------------------------------------------------- one run

# run_one ROW SERVER REP: start the server, run the row's client, record.
run_one() {
    local row=$1 server=$2 rep=$3 workload target place transport
    IFS=/ read -r workload target place transport <<< "$row"
    local tls=0 dir file fmt exports=$RUN/exports clientlog=$RUN/client.log
    [[ $workload == tls-* ]] && tls=1
    dir=$(place_dir "$place")
    fmt=$(target_format "$target")
    : > "$clientlog"

    if [ "${AVAILABLE[$server]}" != 1 ]; then
        record "$row" "$server" "$rep" unavailable "" "" "" "" "" "" "" "" "" "not installed"
        return 0
    fi
    if ! supports "$server" "$target" "$tls"; then
        record "$row" "$server" "$rep" n/a "" "" "" "" "" "" "" "" "" "cannot serve $target"
        return 0
    fi
    ensure_inputs "$place"

    case $workload in
    clients-*) run_clients "$row" "$server" "$rep"; return 0 ;;
    reload-*|idle-*) run_control "$row" "$server" "$rep"; return 0 ;;
    esac

    # The image this run uses.
    case $workload in
    *seq-read*|rand-*)
        if [ "$target" = raw ]; then file=$dir/full.raw; else file=$dir/full.qcow2; fi ;;
    *)
        file=$dir/target.$server.$fmt
        new_target "$server" "$target" "$place" "$file" ;;
    esac
    echo "bench $file $fmt" > "$exports"
    settle "$place"

    if ! start_server "$server" "$transport" "$tls" "$exports"; then
        note "$row $server: server did not start"; tail -5 "$SERVER_LOG" >&2 || :
        stop_server
        record "$row" "$server" "$rep" failed "" "" "" "" "" "" "" "" "" "server did not start"
        return 0
    fi
    local uri=${URI[bench]} t0 t1 c0 c1 rc=0 value unit bytes reqs=0 secs
    c0=$(cpu_ticks "${SERVER_PIDS[@]}")
    t0=$(now)
    case $workload in
    *seq-*)
        bytes=$SIZE
        seq_copy "$workload" "$uri" > "$clientlog" 2>&1 || rc=$? ;;
    rand-*|scatter-*)
        run_fio "$workload" "$uri" nbd > "$clientlog" 2>&1 || rc=$? ;;
    esac
    t1=$(now)
    children_gone
    c1=$(cpu_ticks "${SERVER_PIDS[@]}")
    local rss
    rss=$(peak_rss_kib)
    stop_server
    local cpu
    cpu=$(cpu_seconds "$c0" "$c1")
    if [ "$rc" != 0 ]; then
        note "$row $server: client failed (exit $rc)"; tail -5 "$clientlog" >&2
        tail -5 "$SERVER_LOG" >&2
        record "$row" "$server" "$rep" failed "" "" "" "" "" "$cpu" "$rss" "" "" "client exit $rc"
        return 0
    fi
    secs=$(elapsed "$t0" "$t1")
    local alloc='' written=''
    case $workload in
    rand-*|scatter-*)
        read -r value unit bytes reqs secs < <(fio_result "$clientlog" "$workload") ;;
    *)
        value=$(mib_per_s "$bytes" "$secs")
        unit=MiB/s ;;
    esac
    # Space amplification only where the image started empty (the random
    # rows overwrite a full file).
    case $workload in
    *seq-write-*|scatter-*)
        written=$bytes; alloc=$(alloc_bytes "$file") ;;
    esac
    record "$row" "$server" "$rep" ok "$value" "$unit" "$bytes" "$reqs" "$secs" "$cpu" "$rss" "$alloc" "$written" ""
    case $workload in *seq-write*|scatter-*) rm -f "$file" ;; esac
}

# fio: random 4 KiB at QD32 (time based), or 10 % of the image in
# scattered 64 KiB writes at QD16 from a fixed seed, cluster-aligned or
# 4 KiB past each cluster boundary (the copy-on-write case).
run_fio() {  # run_fio WORKLOAD URI-OR-FILE nbd|file
    local workload=$1 where=$2 how=$3 args
    args=(--name=bench --output-format=json --group_reporting)
    if [ "$how" = nbd ]; then args+=(--ioengine=nbd "--uri=$where")
    else
        args+=(--ioengine=io_uring "--filename=$where")
        # O_DIRECT where the file system has it (not tmpfs).
        case $where in /dev/shm/*) args+=(--direct=0) ;; *) args+=(--direct=1) ;; esac
    fi
    case $workload in
    rand-write-4k) args+=(--rw=randwrite --bs=4k --iodepth=32 --time_based
                          "--runtime=${FIO_RUNTIME:-$FIO_SECONDS}" --size="$SIZE" --norandommap --randrepeat=0) ;;
    rand-read-4k) args+=(--rw=randread --bs=4k --iodepth=32 --time_based
                         "--runtime=${FIO_RUNTIME:-$FIO_SECONDS}" --size="$SIZE" --norandommap --randrepeat=0) ;;
    # nbdcopy's pattern: 256 KiB requests, 64 in flight per connection;
    # --flush at the end of a write.
    seq-write-*) args+=(--rw=write --bs=256k "--iodepth=$(( 64 * ${workload##*-} ))"
                        --size="$SIZE" --end_fsync=1) ;;
    seq-read-*) args+=(--rw=read --bs=256k "--iodepth=$(( 64 * ${workload##*-} ))"
                       --size="$SIZE") ;;
    scatter-64k-*)
        local offset=0 io
        [ "$workload" = scatter-64k-4k ] && offset=4096
        io=$(( SIZE / 10 / CLUSTER * CLUSTER ))
        args+=(--rw=randwrite --bs=64k --iodepth=16 --offset="$offset"
               --size=$(( SIZE - CLUSTER )) --io_size="$io" --blockalign=64k
               --randrepeat=1 --randseed=20261122 --end_fsync=1) ;;
    esac
    fio "${args[@]}"
}

# fio_result JSON-LOG WORKLOAD: "VALUE UNIT BYTES REQUESTS SECONDS"
fio_result() {
    $PY - "$1" "$2" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
doc = json.loads(text[text.index("{"):])
job = doc["jobs"][0]
side = job["write"] if "write" in sys.argv[2] or "scatter" in sys.argv[2] else job["read"]
secs = side["runtime"] / 1000.0 or 1e-9
if sys.argv[2].startswith("rand-"):
    print("%.0f IOPS %d %d %.3f" % (side["iops"], side["io_bytes"], side["total_ios"], secs))
else:
    print("%.1f MiB/s %d %d %.3f" % (side["io_bytes"] / 1048576 / secs, side["io_bytes"],
                                      side["total_ios"], secs))
EOF
}

# The device ceiling: the same fio pattern on the file itself.
run_ceiling() {  # run_ceiling ROW REP
    local row=$1 rep=$2 workload target place transport dir log=$RUN/client.log
    IFS=/ read -r workload target place transport <<< "$row"
    dir=$(place_dir "$place")
    ensure_inputs "$place"
    # Sequential writes go to a new sparse file, as the servers' do.
    local file=$dir/full.raw
    case $workload in
    seq-write-*) file=$dir/ceiling.raw; rm -f "$file"; truncate -s "$SIZE" "$file" ;;
    esac
    settle "$place"
    if run_fio "$workload" "$file" file > "$log" 2>&1; then
        local value unit bytes reqs secs
        read -r value unit bytes reqs secs < <(fio_result "$log" "$workload")
        record "$row" file "$rep" ok "$value" "$unit" "$bytes" "$reqs" "$secs" "" "" "" "" "fio on the file"
    else
        tail -5 "$log" >&2
        record "$row" file "$rep" failed "" "" "" "" "" "" "" "" "" "fio on the file failed"
    fi
    [ "$file" = "$dir/ceiling.raw" ] && rm -f "$file"
    return 0
}

# pump_available ROW REP BINARY [NAME]: without BINARY built, the row's
# pump (NAME, default pump) is recorded as unavailable (status 1); else
# the place's inputs are made.
pump_available() {
    local workload target place transport
    IFS=/ read -r workload target place transport <<< "$1"
    if [ ! -x "$3" ]; then
        record "$1" "${4:-pump}" "$2" unavailable "" "" "" "" "" "" "" "" "" "no $3"
        return 1
    fi
    ensure_inputs "$place"
}

# Starts a pump (its command line) as the server and waits until it
# listens.
start_pump() {
    local i
    SERVER_PIDS=(); SAMPLER_PID=
    rm -f "$RUN/pump.sock"
    "$@" > "$SERVER_LOG" 2>&1 &
    SERVER_PIDS=($!)
    for i in $(seq 1 200); do
        grep -q '^listening' "$SERVER_LOG" && break
        sleep 0.02
    done
}

# The NBD ceiling of a random row, and of a sequential row on disk (one
# connection or several: the pump serves each on a thread of its own and
# offers multi-conn, as sendense-nbd does): the same client (fio, or
# nbdcopy) against the least NBD server there can be (bench/nbd-pump.c:
# a pread or pwrite per request, one trip into the kernel per batch).
# Its CPU is what the kernel, the machine and that client's way of
# talking cost any NBD server. Random reads on disk
# and the sequential rows take its pipelined mode (--ring,
# bench/nbd-pump-ring.c): every request's I/O in flight at once through
# io_uring, each reply sent as its I/O completes, since one pread after
# another would wait for the device each time; the sequential rows also
# open the file O_DIRECT (--direct), as sendense-nbd and the socket pump
# read and write large requests on a device. It writes a raw file in
# every target's row: it has no image format. It offers structured
# replies (--structured), as the servers do: libnbd's clients take them,
# and a read's data chunk costs the client more to take apart than a
# simple reply (bench/README.md, twelfth session).
run_nbd_pump() {  # run_nbd_pump ROW REP (ROW as run_one takes it)
    local row=$1 rep=$2 workload target place transport dir addr uri
    local file mode=(--structured)
    IFS=/ read -r workload target place transport <<< "$row"
    dir=$(place_dir "$place")
    file=$dir/full.raw
    if [[ $workload == seq-* ]]; then mode+=(--ring --direct)
    elif [[ $workload == rand-read-* && $place == disk ]]; then mode+=(--ring); fi
    pump_available "$row" "$rep" "$SD_NBD_PUMP" nbd-pump || return 0
    if [[ $workload == seq-write-* ]]; then
        file=$dir/nbd-pump.raw; rm -f "$file"; truncate -s "$SIZE" "$file"
    fi
    local port
    port=$($TOOL port)
    if [ "$transport" = unix ]; then addr=unix:$RUN/pump.sock
    else addr=tcp:$port; fi
    uri=$(make_uri "$transport" 0 "$RUN/pump.sock" "$port" bench)
    settle "$place"
    start_pump "$SD_NBD_PUMP" "${mode[@]}" "$addr" "$file"
    local t0 t1 c0 c1 rc=0 value unit bytes reqs=0 secs cpu rss
    c0=$(cpu_ticks "${SERVER_PIDS[@]}")
    t0=$(now)
    case $workload in
    seq-*)
        seq_copy "$workload" "$uri" > "$RUN/client.log" 2>&1 || rc=$? ;;
    *)
        run_fio "$workload" "$uri" nbd > "$RUN/client.log" 2>&1 || rc=$? ;;
    esac
    t1=$(now)
    c1=$(cpu_ticks "${SERVER_PIDS[@]}")
    rss=$(peak_rss_kib)
    kill -0 "${SERVER_PIDS[0]}" 2>/dev/null || rc=1
    stop_server
    [[ $workload == seq-write-* ]] && rm -f "$file"
    cpu=$(cpu_seconds "$c0" "$c1")
    if [ "$rc" != 0 ]; then
        tail -3 "$RUN/client.log" "$SERVER_LOG" >&2
        record "$row" nbd-pump "$rep" failed "" "" "" "" "" "$cpu" "$rss" "" "" "nbd pump failed"
        return 0
    fi
    case $workload in
    seq-*)
        bytes=$SIZE
        secs=$(elapsed "$t0" "$t1")
        value=$(mib_per_s "$bytes" "$secs")
        unit=MiB/s ;;
    *)
        read -r value unit bytes reqs secs < <(fio_result "$RUN/client.log" "$workload") ;;
    esac
    record "$row" nbd-pump "$rep" ok "$value" "$unit" "$bytes" "$reqs" "$secs" "$cpu" "$rss" "" "" "nbd pump ${mode[*]}"
}

# The transport ceiling of a one-connection sequential row: the same
# bytes between the same source and file through the same kind of socket
# (and TLS in the TLS rows), with no protocol (bench/socket-pump.c). Its
# listening side stands where the server stands; its CPU is measured the
# same way.
run_pump() {  # run_pump ROW REP
    local row=$1 rep=$2 workload target place transport dir file= addr
    IFS=/ read -r workload target place transport <<< "$row"
    dir=$(place_dir "$place")
    pump_available "$row" "$rep" "$SD_PUMP" || return 0
    if [ "$transport" = unix ]; then addr=unix:$RUN/pump.sock
    else addr=tcp:$($TOOL port); fi
    local serve=(--from "$dir/full.raw") client=(--to-null)
    case $workload in
    *seq-write-*)
        file=$dir/pump.raw; rm -f "$file"; truncate -s "$SIZE" "$file"
        serve=(--to "$file"); client=(--from "$SRC_DATA" --size "$SIZE") ;;
    esac
    if [[ $workload == tls-* ]]; then
        serve+=(--tls "$TLS_DIR/server-cert.pem" "$TLS_DIR/server-key.pem"); client+=(--tls)
    fi
    settle "$place"
    start_pump "$SD_PUMP" listen "$addr" "${serve[@]}"
    local t0 t1 c0 c1 rc=0
    c0=$(cpu_ticks "${SERVER_PIDS[@]}")
    t0=$(now)
    "$SD_PUMP" connect "$addr" "${client[@]}" > "$RUN/client.log" 2>&1 || rc=$?
    t1=$(now)
    c1=$(cpu_ticks "${SERVER_PIDS[@]}")
    local rss cpu secs value
    rss=$(peak_rss_kib)
    kill -0 "${SERVER_PIDS[0]}" 2>/dev/null || rc=1
    stop_server
    cpu=$(cpu_seconds "$c0" "$c1")
    [ -n "$file" ] && rm -f "$file"
    if [ "$rc" != 0 ]; then
        tail -3 "$RUN/client.log" "$SERVER_LOG" >&2
        record "$row" pump "$rep" failed "" "" "" "" "" "$cpu" "$rss" "" "" "socket pump failed"
        return 0
    fi
    secs=$(elapsed "$t0" "$t1")
    value=$(mib_per_s "$SIZE" "$secs")
    record "$row" pump "$rep" ok "$value" MiB/s "$SIZE" 0 "$secs" "$cpu" "$rss" "" "" "socket pump"
}

# Many clients: N exports (one file each), N nbdcopy at once, each
# writing SIZE/16 (at least 1 MiB) into its own export.
run_clients() {
    local row=$1 server=$2 rep=$3 workload target place transport
    IFS=/ read -r workload target place transport <<< "$row"
    local dir sub exports=$RUN/exports each i pids=() rc=0 t0 t1 c0 c1
    dir=$(place_dir "$place"); sub=$dir/clients
    each=$(( SIZE / 16 )); (( each >= 1048576 )) || each=1048576
    head -c "$each" "$SRC_DATA" > "$RUN/client.data"
    rm -rf "$sub"; mkdir -p "$sub"; : > "$exports"
    for i in $(seq 1 "$CLIENTS"); do
        truncate -s "$each" "$sub/c$i"
        echo "c$i $sub/c$i raw" >> "$exports"
    done
    settle "$place"
    if ! start_server "$server" "$transport" 0 "$exports"; then
        stop_server
        record "$row" "$server" "$rep" failed "" "" "" "" "" "" "" "" "" "server did not start"
        return 0
    fi
    c0=$(cpu_ticks "${SERVER_PIDS[@]}")
    t0=$(now)
    for i in $(seq 1 "$CLIENTS"); do
        nbdcopy --flush "$RUN/client.data" "${URI[c$i]}" > "$RUN/client-$i.log" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || rc=$?; done
    t1=$(now)
    children_gone
    c1=$(cpu_ticks "${SERVER_PIDS[@]}")
    local rss cpu bytes=$(( each * CLIENTS )) secs value alloc=0
    rss=$(peak_rss_kib)
    stop_server
    cpu=$(cpu_seconds "$c0" "$c1")
    if [ "$rc" != 0 ]; then
        cat "$RUN"/client-*.log | sort | uniq -c | head -5 >&2
        record "$row" "$server" "$rep" failed "" "" "" "" "" "$cpu" "$rss" "" "" "a client failed"
        return 0
    fi
    for i in $(seq 1 "$CLIENTS"); do alloc=$(( alloc + $(alloc_bytes "$sub/c$i") )); done
    secs=$(elapsed "$t0" "$t1")
    value=$(mib_per_s "$bytes" "$secs")
    record "$row" "$server" "$rep" ok "$value" MiB/s "$bytes" "$CLIENTS" "$secs" "$cpu" "$rss" "$alloc" "$bytes" "$CLIENTS clients"
    rm -rf "$sub"
}

# reload-*: sendense-nbd's server.reload timed by the caller, with
# EXPORTS export files, while fio runs random reads on another export.
#   reload-add-N    the folder goes from 1 export to N+1: N new exports
#   reload-same-N   nothing changed in a folder of N+1 exports
# idle-N: memory per idle connection (VmRSS growth / N), any server.
run_control() {
    local row=$1 server=$2 rep=$3 workload target place transport
    IFS=/ read -r workload target place transport <<< "$row"
    local dir exports=$RUN/exports
    dir=$(place_dir "$place")
    echo "bench $dir/full.raw raw" > "$exports"
    case $workload in
    reload-*)
        if [ "$server" != sendense-nbd ]; then
            record "$row" "$server" "$rep" n/a "" "" "" "" "" "" "" "" "" "no reload call"
            return 0
        fi ;;
    idle-*)
        if [ "$server" = nbd-server ]; then
            record "$row" "$server" "$rep" n/a "" "" "" "" "" "" "" "" "" "a process per client"
            return 0
        fi ;;
    esac
    if ! start_server "$server" "$transport" 0 "$exports" $(( IDLE + 8 )); then
        stop_server
        record "$row" "$server" "$rep" failed "" "" "" "" "" "" "" "" "" "server did not start"
        return 0
    fi
    case $workload in
    reload-*) measure_reload "$row" "$server" "$rep" "$workload" ;;
    idle-*) measure_idle "$row" "$server" "$rep" ;;
    esac
    stop_server
}

measure_reload() {
    local row=$1 server=$2 rep=$3 workload=$4 sub i fio_pid rc=0 out ms
    sub=$(place_dir disk)/reload
    rm -rf "$sub"; mkdir -p "$sub"
    # The files are in place before the client starts; the server reads
    # the folder only when told to reload.
    for i in $(seq 1 "$EXPORTS"); do
        : > "$sub/r$i.raw"
        printf 'name: r%d\npath: %s/r%d.raw\nformat: raw\n' "$i" "$sub" "$i" > "$SD_EXPORTS/r$i.yaml"
    done
    if [ "$workload" = "reload-same-$EXPORTS" ]; then
        $TOOL rpc-time "$SD_CTL" server.reload > /dev/null || rc=$?
    fi
    FIO_RUNTIME=$(( FIO_SECONDS > 2 ? FIO_SECONDS : 2 )) \
        run_fio rand-read-4k "${URI[bench]}" nbd > "$RUN/client.log" 2>&1 &
    fio_pid=$!
    sleep 0.5     # the client is in its steady state
    local c0 c1
    c0=$(cpu_ticks "${SERVER_PIDS[@]}")
    out=$($TOOL rpc-time "$SD_CTL" server.reload 2> "$RUN/rpc.err") || rc=$?
    c1=$(cpu_ticks "${SERVER_PIDS[@]}")
    ms=$(head -n 1 <<< "$out")
    local served
    served=$($TOOL rpc-time "$SD_CTL" server.info | tail -n 1 |
             $PY -c 'import json,sys; print(json.load(sys.stdin).get("exports", ""))' 2>/dev/null || :)
    kill -0 "$fio_pid" 2>/dev/null || { note "the client ended before the reload"; rc=1; }
    wait "$fio_pid" || rc=$?
    local rss cpu
    rss=$(peak_rss_kib)
    cpu=$(cpu_seconds "$c0" "$c1")
    if [ "$rc" = 0 ] && [ "$served" != $(( EXPORTS + 1 )) ]; then
        note "$row: $served exports after the reload, expected $(( EXPORTS + 1 ))"; rc=1
    fi
    if [ "$rc" != 0 ] || [ -z "$ms" ]; then
        cat "$RUN/rpc.err" >&2; tail -5 "$RUN/client.log" >&2
        record "$row" "$server" "$rep" failed "" "" "" "" "" "$cpu" "$rss" "" "" "reload or client failed"
    else
        record "$row" "$server" "$rep" ok "$ms" ms "" 1 "$(awk -v m="$ms" 'BEGIN { printf "%.4f", m / 1000 }')" \
            "$cpu" "$rss" "" "" "$served exports after; the client ran through it"
    fi
    rm -rf "$sub"
}

measure_idle() {
    local row=$1 server=$2 rep=$3 before after kib fifo=$RUN/idle.fifo pid line
    sleep 0.2
    before=$(status_kib "${SERVER_PIDS[0]}" VmRSS)
    rm -f "$fifo"; mkfifo "$fifo"
    $TOOL idle "${URI[bench]}" "$IDLE" < "$fifo" > "$RUN/idle.out" 2>&1 &
    pid=$!
    exec 9> "$fifo"
    line=
    for _ in $(seq 1 600); do
        line=$(grep -o '^ready [0-9]*' "$RUN/idle.out" || :)
        [ -n "$line" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 0.3
    after=$(status_kib "${SERVER_PIDS[0]}" VmRSS)
    exec 9>&-
    wait "$pid" || :
    if [ -z "$line" ] || [ -z "$after" ]; then
        tail -3 "$RUN/idle.out" >&2
        record "$row" "$server" "$rep" failed "" "" "" "" "" "" "" "" "" "connections failed"
        return 0
    fi
    kib=$(awk -v a="$before" -v b="$after" -v n="$IDLE" 'BEGIN { printf "%.2f", (b - a) / n }')
    record "$row" "$server" "$rep" ok "$kib" KiB/conn "" "$IDLE" "" "" "$after" "" "" "RSS $before -> $after KiB"
}

# ------------------------------------------------------------- the rows

# WORKLOAD/TARGET/PLACE/TRANSPORT, one per line.
list_rows() {
    local w t p x
    if [ "$MODE" = full ]; then
        # TCP for the raw rows (the transport, not the format, differs);
        # TLS over TCP only; many clients on disk only (64 x SIZE/16
        # would not fit in /dev/shm next to the other files).
        for p in disk tmpfs; do
            for w in seq-write-1 seq-write-4; do
                for t in raw qcow2 overlay; do echo "$w/$t/$p/unix"; done
                echo "$w/raw/$p/tcp"
            done
            for w in seq-read-1 seq-read-4; do
                for t in raw qcow2; do echo "$w/$t/$p/unix"; done
                echo "$w/raw/$p/tcp"
            done
            for x in unix tcp; do
                echo "rand-write-4k/raw/$p/$x"; echo "rand-read-4k/raw/$p/$x"
            done
            for w in scatter-64k-aligned scatter-64k-4k; do
                for t in raw qcow2 overlay; do echo "$w/$t/$p/unix"; done
            done
            for w in tls-seq-write-1 tls-seq-write-4 tls-seq-read-1 tls-seq-read-4; do
                echo "$w/raw/$p/tcp"
            done
        done
        echo "clients-$CLIENTS/raw/disk/unix"
    else
        echo "seq-write-1/raw/disk/unix"; echo "seq-write-1/raw/tmpfs/unix"
        echo "seq-write-1/raw/tmpfs/tcp"
        echo "seq-write-1/qcow2/disk/unix"; echo "seq-write-1/overlay/disk/unix"
        echo "seq-write-4/raw/disk/unix"
        echo "seq-read-1/raw/disk/unix"; echo "seq-read-1/raw/tmpfs/unix"
        echo "seq-read-1/raw/tmpfs/tcp"; echo "seq-read-1/qcow2/disk/unix"
        echo "seq-read-4/raw/disk/unix"
        for p in disk tmpfs; do
            echo "rand-write-4k/raw/$p/unix"; echo "rand-read-4k/raw/$p/unix"
        done
        for w in scatter-64k-aligned scatter-64k-4k; do
            echo "$w/qcow2/disk/unix"; echo "$w/overlay/disk/unix"
        done
        echo "tls-seq-write-1/raw/tmpfs/tcp"; echo "tls-seq-read-1/raw/tmpfs/tcp"
        echo "clients-$CLIENTS/raw/disk/unix"
    fi
    echo "reload-add-$EXPORTS/raw/disk/unix"
    echo "reload-same-$EXPORTS/raw/disk/unix"
    echo "idle-$IDLE/raw/disk/unix"
}

# nbdcopy rows are named by connection count: seq-write-1 -> -1c.
row_name() { sed -E 's#^((tls-)?seq-(write|read)-[0-9]+)/#\1c/#' <<< "$1"; }
# ... and the run functions take the inner name: seq-write-1c -> -1.
inner_name() { sed -E 's#^((tls-)?seq-(write|read)-[0-9]+)c/#\1/#' <<< "$1"; }

# ------------------------------------------------------------- main

ROWS=()
while read -r r; do
    r=$(row_name "$r")
    if [ -z "$ROWS_RE" ] || grep -Eq -- "$ROWS_RE" <<< "$r"; then ROWS+=("$r"); fi
done < <(list_rows)
[ ${#ROWS[@]} -gt 0 ] || die "no row matches --rows '$ROWS_RE'"

if printf '%s\n' "${ROWS[@]}" | grep -q '^tls-'; then
    bash "$SRC_DIR/tests/tls-creds.sh" "$TLS_DIR" > /dev/null 2>&1 ||
        die "could not make TLS credentials (tests/tls-creds.sh)"
fi

note "mode $MODE: ${#ROWS[@]} rows, $((SIZE >> 20)) MiB transfers, fio ${FIO_SECONDS}s, $REPS repetition(s)"
note "servers: $SERVERS; scratch: $DISK_DIR (disk), $TMPFS_DIR (tmpfs)"
T_START=$(date +%s)
LOAD_BEFORE=$(cut -d ' ' -f 1-3 /proc/loadavg)
for row in "${ROWS[@]}"; do
    wait_for_quiet
    note "$row (at $(( $(date +%s) - T_START )) s)"
    inner=$(inner_name "$row")
    for rep in $(seq 1 "$REPS"); do
        for server in $SERVERS; do
            run_one "$inner" "$server" "$rep"
        done
        # The ceilings: the same pattern by fio on a file in the same place
        # (not for TLS rows), the socket pump (one-connection rows) and
        # the NBD pump (random rows on raw files, and plain sequential
        # rows on disk, one connection or several).
        case $row in rand-*|seq-*) run_ceiling "$inner" "$rep" ;; esac
        case $row in *seq-*-1c/*) run_pump "$inner" "$rep" ;; esac
        case $row in rand-*/raw/*|seq-*/*/disk/*) run_nbd_pump "$inner" "$rep" ;; esac
    done
done
T_END=$(date +%s)

# Row names in the runs CSV carry the "c" suffix too.
sed -i -E 's#^((tls-)?seq-(write|read)-[0-9]+)/#\1c/#; s#,((tls-)?seq-(write|read)-[0-9]+),#,\1c,#' "$RUNS_CSV"

# ------------------------------------------------------------- report

describe_machine() {
    local p dev
    echo "# sendense-nbd benchmark, $MODE mode, $STAMP ($(( T_END - T_START )) s)"
    echo "# size $SIZE bytes, fio $FIO_SECONDS s, $REPS repetition(s), $CLIENTS clients, $EXPORTS exports, $IDLE idle connections"
    echo "# cores: $(nproc); cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "# memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); kernel: $(uname -r)"
    echo "# load average before: $LOAD_BEFORE; after: $(cut -d ' ' -f 1-3 /proc/loadavg)"
    for p in disk tmpfs; do
        dev=$(df --output=source "$(place_dir "$p")" | tail -n 1)
        echo "# $p: $(place_dir "$p") on $dev ($(df --output=fstype "$(place_dir "$p")" | tail -n 1 | tr -d ' ')$(
            m=$(lsblk -ndo MODEL "$dev" 2>/dev/null | xargs || :); r=$(lsblk -ndo ROTA "$dev" 2>/dev/null | xargs || :)
            [ -n "$r" ] && echo ", model '${m:-none given}', rotational $r"))"
    done
    # The commit of the tree the server was built from (an out-of-tree
    # build's Makefile names it), not of the checkout this script is in.
    local built_from
    built_from=$(sed -n 's/^abs_top_srcdir = //p' "$BUILD/Makefile" 2>/dev/null || :)
    echo "# sendense-nbd: $SD_NBD ($(git -C "${built_from:-$SRC_DIR}" log -1 --format='%h %s' 2>/dev/null | cut -c 1-70 || echo unknown))"
    command -v qemu-nbd >/dev/null && echo "# qemu-nbd: $(qemu-nbd --version | head -n 1)"
    command -v nbdkit >/dev/null && echo "# nbdkit: $(nbdkit --version | head -n 1)"
    command -v nbd-server >/dev/null && echo "# nbd-server: $(nbd-server -V 2>&1 | sed -n 's/.*version //p' | head -n 1)"
    echo "# nbdcopy: $(nbdcopy --version | head -n 1); fio: $(fio --version)"
}
describe_machine > "$STEM.machine"
$PY "$BENCH_DIR/nbd-bench-report.py" "$RUNS_CSV" "$STEM" "$STEM.machine"
rm -f "$STEM.machine"
note "results: $STEM.txt $STEM.csv $STEM.runs.csv $STEM.png"
