#!/bin/bash
# sendense-capture copy (docs/SENDENSE-CAPTURE.md) into sendense-nbd
# exports, checked with qemu-img compare and the server's export.stats.
#
#  1. Full copy of a raw file with holes into a fresh qcow2 export with
#     --target-is-zero: the export equals the source and the server got
#     exactly the data bytes, nothing for the holes. The same source as
#     an NBD export (base:allocation decides what is read). The same
#     source into a raw export full of garbage: holes go as WRITE_ZEROES.
#  2. Incremental from a change list into an overlay of (1): exactly the
#     listed bytes are written; the chain equals the changed source.
#     Bad change lists fail with one clear line.
#  3. Incremental from a dirty bitmap: a qcow2 source with a persistent
#     bitmap (qemu-img bitmap --add), written by qemu-io, exported by
#     qemu-nbd -B; exactly the dirty extents are read and written and the
#     overlay's chain equals the source. --bitmap with the qcow2 file as
#     the source is refused (qcow2 sources: test-capture-sources.sh).
#  4. The target killed mid-copy (a slow source, nbdkit's delay filter):
#     one reconnect tried, then a non-zero exit, a clear line, no summary.
#  5. TLS: a PSK-protected NBD source into an X.509 target, compared; a
#     target whose certificate is not trusted fails in one line.
# qemu-img, qemu-io, qemu-nbd and nbdkit are oracles and fixtures only.

srcdir=${srcdir:-$(dirname "$0")}
. "$srcdir/functions.sh"
. "$srcdir/server-lib.sh"

requires qemu-img qemu-io qemu-nbd nbdkit
. "$top_srcdir/tests/capture-lib.sh"

M=$((1 << 20))
K=1024
SIZE=$((64 * M))

# capture_fails ARGS...: the copy must fail with one "sendense-capture:" line.
capture_fails() {
    local rc=0
    "$SENDENSE_CAPTURE" copy --quiet "$@" > "$scratch/fail.out" 2> "$scratch/fail.raw" || rc=$?
    our_stderr "$scratch/fail.raw" > "$scratch/fail.err"
    [ "$rc" != 0 ] || fail "expected failure, got exit 0: copy $*"
    if [ "$(wc -l < "$scratch/fail.err")" != 1 ] || ! grep -q '^sendense-capture: .' "$scratch/fail.err"; then
        cat "$scratch/fail.raw" >&2
        fail "expected one 'sendense-capture: ...' line: copy $*"
    fi
    ! grep -q summary "$scratch/fail.out" || fail "a failed copy printed a summary: $*"
}

same() {                # IMG_A IMG_B: qemu-img compare, byte for byte
    local out
    out=$(qemu-img compare "$1" "$2" 2>&1) || { echo "$out" >&2; fail "$1 differs from $2"; }
}

img=$scratch/img
mkdir -p "$img"
srv_start

# --- 1. full copy of a raw file with holes ---

echo "1. full copy of a raw source with holes"
src=$img/src.raw
must truncate -s $SIZE "$src"
# Data: 5 MiB at 3 MiB, 192 KiB at 500*64 KiB, the last 64 KiB.
must dd if=/dev/urandom of="$src" bs=1M seek=3 count=5 conv=notrunc status=none
must dd if=/dev/urandom of="$src" bs=64k seek=500 count=3 conv=notrunc status=none
must dd if=/dev/urandom of="$src" bs=64k seek=1023 count=1 conv=notrunc status=none
DATA=$((5 * M + 4 * 64 * K))
must "$SENDENSE_IMG" create -f qcow2 "$img/full.qcow2" $SIZE
srv_export full "$img/full.qcow2" "format: qcow2"
capture --target-is-zero "$src" "$(srv_unix_uri full)"
must_equal "bytes read" "$(summary read)" $DATA
must_equal "bytes written" "$(summary written)" $DATA
must_equal "bytes zeroed" "$(summary zeroed)" 0
must_equal "bytes skipped" "$(summary skipped)" $((SIZE - DATA))
must_equal "server bytes.write" "$(stat_of full bytes write)" $DATA
must_equal "server bytes.zero" "$(stat_of full bytes zero)" 0
[ "$(stat_of full ops flush)" -ge 1 ] || fail "no FLUSH reached the server"

