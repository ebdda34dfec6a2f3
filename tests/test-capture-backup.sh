#!/bin/bash
# sendense-capture backup (docs/SENDENSE-CAPTURE.md): whole VMs through
# sendensed and sendense-nbd, and what happens when the target goes away.
#
#  1. A two-disk VM (a raw file with holes, an NBD export): one run calls
#     backup.start, copies both disks, backup.complete with the change
#     ids; each image equals its source; the catalog has them completed.
#  2. An incremental of disk0 from a change list taken against the
#     full's change id: exactly the listed bytes are sent; the chain
#     equals the changed source. A change list taken against another
#     change id fails the job with a reason that says so.
#  3. The target server killed (SIGKILL) mid-copy and restarted: the run
#     reconnects, resends what no flush covered, and completes; the
#     backup equals the source.
#  4. A connection cut by the server (connection.close) mid-copy: the
#     run asks sendensed to fence the export (backup.fence, logged),
#     reconnects and completes.
#  5. The target server killed and not restarted: after its retries the
#     run fails with one clear line and no "backup complete"; the job is
#     failed in the catalog with that reason.
#  6. SIGTERM to the run: the job is failed ("interrupted"), not left
#     running.
# A slow source for 3-6 is nbdkit's delay filter over a raw file.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires qemu-img nbdkit nbdinfo
. "$top_srcdir/tests/sendensed-lib.sh"

CAPTURE=$(cd "$top_builddir/capture" && pwd)/sendense-capture
MiB=$((1024 * 1024))
KiB=1024
img=$scratch/img
mkdir -p "$img"

# capture_backup OUT ARGS...: a backup run that must succeed.
capture_backup() {
    local out=$1
    shift
    "$CAPTURE" backup --socket "$SDD_SOCK" --quiet "$@" >"$out" 2>"$out.err" ||
        { cat "$out" "$out.err" >&2; fail "sendense-capture backup $* failed"; }
}

# job_of OUT: the job id a run printed.
job_of() {
    sed -n 's/^job \(job-[^:]*\): .*/\1/p' "$1"
}

# backup_field VM DISK ID EXPR
backup_field() {
    sdd_rpc backup.show "{\"vm\": \"$1\", \"disk\": \"$2\", \"id\": \"$3\"}" | jget "$4"
}

image_of() {
    ls "$REPO/$1/$2/"*"$3"*.qcow2
}

# slow_source NAME FILE: nbdkit serving FILE read-only, each read
# delayed, on a unix socket; sets SRC (its URI) and NBDKIT_PID.
slow_source() {
    local sock=$scratch/$1.sock
    nbdkit -f -r -U "$sock" --filter=delay file "$2" rdelay=100ms \
        >"$scratch/$1.nbdkit.log" 2>&1 &
    NBDKIT_PID=$!
    cleanup_fn "kill $NBDKIT_PID 2>/dev/null || :"
    SRC="nbd+unix:///?socket=$sock"
    for _ in $(seq 1 200); do nbdinfo --size "$SRC" >/dev/null 2>&1 && return 0; sleep 0.05; done
    fail "nbdkit did not come up: $(cat "$scratch/$1.nbdkit.log")"
}

# wait_written OUT BYTES: until the job of the run writing to OUT has
# at least BYTES written (job.status reads sendense-nbd's export.stats).
wait_written() {
    local i job
    for i in $(seq 1 600); do
        job=$(job_of "$1")
        if [ -n "$job" ] && sdd_rpc job.status "{\"job\": \"$job\"}" |
                N=$2 jcheck 'r["disks"][0]["bytes_written"] >= int(env["N"])'; then
            return 0
        fi
        sleep 0.1
    done
    fail "the job in $1 never wrote $2 bytes"
}

srv_start
sdd_config
sdd_start

