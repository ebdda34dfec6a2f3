#!/bin/bash
# Power-loss test: replay the library's write log cut at each flush.
#
# tools/img-writer runs with SENDENSE_WRITE_LOG set, so the library logs
# every write, zero and truncate of the image file as it completes and
# every flush as it is submitted; the writer journals which of its writes
# completed before each of its flushes was submitted. Then, for flush
# boundaries k of the log (all of them, or an even sample), and for
# several random subsets of the records between flush k and flush k+1 —
# whole records, and records torn at 512-byte sectors — tools/wlog-replay
# rebuilds the file as a power cut may have left it, and:
#  - `qemu-img check` may report leaks (exit 3) but never corruption;
#  - `img-writer --verify --cut-offset` finds every write made durable by
#    a flush the cut covers intact (later writes may or may not be there).
#
# Cases: qcow2 v3 64 KiB clusters; an extended-L2 overlay over a backing
# file with data; qcow2 v2. Knobs: SD_SOAK=N runs N times the ops and
# cuts; SD_POWER_CUTS sets how many flush boundaries a case samples
# (default 10). See tools/heavy-lib.sh for the rest.

srcdir=${srcdir:-$(dirname "$0")}
. "$srcdir/tools/heavy-lib.sh"

OPS=$((240 * SD_SOAK))
CUTS=$(( ${SD_POWER_CUTS:-10} * SD_SOAK ))
SIZE=32M

# One replay: copy the pristine file, apply the log cut at flush $k with
# the subset drawn by ($seed, $percent, $torn), check and verify it. A
# failure is recorded with the commands that reproduce it, and the run
# goes on so the summary shows how widespread a problem is.
failures=0
replay_one() {
    local k=$1 seed=$2 percent=$3 torn=$4 cut what bad=
    local replay_cmd="wlog-replay --flush $k --seed $seed --percent $percent $torn"
    cp --sparse=always "$pristine" "$replayed" || fail "cp"
    cut=$("$WLOG_REPLAY" --flush "$k" --seed "$seed" --percent "$percent" \
          $torn "$log" "$replayed" 2>"$scratch/replay.err") ||
        { cat "$scratch/replay.err" >&2; fail "wlog-replay at flush $k"; }
    what="$name: cut at flush $k, seed $seed, $percent% ${torn:---whole}"
    check_image "$replayed" "0 3" 2>"$scratch/check.err" ||
        bad="qemu-img check"
    "$IMG_WRITER" --verify --journal "$journal" \
        ${initial:+--initial "$initial"} --cut-offset "$cut" "$replayed" \
        >"$scratch/verify.out" 2>&1 || bad="${bad:+$bad, }lost data"
    [ -z "$bad" ] && return 0
    failures=$((failures + 1))
    {
        echo "FAIL ($bad): $what"
        sed 's/^/    /' "$scratch/check.err" "$scratch/verify.out" | head -24
        echo "  reproduce: cp $pristine R.qcow2; $replay_cmd $log R.qcow2;"
        echo "    qemu-img check R.qcow2; img-writer --verify --journal" \
             "$journal ${initial:+--initial $initial }--cut-offset $cut R.qcow2"
    } >&2
    [ $failures -le 3 ] && cp --sparse=always "$replayed" \
        "$scratch/failed-$failures.qcow2"
    return 0
}

# Flush boundaries to try: all when few, else an even spread with the
# first and the last.
pick_cuts() {
    local n=$1 i
    if [ "$n" -le "$CUTS" ]; then
        seq 0 "$n"
    else
        i=0
        while [ $i -le "$CUTS" ]; do
            echo $(( i * n / CUTS ))
            i=$((i + 1))
        done
    fi
}

power_case() {
    local name=$1 img=$2 k nflush
    initial=${3:-}
    pristine=$scratch/$name-pristine.qcow2
    replayed=$scratch/$name-replayed.qcow2
    log=$scratch/$name.wlog
    journal=$scratch/$name-journal.txt
    cp --sparse=always "$img" "$pristine" || fail "cp"
    SENDENSE_WRITE_LOG=$log "$IMG_WRITER" --run 1 --seed 42 --ops "$OPS" \
        --depth 8 --max-len 256K --flush-every 12 --journal "$journal" \
        "$img" || fail "$name: the writer failed"
    check_image "$img" 0 || fail "$name: qemu-img check after the run"
    [ -s "$log" ] || fail "$name: the library wrote no write log"
    nflush=$("$WLOG_REPLAY" --count "$log") || fail "wlog-replay --count"
    [ "$nflush" -gt 0 ] || fail "$name: the write log holds no flush"
    echo "  $name: $nflush flushes in the log"
    for k in $(pick_cuts "$nflush"); do
        replay_one "$k" $((k + 1)) 50 ""
        replay_one "$k" $((k + 2)) 100 ""
        replay_one "$k" $((k + 3)) 30 --torn
        replay_one "$k" $((k + 4)) 70 --torn
    done
}

echo "case v3: qcow2 v3, 64 KiB clusters"
qemu-img create -q -f qcow2 "$scratch/v3.qcow2" $SIZE || fail "create"
power_case v3 "$scratch/v3.qcow2"

echo "case extl2: extended L2 overlay over a backing file"
qemu-img create -q -f qcow2 "$scratch/full.qcow2" $SIZE &&
    fill_with_qemu_io "$scratch/full.qcow2" 32 4 &&
    qemu-img create -q -f qcow2 -o extended_l2=on -b "$scratch/full.qcow2" \
        -F qcow2 "$scratch/incr.qcow2" || fail "create the overlay"
to_raw "$scratch/full.qcow2" "$scratch/full.raw"
power_case extl2 "$scratch/incr.qcow2" "$scratch/full.raw"

echo "case v2: qcow2 v2"
qemu-img create -q -f qcow2 -o compat=0.10 "$scratch/v2.qcow2" $SIZE ||
    fail "create"
power_case v2 "$scratch/v2.qcow2"
[ $failures = 0 ] || fail "$failures replays failed (see above)"
pass
