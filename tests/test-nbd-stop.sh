#!/bin/bash
# SIGTERM while clients come and go: it lands while connections are
# being accepted, negotiated, served and torn down, on TCP and the unix
# socket, readers and a writer. Each time the server must drain, release
# every export before it closes the images (no "still referenced at
# exit"), exit 0, and leave the image whole. Under the sanitizers a
# connection finishing beside the stop would show as a leak or a use
# after free.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires nbdinfo nbdcopy qemu-img

truncate -s 16M "$scratch/disk.raw"
must "$SENDENSE_IMG" create -q -f qcow2 "$scratch/disk.qcow2" 16M
head -c 4M /dev/urandom > "$scratch/data.bin"

# A client in a loop until killed; failures are expected once the
# server stops listening.
client_loop() {
    while :; do "$@" > /dev/null 2>&1 || sleep 0.01; done
}

for round in $(seq 1 12); do
    srv_start
    srv_export raw "$scratch/disk.raw"
    srv_export qcow2 "$scratch/disk.qcow2"
    pids=()
    client_loop nbdinfo --json "$(srv_uri raw)" & pids+=($!)
    client_loop nbdinfo --json "$(srv_unix_uri qcow2)" & pids+=($!)
    client_loop nbdinfo --map "$(srv_unix_uri raw)" & pids+=($!)
    client_loop nbdcopy "$scratch/data.bin" "$(srv_uri qcow2)" & pids+=($!)
    # A different moment each round: 50 to 950 ms of traffic.
    sleep "0.$(( (round * 37) % 10 ))5"
    srv_stop
    kill "${pids[@]}" 2>/dev/null
    wait "${pids[@]}" 2>/dev/null
    grep -q "all connections closed; closing images" "$SRV_LOG" ||
        { cat "$SRV_LOG" >&2; fail "round $round: no orderly stop in the log"; }
    rm -f "$SRV_LOG"
done

# The moment itself, made wide: a departing connection sleeps 300 ms once
# it has left the list (a test hook), and SIGTERM lands in that sleep.
# The stop must find the connection's export already released, not
# close the image under it.
for client in "nbdinfo --size" "nbdcopy $scratch/data.bin"; do
    export SENDENSE_NBD_TEST_FINISH_DELAY_US=300000
    srv_start
    unset SENDENSE_NBD_TEST_FINISH_DELAY_US
    srv_export qcow2 "$scratch/disk.qcow2"
    # shellcheck disable=SC2086
    must $client "$(srv_unix_uri qcow2)"
    sleep 0.1
    srv_stop
    rm -f "$SRV_LOG"
done
qemu-img check -q "$scratch/disk.qcow2" || fail "the qcow2 image is damaged"
echo "stop: all checks passed"