# --- 1. a two-disk VM, full ------------------------------------------------
echo "1. a two-disk VM, full"
truncate -s $((32 * MiB)) "$img/d0.raw"
dd if=/dev/urandom of="$img/d0.raw" bs=1M seek=2 count=3 conv=notrunc status=none
dd if=/dev/urandom of="$img/d0.raw" bs=64K seek=300 count=5 conv=notrunc status=none
# 1 MiB of zeros written out: data to the file system, zeros to us.
dd if=/dev/zero of="$img/d0.raw" bs=1M seek=10 count=1 conv=notrunc status=none
[ "$(stat -c %b "$img/d0.raw")" -ge $(((4 * MiB + 320 * KiB) / 512)) ] ||
    fail "the zeros were not written out"
head -c $((8 * MiB)) /dev/urandom >"$img/d1.raw"
srv_export d1src "$img/d1.raw" "readonly: true" >/dev/null
capture_backup "$scratch/full.out" --change-id disk0=cid-A --change-id disk1=cid-B \
    vm1 disk0="$img/d0.raw" disk1="$(srv_unix_uri d1src)"
job=$(job_of "$scratch/full.out")
[ -n "$job" ] || fail "no job in: $(cat "$scratch/full.out")"
grep -q "^backup complete: job $job, VM vm1" "$scratch/full.out" ||
    fail "no completion line: $(cat "$scratch/full.out")"
sdd_rpc job.status "{\"job\": \"$job\"}" | jcheck '(r["phase"] == "completed" and
    [d["change_id"] for d in r["disks"]] == ["cid-A", "cid-B"])' ||
    fail "job after the run: $(sdd_rpc job.status "{\"job\": \"$job\"}")"
full0=$(sdd_rpc job.status "{\"job\": \"$job\"}" | jget 'r["disks"][0]["backup_id"]')
full1=$(sdd_rpc job.status "{\"job\": \"$job\"}" | jget 'r["disks"][1]["backup_id"]')
must qemu-img compare -f raw -F qcow2 "$img/d0.raw" "$(image_of vm1 disk0 "$full0")"
must qemu-img compare -f raw -F qcow2 "$img/d1.raw" "$(image_of vm1 disk1 "$full1")"
# disk0's holes and zeros were never sent: the fresh image reads as zeros.
[ "$(backup_field vm1 disk0 "$full0" 'r["bytes_written"]')" = $((3 * MiB + 320 * KiB)) ] ||
    fail "disk0 full: $(backup_field vm1 disk0 "$full0" 'r["bytes_written"]') bytes written"

# --- 2. an incremental from a change list ------------------------------------
echo "2. an incremental of disk0 from a change list"
cp "$img/d0.raw" "$img/d0.before"
dd if=/dev/urandom of="$img/d0.raw" bs=64K seek=10 count=2 conv=notrunc status=none
dd if=/dev/urandom of="$img/d0.raw" bs=64K seek=100 count=1 conv=notrunc status=none
# The guest zeroed a block it had written: sent as WRITE_ZEROES.
dd if=/dev/zero of="$img/d0.raw" bs=64K seek=301 count=1 conv=notrunc status=none
cat >"$img/changes.json" <<EOF
{"changeId": "cid-A", "startOffset": 0, "length": $((32 * MiB)),
 "changedArea": [{"start": $((10 * 64 * KiB)), "length": $((128 * KiB))},
                 {"start": $((100 * 64 * KiB)), "length": $((64 * KiB))},
                 {"start": $((301 * 64 * KiB)), "length": $((64 * KiB))}]}
EOF
capture_backup "$scratch/incr.out" --changes disk0="$img/changes.json" \
    --change-id disk0=cid-A2 vm1 disk0="$img/d0.raw"
job=$(job_of "$scratch/incr.out")
incr=$(sdd_rpc job.status "{\"job\": \"$job\"}" | jget 'r["disks"][0]["backup_id"]')
[ "$(backup_field vm1 disk0 "$incr" 'r["type"]')" = incr ] &&
    [ "$(backup_field vm1 disk0 "$incr" 'r["parent"]')" = "$full0" ] ||
    fail "incremental: $(sdd_rpc backup.show "{\"vm\": \"vm1\", \"disk\": \"disk0\", \"id\": \"$incr\"}")"
