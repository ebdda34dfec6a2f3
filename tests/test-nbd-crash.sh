#!/bin/bash
# sendense-nbd killed with SIGKILL while clients write into a qcow2 export.
#
# A write the server has replied to must survive the server process
# being killed (shared/DESIGN.md, "Durability and consistency"). Each
# round: start the server, let tools/clients-crash.py (libnbd) write
# random data at random offsets with many writes in flight and journal
# which replies arrived, SIGKILL the server 0.3-2 s later, then:
#  - qemu-img check finds no corruption (leaked clusters are allowed);
#  - the image, read by qemu-img, holds every replied write exactly, the
#    bytes no write touched as they were, and each sector of a write in
#    flight at the kill either as it was or as written.
# The next round starts from what is there, so crashes pile up on one
# image. Cases: a fresh qcow2 image, and an extended-L2 incremental over a
# backing file with data. After the last round the restarted server must
# serve what qemu-img reads, and stop cleanly.
#
# SD_CRASH_NBD_ROUNDS sets the rounds per case (default 10).

srcdir=${srcdir:-$(dirname "$0")}
. "$srcdir/functions.sh"
. "$srcdir/server-lib.sh"

requires qemu-img qemu-io nbdcopy

# The writer needs libnbd's python module, which a python3 earlier in
# PATH (e.g. pyenv's) may not have.
PY=
for py in python3 /usr/bin/python3; do
    if "$py" -c 'import nbd' 2>/dev/null; then
        PY=$(command -v "$py")
        break
    fi
done
[ -n "$PY" ] || { echo "$0: SKIP: python3-libnbd is not installed"; exit 77; }
CRASH="$PY $top_srcdir/tests/tools/clients-crash.py"
NBD_RPC="$PY $top_srcdir/tests/tools/nbd-rpc.py"

ROUNDS=${SD_CRASH_NBD_ROUNDS:-10}
# Large enough that the first rounds still allocate clusters when the
# kill comes, not only overwrite them.
SIZE=128M
img=$scratch/img
mkdir -p "$img"

# qemu-img check after a kill: exit 0, or 3 when all it found are leaked
# clusters (space lost, nothing wrong with the data).
check_after_kill() {
    local out rc=0
    out=$(qemu-img check "$1" 2>&1) || rc=$?
    case $rc in
        0) ;;
        3)
            if ! grep -q "leaked clusters" <<<"$out" ||
                grep -Eiq "ERROR|corrupt" <<<"$out"; then
                echo "$out" >&2
                fail "$2: qemu-img check exited 3 with more than leaks"
            fi ;;
        *)
            echo "$out" >&2
            fail "$2: qemu-img check exited $rc" ;;
    esac
}

# One round on export NAME of image IMG, over URI; BASE is the content
# before it and becomes the content after it.
crash_round() {
    local name=$1 image=$2 round=$3 uri=$4 base=$5 delay pid rc i
    local journal=$scratch/journal.json ready=$scratch/ready
    rm -f "$ready" "$journal"
    $CRASH write "$uri" "$journal" "$round" "$ready" > "$scratch/writer.out" 2>&1 &
    pid=$!
    # Wait (bounded) until the first write is on its way.
    for i in $(seq 1 600); do
        [ -e "$ready" ] && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.05
    done
    [ -e "$ready" ] || { cat "$scratch/writer.out" >&2; fail "$name round $round: the writer did not start"; }
    i=$((30 + RANDOM % 171))                # centiseconds, 0.30-2.00 s
    delay=$(printf '%d.%02d' $((i / 100)) $((i % 100)))
    sleep "$delay"
    kill -KILL "$SRV_PID" || fail "$name round $round: the server was already gone"
    wait "$SRV_PID" 2>/dev/null
    SRV_PID=
    srv_check_log
    rc=0
    wait $pid || rc=$?
    [ "$rc" = 0 ] || { cat "$scratch/writer.out" >&2; fail "$name round $round: the writer exited $rc"; }
    check_after_kill "$image" "$name round $round"
    rm -f "$scratch/now.raw"
    qemu-img convert -O raw "$image" "$scratch/now.raw" || fail "$name round $round: qemu-img convert"
    echo "  $name round $round: killed after ${delay}s; $(cat "$scratch/writer.out")"
    $CRASH verify "$scratch/now.raw" "$base" "$journal" ||
        fail "$name round $round: a write is not where the journal says"
    grep -q " [1-9][0-9]* replied" "$scratch/writer.out" && replied_rounds=$((replied_rounds + 1))
    mv "$scratch/now.raw" "$base"
}

crash_case() {
    local name=$1 image=$2 base=$scratch/base-$1.raw round uri
    qemu-img convert -O raw "$image" "$base" || fail "qemu-img convert $image"
    replied_rounds=0
    for round in $(seq 1 "$ROUNDS"); do
        srv_start
        # The export file stays in exports.d across restarts.
        [ -e "$SRV_EXPORTS/$name.yaml" ] || srv_export "$name" "$image" "format: qcow2"
        if [ $((round % 2)) = 0 ]; then uri=$(srv_uri "$name"); else uri=$(srv_unix_uri "$name"); fi
        crash_round "$name" "$image" "$round" "$uri" "$base"
    done
    # Not a timing check: a run where no write was ever answered before
    # the kill would have tested nothing.
    [ "$replied_rounds" -gt 0 ] || fail "$name: no round had a replied write"
    # The server, started on what the crashes left, serves what qemu-img
    # reads, and stops cleanly.
    srv_start
    nbdcopy "$(srv_uri "$name")" "$scratch/served.raw" || fail "$name: nbdcopy after the crashes"
    cmp -s "$scratch/served.raw" "$base" || fail "$name: the restarted server serves other data than qemu-img reads"
    srv_stop
    check_after_kill "$image" "$name after a clean stop"
    rm -f "$scratch/served.raw" "$base"
    rm -rf "$SRV_EXPORTS"
}

echo "fresh qcow2:"
must "$SENDENSE_IMG" create -f qcow2 "$img/fresh.qcow2" $SIZE
crash_case fresh "$img/fresh.qcow2"

echo "extended-L2 incremental over a backing file:"
must "$SENDENSE_IMG" create -f qcow2 "$img/full.qcow2" $SIZE
must qemu-io -f qcow2 -c "write -P 0x5a 0 24M" -c "write -P 0xa5 40M 8M" \
    -c "write -z 44M 1M" -c "write -P 0x3c 100M 16M" "$img/full.qcow2"
must "$SENDENSE_IMG" create -f qcow2 -b "$img/full.qcow2" -F qcow2 \
    -o extended_l2=on "$img/incr.qcow2" $SIZE
crash_case incr "$img/incr.qcow2"
# The backing file is never written through the incremental.
check_after_kill "$img/full.qcow2" "backing file"
out=$(qemu-io -f qcow2 -r -c "read -P 0x5a 0 24M" -c "read -P 0xa5 40M 4M" \
    -c "read -P 0 44M 1M" -c "read -P 0xa5 45M 3M" -c "read -P 0x3c 100M 16M" \
    "$img/full.qcow2" 2>&1) ||
    { echo "$out" >&2; fail "the backing file changed"; }
echo "all crash rounds passed"
