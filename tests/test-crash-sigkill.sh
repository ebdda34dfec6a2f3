#!/bin/bash
# Crash test: kill -9 a writer again and again on one aging image.
#
# Each round starts tools/img-writer on the same image (random writes,
# zero writes and discards, many in flight, every op journaled before it
# is submitted and after it completed), kills it with SIGKILL after a
# random 0.05-0.5 s, then:
#  - `qemu-img check` may find leaked clusters (exit 3) but no corruption;
#  - `img-writer --verify` reads the image back through the library and
#    finds every completed write's data where the journal says (ops still
#    in flight at the kill may or may not have landed, sector by sector;
#    see tools/writer-verify.c for the exact rule).
# The next round writes on, so crashes pile up on one image. A last round
# runs to a clean close and is verified the same way.
#
# Cases: a fresh qcow2 v3 image, and an extended-L2 overlay over a backing
# file with data. Knobs: SD_SOAK=N runs N times the rounds;
# SD_CRASH_ROUNDS sets the rounds of the first case (default 24, the
# second case gets half). See tools/heavy-lib.sh for the rest.

srcdir=${srcdir:-$(dirname "$0")}
. "$srcdir/tools/heavy-lib.sh"

ROUNDS=$(( ${SD_CRASH_ROUNDS:-24} * SD_SOAK ))
SIZE=64M

# Runs one killed round; the random delay is printed for a reproducer.
kill_round() {
    local img=$1 journal=$2 run=$3 initial=$4 pid rc delay
    delay=$(printf '0.%02d' $(( 5 + RANDOM % 46 )))
    echo "  round $run: writer killed after ${delay}s"
    "$IMG_WRITER" --run "$run" --seed "$run" --ops 0 --journal "$journal" \
        "$img" >"$scratch/writer.out" 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    # 137 = killed by us. Anything else: the writer stopped on its own.
    if [ "$rc" != 137 ]; then
        cat "$scratch/writer.out" >&2
        fail "round $run: the writer exited $rc before it was killed"
    fi
    check_image "$img" "0 3" || fail "round $run: qemu-img check after the kill"
    "$IMG_WRITER" --verify --journal "$journal" ${initial:+--initial "$initial"} \
        "$img" || fail "round $run: verify after the kill"
}

# All rounds on one image; the last one closes cleanly.
crash_case() {
    local img=$1 rounds=$2 initial=${3:-} journal run
    journal=$scratch/journal-$(basename "$img").txt
    run=1
    while [ $run -le "$rounds" ]; do
        kill_round "$img" "$journal" "$run" "$initial"
        run=$((run + 1))
    done
    echo "  round $run: writer runs to a clean close"
    "$IMG_WRITER" --run "$run" --seed "$run" --ops 400 --journal "$journal" \
        "$img" || fail "final round: the writer failed"
    check_image "$img" "0 3" || fail "final round: qemu-img check"
    "$IMG_WRITER" --verify --journal "$journal" ${initial:+--initial "$initial"} \
        "$img" || fail "final round: verify"
}

echo "case v3: fresh qcow2 v3, 64 KiB clusters, $ROUNDS rounds"
qemu-img create -q -f qcow2 "$scratch/v3.qcow2" $SIZE || fail "create"
crash_case "$scratch/v3.qcow2" "$ROUNDS"

echo "case extl2: extended L2 overlay over a backing file"
qemu-img create -q -f qcow2 "$scratch/full.qcow2" $SIZE &&
    fill_with_qemu_io "$scratch/full.qcow2" 64 9 &&
    qemu-img create -q -f qcow2 -o extended_l2=on -b "$scratch/full.qcow2" \
        -F qcow2 "$scratch/incr.qcow2" || fail "create the overlay"
to_raw "$scratch/full.qcow2" "$scratch/full.raw"
crash_case "$scratch/incr.qcow2" $(( (ROUNDS + 1) / 2 )) "$scratch/full.raw"
pass