[ "$(backup_field vm1 disk0 "$incr" 'r["bytes_written"]')" = $((192 * KiB)) ] ||
    fail "incremental wrote $(backup_field vm1 disk0 "$incr" 'r["bytes_written"]'), want $((192 * KiB))"
grep -q "read $((256 * KiB)) written $((192 * KiB)) zeroed $((64 * KiB)) " "$scratch/incr.out" ||
    fail "incremental's summary: $(cat "$scratch/incr.out")"
[ "$(backup_field vm1 disk0 "$incr" 'r["change_id"]')" = cid-A2 ] || fail "incremental's change id"
must qemu-img compare -f raw -F qcow2 "$img/d0.raw" "$(image_of vm1 disk0 "$incr")"
must qemu-img compare -f raw -F qcow2 "$img/d0.before" "$(image_of vm1 disk0 "$full0")"

# A change list taken against another point would miss changes.
sed 's/"cid-A"/"cid-OLD"/' "$img/changes.json" >"$img/stale.json"
if "$CAPTURE" backup --socket "$SDD_SOCK" --quiet --changes disk0="$img/stale.json" \
        vm1 disk0="$img/d0.raw" >"$scratch/stale.out" 2>"$scratch/stale.err"; then
    fail "a change list against a stale change id was accepted"
fi
grep -q '^sendense-capture: disk0: the change list was taken against change id "cid-OLD", but the parent backup recorded "cid-A2"' \
    "$scratch/stale.err" || fail "stale change list: $(cat "$scratch/stale.err")"
job=$(job_of "$scratch/stale.out")
sdd_rpc job.status "{\"job\": \"$job\"}" | jcheck '(r["phase"] == "failed" and
    "cid-OLD" in r["failure_reason"])' ||
    fail "stale job: $(sdd_rpc job.status "{\"job\": \"$job\"}")"

# --- 3. the target server killed and restarted -------------------------------
echo "3. the target server killed mid-copy, restarted"
head -c $((48 * MiB)) /dev/urandom >"$img/d2.raw"
slow_source slow3 "$img/d2.raw"
"$CAPTURE" backup --socket "$SDD_SOCK" --quiet --type full --connections 1 \
    --request-size 1M --flush-every 4M --retry-delay 0.5 --retries 8 \
    vm3 disk0="$SRC" >"$scratch/kill.out" 2>"$scratch/kill.err" &
run=$!
wait_written "$scratch/kill.out" $((8 * MiB))
srv_kill
sleep 1
srv_start
wait "$run" || { cat "$scratch/kill.out" "$scratch/kill.err" >&2; fail "the run did not survive the restart"; }
grep -q "reconnecting in" "$scratch/kill.err" || fail "no reconnect reported: $(cat "$scratch/kill.err")"
grep -q "^backup complete: job" "$scratch/kill.out" || fail "kill: $(cat "$scratch/kill.out")"
grep -q "after [0-9]* reconnect" "$scratch/kill.out" || fail "no reconnect in the summary"
job=$(job_of "$scratch/kill.out")
id=$(sdd_rpc job.status "{\"job\": \"$job\"}" | jget 'r["disks"][0]["backup_id"]')
must qemu-img compare -f raw -F qcow2 "$img/d2.raw" "$(image_of vm3 disk0 "$id")"
kill "$NBDKIT_PID"; wait "$NBDKIT_PID" 2>/dev/null || :

# --- 4. a connection cut: fenced, then resumed --------------------------------
echo "4. a connection cut mid-copy: fence, resume"
slow_source slow4 "$img/d2.raw"
"$CAPTURE" backup --socket "$SDD_SOCK" --quiet --connections 1 --request-size 1M \
    --flush-every 4M --retry-delay 0.2 vm4 disk0="$SRC" \
    >"$scratch/cut.out" 2>"$scratch/cut.err" &