# The same source as an NBD export: its base:allocation map decides.
must "$SENDENSE_IMG" create -f qcow2 "$img/fromnbd.qcow2" $SIZE
srv_export srcexp "$src" "format: raw" "readonly: true"
srv_export fromnbd "$img/fromnbd.qcow2" "format: qcow2"
capture --target-is-zero "$(srv_uri srcexp)" "$(srv_unix_uri fromnbd)"
must_equal "bytes read (NBD source)" "$(summary read)" $DATA
must_equal "server bytes.read (srcexp)" "$(stat_of srcexp bytes read)" $DATA
must_equal "server bytes.write (fromnbd)" "$(stat_of fromnbd bytes write)" $DATA
rm "$SRV_EXPORTS/srcexp.yaml"
srv_rpc server.reload > /dev/null

# Into a raw file of garbage, over TCP: the holes must be zeroed.
head -c $SIZE /dev/urandom > "$img/garbage.raw" || fail "cannot make garbage.raw"
srv_export garbage "$img/garbage.raw" "format: raw"
capture --connections 2 --request-size 1M "$src" "$(srv_uri garbage)"
must_equal "bytes written (garbage)" "$(summary written)" $DATA
must_equal "bytes zeroed (garbage)" "$(summary zeroed)" $((SIZE - DATA))
must_equal "server bytes.zero (garbage)" "$(stat_of garbage bytes zero)" $((SIZE - DATA))

# --- 2. incremental from a change list ---

echo "2. incremental from a change list"
# The full backup becomes the overlay's read-only backing file: it is no
# longer exported for writing.
rm "$SRV_EXPORTS/full.yaml"
srv_rpc server.reload > /dev/null
must "$SENDENSE_IMG" create -f qcow2 -b "$img/full.qcow2" -F qcow2 "$img/incr1.qcow2" $SIZE
srv_export incr1 "$img/incr1.qcow2"
# Changed: 64 KiB inside the data, 128 KiB+64 KiB adjacent in a hole
# (merged into one request), 1 MiB crossing the end of the data at 8 MiB.
must dd if=/dev/urandom of="$src" bs=64k seek=50 count=1 conv=notrunc status=none
must dd if=/dev/urandom of="$src" bs=64k seek=200 count=3 conv=notrunc status=none
must dd if=/dev/urandom of="$src" bs=64k seek=120 count=16 conv=notrunc status=none
CHANGED=$((64 * K + 192 * K + M))
cat > "$scratch/changes.json" <<JSON
{"changeId": "52 3c 9b 12-ab cd/4", "startOffset": 0, "length": $SIZE,
 "changedArea": [{"start": $((50 * 64 * K)), "length": 65536},
                 {"start": $((120 * 64 * K)), "length": $M},
                 {"start": $((200 * 64 * K)), "length": 131072},
                 {"start": $((202 * 64 * K)), "length": 65536}]}
JSON
capture --changes "$scratch/changes.json" "$src" "$(srv_unix_uri incr1)"
must_equal "bytes read (changes)" "$(summary read)" $CHANGED
must_equal "server bytes.write (incr1)" "$(stat_of incr1 bytes write)" $CHANGED
must_equal "server bytes.read (incr1)" "$(stat_of incr1 bytes read)" 0

# Refused change lists: nothing is written.
echo '{"changedArea": [{"start": 65536, "length": 4096}, {"start": 0, "length": 4096}]}' \
    > "$scratch/unsorted.json"
capture_fails --changes "$scratch/unsorted.json" "$src" "$(srv_unix_uri incr1)"
grep -q "sorted" "$scratch/fail.err" || fail "unsorted change list: $(cat "$scratch/fail.err")"
echo '{"changedArea": [{"start": 0, "length": 4096, "extra": 1}]}' > "$scratch/extra.json"
capture_fails --changes "$scratch/extra.json" "$src" "$(srv_unix_uri incr1)"
echo '{"changedArea": [{"start": 0, "len' > "$scratch/cut.json"
capture_fails --changes "$scratch/cut.json" "$src" "$(srv_unix_uri incr1)"
echo "{\"changedArea\": [{\"start\": $SIZE, \"length\": 4096}]}" > "$scratch/beyond.json"
capture_fails --changes "$scratch/beyond.json" "$src" "$(srv_unix_uri incr1)"
capture_fails --changes "$scratch/missing.json" "$src" "$(srv_unix_uri incr1)"
must_equal "server bytes.write after refusals" "$(stat_of incr1 bytes write)" $CHANGED

# --- 3. incremental from a dirty bitmap (qemu-nbd -B) ---

echo "3. incremental from a dirty bitmap"
qsrc=$img/vm.qcow2
must qemu-img create -f qcow2 "$qsrc" $SIZE
must qemu-io -f qcow2 -c "write -P 0x11 0 8M" -c "write -P 0x22 40M 4M" "$qsrc"
# The backup point the bitmap is taken against, copied by qemu-img.
must qemu-img convert -O qcow2 "$qsrc" "$img/vm-full.qcow2"
must qemu-img bitmap --add "$qsrc" b0
# Dirty: 64 KiB at 1 MiB, 128 KiB at 20 MiB (was a hole), 1 MiB at 43 MiB.
must qemu-io -f qcow2 -c "write -P 0x33 1M 64k" -c "write -P 0x44 20M 128k" \
    -c "write -P 0x55 43M 1M" "$qsrc"
DIRTY=$((64 * K + 128 * K + M))
must "$SENDENSE_IMG" create -f qcow2 -b "$img/vm-full.qcow2" -F qcow2 "$img/vm-incr.qcow2" $SIZE
srv_export vmincr "$img/vm-incr.qcow2"
qsock=$scratch/qemu-nbd.sock
qemu-nbd -r -f qcow2 -B b0 -k "$qsock" -t "$qsrc" > "$scratch/qemu-nbd.log" 2>&1 &
QNBD_PID=$!
cleanup_fn 'kill $QNBD_PID 2>/dev/null; wait $QNBD_PID 2>/dev/null'
for i in $(seq 1 200); do [ -S "$qsock" ] && break; sleep 0.05; done
[ -S "$qsock" ] || { cat "$scratch/qemu-nbd.log" >&2; fail "qemu-nbd did not start"; }
capture --bitmap b0 "nbd+unix:///?socket=$qsock" "$(srv_unix_uri vmincr)"
must_equal "bytes read (bitmap)" "$(summary read)" $DIRTY
must_equal "server bytes.write (vmincr)" "$(stat_of vmincr bytes write)" $DIRTY
capture_fails --bitmap nosuch "nbd+unix:///?socket=$qsock" "$(srv_unix_uri vmincr)"
grep -q "nosuch" "$scratch/fail.err" || fail "unknown bitmap: $(cat "$scratch/fail.err")"
kill $QNBD_PID; wait $QNBD_PID 2>/dev/null
# The qcow2 file itself cannot give its persistent bitmap: refused.
capture_fails --bitmap b0 "$qsrc" "$(srv_unix_uri vmincr)"
grep -q "needs an NBD source" "$scratch/fail.err" || fail "qcow2 source: $(cat "$scratch/fail.err")"

# --- the chains, with the server stopped ---

srv_stop
same "$src" "$img/incr1.qcow2"
same "$qsrc" "$img/vm-incr.qcow2"
same "$img/garbage.raw" "$img/full.qcow2"
same "$img/fromnbd.qcow2" "$img/full.qcow2"
qemu_check_clean "$img/full.qcow2"
qemu_check_clean "$img/incr1.qcow2"
qemu_check_clean "$img/vm-incr.qcow2"

# --- 4. the target killed mid-copy ---

echo "4. target killed mid-copy"
srv_start
must "$SENDENSE_IMG" create -f qcow2 "$img/killed.qcow2" $SIZE
srv_export killed "$img/killed.qcow2"
head -c $((32 * M)) /dev/urandom > "$img/slow.raw" || fail "cannot make slow.raw"
ssock=$scratch/slow.sock
# Each 1 MiB read takes 200 ms: the copy is still running when the
# server dies, whatever the machine's speed.
nbdkit -f -r -U "$ssock" --filter=delay file "$img/slow.raw" rdelay=200ms \
    > "$scratch/nbdkit.log" 2>&1 &