run=$!
wait_written "$scratch/cut.out" $((8 * MiB))
for c in $(srv_rpc connection.list | jget '" ".join(str(c["id"]) for c in r["connections"] if (c.get("export") or "").startswith("backup-vm4"))'); do
    srv_rpc connection.close "{\"id\": $c}" >/dev/null
done
wait "$run" || { cat "$scratch/cut.out" "$scratch/cut.err" >&2; fail "the run did not survive the cut"; }
grep -q "disk0 fenced at the capture agent's request" "$SDD_LOG" || fail "no fence in the sendensed log"
job=$(job_of "$scratch/cut.out")
id=$(sdd_rpc job.status "{\"job\": \"$job\"}" | jget 'r["disks"][0]["backup_id"]')
must qemu-img compare -f raw -F qcow2 "$img/d2.raw" "$(image_of vm4 disk0 "$id")"
kill "$NBDKIT_PID"; wait "$NBDKIT_PID" 2>/dev/null || :

# --- 5. the target gone for good ---------------------------------------------
echo "5. the target server killed for good"
slow_source slow5 "$img/d2.raw"
"$CAPTURE" backup --socket "$SDD_SOCK" --quiet --connections 1 --request-size 1M \
    --retry-delay 0.2 --retries 2 vm5 disk0="$SRC" \
    >"$scratch/gone.out" 2>"$scratch/gone.err" &
run=$!
wait_written "$scratch/gone.out" $((4 * MiB))
srv_kill
if wait "$run"; then
    fail "a copy whose target is gone succeeded: $(cat "$scratch/gone.out")"
fi
! grep -q "backup complete" "$scratch/gone.out" || fail "completion claimed"
grep -q "^sendense-capture: disk0: gave up after 2 reconnects: " "$scratch/gone.err" ||
    fail "gone: $(cat "$scratch/gone.err")"
job=$(job_of "$scratch/gone.out")
sdd_rpc job.status "{\"job\": \"$job\"}" | jcheck '(r["phase"] == "failed" and
    r["failure_reason"].startswith("disk0: gave up after 2 reconnects: "))' ||
    fail "gone job: $(sdd_rpc job.status "{\"job\": \"$job\"}")"
kill "$NBDKIT_PID"; wait "$NBDKIT_PID" 2>/dev/null || :
# The failed job's export outlived a server that could not be asked:
# sendensed's timer removes it once the server is back.
srv_start
for i in $(seq 1 200); do
    srv_rpc export.list | jcheck 'not [e for e in r["exports"] if e["name"].startswith("backup-vm5")]' &&
        break
    [ "$i" = 200 ] && fail "the failed job's export is still there: $(srv_rpc export.list)"
    sleep 0.1
done
grep -q "export backup-vm5-disk0-full-[0-9T]* removed at last" "$SDD_LOG" ||
    fail "no late export removal in the sendensed log"

# --- 6. SIGTERM -----------------------------------------------------------
echo "6. SIGTERM to the run"
slow_source slow6 "$img/d2.raw"
"$CAPTURE" backup --socket "$SDD_SOCK" --quiet --connections 1 --request-size 1M \
    vm6 disk0="$SRC" >"$scratch/term.out" 2>"$scratch/term.err" &
run=$!
wait_written "$scratch/term.out" $((2 * MiB))
kill -TERM "$run"
if wait "$run"; then
    fail "an interrupted run exited 0"
fi
grep -q "interrupted by a signal" "$scratch/term.err" || fail "term: $(cat "$scratch/term.err")"
job=$(job_of "$scratch/term.out")
sdd_rpc job.status "{\"job\": \"$job\"}" | jcheck '(r["phase"] == "failed" and
    "interrupted" in r["failure_reason"])' ||
    fail "term job: $(sdd_rpc job.status "{\"job\": \"$job\"}")"
kill "$NBDKIT_PID"; wait "$NBDKIT_PID" 2>/dev/null || :

sdd_stop
srv_stop
echo "ok"