NBDKIT_PID=$!
cleanup_fn 'kill $NBDKIT_PID 2>/dev/null; wait $NBDKIT_PID 2>/dev/null'
for i in $(seq 1 200); do [ -S "$ssock" ] && break; sleep 0.05; done
[ -S "$ssock" ] || { cat "$scratch/nbdkit.log" >&2; fail "nbdkit did not start"; }
"$SENDENSE_CAPTURE" copy --json --connections 1 --inflight 2 --request-size 1M \
    --retries 1 --retry-delay 0.2 "nbd+unix:///?socket=$ssock" "$(srv_unix_uri killed)" \
    > "$scratch/killed.out" 2> "$scratch/killed.raw" &
CAP_PID=$!
# Wait until the target has acknowledged some writes, then kill it.
for i in $(seq 1 600); do
    grep -q '"written":[1-9]' "$scratch/killed.out" && break
    kill -0 $CAP_PID 2>/dev/null || break
    sleep 0.1
done
grep -q '"written":[1-9]' "$scratch/killed.out" || fail "no progress before the kill"
srv_kill
rc=0
wait $CAP_PID || rc=$?
[ "$rc" != 0 ] || fail "sendense-capture reported success after its target died"
! grep -q '"summary"' "$scratch/killed.out" || fail "a summary after the target died"
grep -q '"event":"retry"' "$scratch/killed.out" || fail "no retry event"
# One line for the reconnect it tried, one for giving up.
our_stderr "$scratch/killed.raw" > "$scratch/killed.err"
if [ "$(wc -l < "$scratch/killed.err")" != 2 ] ||
    ! grep -q '^sendense-capture: .*reconnecting in 0.2 s (try 1 of 1)$' "$scratch/killed.err" ||
    ! tail -1 "$scratch/killed.err" | grep -q '^sendense-capture: gave up after 1 reconnect: .'; then
    cat "$scratch/killed.raw" >&2
    fail "expected a reconnect line and a 'gave up' line after the target died"
fi
echo "   $(cat "$scratch/killed.err")"
kill $NBDKIT_PID 2>/dev/null; wait $NBDKIT_PID 2>/dev/null || :

# --- 5. TLS on both sides ---

echo "5. TLS: a PSK source, an X.509 target"
creds=$scratch/tls
must bash "$top_srcdir/tests/tls-creds.sh" "$creds"
srv_start "tls:" "  mode: required" "  cert: $creds/server-cert.pem" \
    "  key: $creds/server-key.pem" "  ca: $creds/ca-cert.pem" \
    "  psk_file: $creds/keys.psk"
srv_export tlssrc "$img/src.raw" "readonly: true"
must "$SENDENSE_IMG" create -f qcow2 "$img/tls.qcow2" $SIZE
srv_export tlsdst "$img/tls.qcow2"
psk="nbds://alice@127.0.0.1:$SRV_PORT/tlssrc?tls-psk-file=$creds/keys.psk"
x509="nbds://127.0.0.1:$SRV_PORT/tlsdst?tls-certificates=$creds/client"
capture --target-is-zero "$psk" "$x509"
must_equal "bytes the server got over TLS" "$(stat_of tlsdst bytes write)" "$(summary written)"
[ "$(summary written)" -gt 0 ] || fail "nothing written over TLS"
srv_stop
must qemu-img compare -f raw -F qcow2 "$img/src.raw" "$img/tls.qcow2"
# Without the server's CA the target is refused, in one line, not retried.
srv_start "tls:" "  mode: required" "  cert: $creds/server-cert.pem" \
    "  key: $creds/server-key.pem" "  ca: $creds/ca-cert.pem"
srv_export tlsdst "$img/tls.qcow2"
if "$SENDENSE_CAPTURE" copy --quiet --retries 0 "$img/src.raw" \
        "nbds://127.0.0.1:$SRV_PORT/tlsdst?tls-certificates=$creds/other" \
        > /dev/null 2> "$scratch/tls.raw"; then
    fail "a copy to a target it cannot trust succeeded"
fi
our_stderr "$scratch/tls.raw" > "$scratch/tls.err"
[ "$(wc -l < "$scratch/tls.err")" = 1 ] && grep -q '^sendense-capture: nbds://' "$scratch/tls.err" ||
    { cat "$scratch/tls.raw" >&2; fail "untrusted target: expected one line"; }
srv_stop
echo "PASS"
