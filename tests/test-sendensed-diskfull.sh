#!/bin/bash
# A repository that fills up during a backup (sendensed against a real
# sendense-nbd, the repository on a 40 MiB tmpfs of its own):
#  - a full backup of a 96 MiB disk of random data, written with
#    nbdcopy, fails (nbdcopy too); with nobody asking, the daemon's poll
#    sees the failed writes in export.stats and fails the job with a
#    reason naming the full repository: export gone, partial image
#    deleted, the space back, sidecar failed, no completed backup in the
#    catalog, backup.complete refused. A job of another VM running at the
#    same time, whose writes fitted, completes as if nothing happened;
#  - the same again, backup.complete called at once: refused, the job
#    failed with the same reason;
#  - with the space back, a backup of the same VM completes;
#  - keep_failed_images: true and a repository too full for the sidecar:
#    the job is failed, the image kept, the sidecar written by the timer
#    once there is room.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires nbdcopy qemu-img mountpoint
"$PYTHON" -c 'import nbd' 2>/dev/null ||
    { echo "$0: SKIP: $PYTHON has no nbd module (python3-libnbd)"; exit 77; }

. "$top_srcdir/tests/sendensed-lib.sh"

mkdir -p "$REPO"
if ! mount -t tmpfs -o size=40m sendense-diskfull "$REPO" 2>"$scratch/mount.err"; then
    echo "$0: SKIP: cannot mount a tmpfs for the repository: $(cat "$scratch/mount.err")"
    exit 77
fi
# Lazy: a daemon killed on the way out may still hold files there.
cleanup_fn "! mountpoint -q '$REPO' || umount -l '$REPO'"

MiB=$((1024 * 1024))
export MiB
exports_now() {
    srv_rpc export.list | jget '" ".join(sorted(e["name"] for e in r["exports"]))'
}
sidecar() {
    cat "$REPO/$1/$2/$3.json" || fail "no sidecar $1/$2/$3"
}
repo_used() {
    df -B1 --output=used "$REPO" | tail -1 | tr -d ' '
}
# show VM ID: backup.show of disk0 of that backup.
show() {
    sdd_rpc backup.show "{\"vm\": \"$1\", \"disk\": \"disk0\", \"id\": \"$2\"}"
}
# The reason a full repository gives, for a 96 MiB disk0.
FULL_REASON='disk0: repository full \(No space left on device\) at [0-9]+% \([0-9.]+ MiB written of 96 MiB\)'
export FULL_REASON
full_reason() {
    jcheck '__import__("re").fullmatch(env["FULL_REASON"], '"$1"')'
}
# failed_cleanly VM ID: what a job failed on a full repository leaves.
failed_cleanly() {
    [ ! -e "$REPO/$1/disk0/$2.qcow2" ] || fail "$1: the partial image $2 is left"
    sidecar "$1" disk0 "$2" | jcheck 'r["status"] == "failed"' ||
        fail "$1: sidecar of $2: $(sidecar "$1" disk0 "$2")"
    sidecar "$1" disk0 "$2" | full_reason 'r["failure_reason"]' ||
        fail "$1: failure reason of $2: $(sidecar "$1" disk0 "$2")"
    sdd_rpc backup.list "{\"vm\": \"$1\"}" |
        jcheck 'not [b for b in r["backups"] if b["status"] == "completed"]' ||
        fail "$1: a completed backup is listed: $(sdd_rpc backup.list "{\"vm\": \"$1\"}")"
    ! ls -A "$REPO/$1/disk0/" | grep -v '\.json$' | grep . ||
        fail "$1: files other than sidecars left in disk0/"
}

srv_start
sdd_config
sdd_start

head -c $((96 * MiB)) /dev/urandom > "$scratch/big"
head -c $((4 * MiB)) /dev/urandom > "$scratch/small"
BIG_DISKS="[{\"name\": \"disk0\", \"size\": $((96 * MiB))}]"

# --- the repository fills up; the daemon fails the job by itself --------

# ctx-ok writes its 4 MiB first; ctx-full then fills the repository.
ok=$(sdd_rpc backup.start "{\"vm\": \"ctx-ok\", \"type\": \"full\",
        \"disks\": [{\"name\": \"disk0\", \"size\": $((4 * MiB))}]}")
JOB_OK=$(echo "$ok" | jget 'r["job"]')
ID_OK=$(echo "$ok" | jget 'r["disks"][0]["backup_id"]')
EXP_OK=$(echo "$ok" | jget 'r["disks"][0]["export"]')
start=$(sdd_rpc backup.start "{\"vm\": \"ctx-full\", \"type\": \"full\", \"disks\": $BIG_DISKS}")
JOB1=$(echo "$start" | jget 'r["job"]')
ID1=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')
EXP1=$(echo "$start" | jget 'r["disks"][0]["export"]')
must nbdcopy "$scratch/small" "$(echo "$ok" | jget 'r["disks"][0]["uri"]')"
if nbdcopy "$scratch/big" "$(echo "$start" | jget 'r["disks"][0]["uri"]')" \
        2>"$scratch/nbdcopy.err"; then
    fail "nbdcopy of 96 MiB into a 40 MiB repository succeeded"
fi
grep -q "No space left on device" "$scratch/nbdcopy.err" ||
    fail "nbdcopy failed otherwise: $(cat "$scratch/nbdcopy.err")"
srv_rpc export.stats "{\"name\": \"$EXP1\"}" | jcheck '(r["stats"]["write_errors"] > 0
    and r["stats"]["last_error"]["errno"] == "ENOSPC")' ||
    fail "sendense-nbd did not count the failed writes (or the export is gone already)"

# Only the catalog is read here (backup.show never polls sendense-nbd):
# the daemon's timer must fail the job. A generous bound, not a timing
# check.
for i in $(seq 1 600); do
    b=$(show ctx-full "$ID1")
    echo "$b" | jcheck 'r["status"] == "running"' || break
    sleep 0.1
done
echo "$b" | jcheck 'r["status"] == "failed" and r["has_image"] is False' ||
    fail "the job was not failed by the daemon: $b"
echo "$b" | full_reason 'r["failure_reason"]' || fail "failure reason: $b"
grep -q "job $JOB1 (VM ctx-full): failed: disk0: repository full" "$SDD_LOG" ||
    fail "the failure is not logged"
status=$(sdd_rpc job.status "{\"job\": \"$JOB1\"}")
echo "$status" | jcheck 'r["phase"] == "failed" and r["ended_at"] is not None' ||
    fail "job.status of the failed job: $status"
echo "$status" | full_reason 'r["failure_reason"]' || fail "job.status reason: $status"
failed_cleanly ctx-full "$ID1"
[ "$(exports_now)" = "$EXP_OK" ] || fail "exports after the failure: $(exports_now)"
# The space is back: what is left is ctx-ok's image and small files.
[ "$(repo_used)" -lt $((8 * MiB)) ] || fail "the repository still uses $(repo_used) bytes"
err=$(sdd_error backup.complete "{\"job\": \"$JOB1\"}")
echo "$err" | jcheck 'r["code"] == 1005 and "failed" in r["message"]' ||
    fail "backup.complete of the failed job: $err"

# The other VM's job went on undisturbed.
sdd_rpc job.status "{\"job\": \"$JOB_OK\"}" | jcheck '(r["phase"] == "running" and
    r["failure_reason"] is None and r["disks"][0]["bytes_written"] == 4 * int(env["MiB"]))' ||
    fail "the other job: $(sdd_rpc job.status "{\"job\": \"$JOB_OK\"}")"
done_ok=$(sdd_rpc backup.complete "{\"job\": \"$JOB_OK\"}")
echo "$done_ok" | jcheck 'r["phase"] == "completed"' || fail "complete the other job: $done_ok"
qemu_check_clean "$REPO/ctx-ok/disk0/$ID_OK.qcow2"
same_content "$scratch/small" "$REPO/ctx-ok/disk0/$ID_OK.qcow2"
sidecar ctx-ok disk0 "$ID_OK" | jcheck 'r["status"] == "completed"' ||
    fail "the other job's sidecar: $(sidecar ctx-ok disk0 "$ID_OK")"

# --- backup.complete on a job whose writes failed ------------------------

start=$(sdd_rpc backup.start "{\"vm\": \"ctx-full\", \"type\": \"full\", \"disks\": $BIG_DISKS}")
JOB2=$(echo "$start" | jget 'r["job"]')
ID2=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')
nbdcopy "$scratch/big" "$(echo "$start" | jget 'r["disks"][0]["uri"]')" 2>/dev/null &&
    fail "the second nbdcopy into a full repository succeeded"
# Refused: by complete itself (ENOSPC), or because the timer was first.
err=$(sdd_error backup.complete "{\"job\": \"$JOB2\"}")
if echo "$err" | jcheck 'r["code"] == 1006'; then
    echo "$err" | jcheck '"cannot be completed" in r["message"] and r["data"]["errno"] == "ENOSPC"' ||
        fail "backup.complete with failed writes: $err"
else
    echo "$err" | jcheck 'r["code"] == 1005 and "failed" in r["message"]' ||
        fail "backup.complete with failed writes: $err"
    echo "$0: note: the timer failed the job before backup.complete did" >&2
fi
status=$(sdd_rpc job.status "{\"job\": \"$JOB2\"}")
echo "$status" | jcheck 'r["phase"] == "failed"' || fail "after a refused complete: $status"
echo "$status" | full_reason 'r["failure_reason"]' || fail "reason after a refused complete: $status"
failed_cleanly ctx-full "$ID2"
[ -z "$(exports_now)" ] || fail "exports after a refused complete: $(exports_now)"

# --- with the space back, the same VM backs up fine ----------------------

# 16 MiB of data, the rest of the 96 MiB disk a hole.
head -c $((16 * MiB)) /dev/urandom > "$scratch/fits"
truncate -s $((96 * MiB)) "$scratch/fits"
start=$(sdd_rpc backup.start "{\"vm\": \"ctx-full\", \"disks\": $BIG_DISKS}")
echo "$start" | jcheck 'r["disks"][0]["backup_type"] == "full" and r["disks"][0]["parent_id"] is None' ||
    fail "a failed backup became a parent: $start"
JOB3=$(echo "$start" | jget 'r["job"]')
ID3=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')
must nbdcopy "$scratch/fits" "$(echo "$start" | jget 'r["disks"][0]["uri"]')"
done3=$(sdd_rpc backup.complete "{\"job\": \"$JOB3\", \"change_ids\": {\"disk0\": \"cid-3\"}}")
echo "$done3" | jcheck 'r["phase"] == "completed"' || fail "complete after the space came back: $done3"
qemu_check_clean "$REPO/ctx-full/disk0/$ID3.qcow2"
same_content "$scratch/fits" "$REPO/ctx-full/disk0/$ID3.qcow2"
sdd_rpc backup.list '{"vm": "ctx-full"}' | jcheck '(sorted((b["id"], b["status"])
    for b in r["backups"]) == sorted([("'"$ID1"'", "failed"), ("'"$ID2"'", "failed"),
    ("'"$ID3"'", "completed")]))' ||
    fail "backup.list of ctx-full: $(sdd_rpc backup.list '{"vm": "ctx-full"}')"

# --- keep_failed_images, and no room left for the sidecar ----------------

sdd_stop
sdd_config "keep_failed_images: true"
sdd_start
# A file the admin can delete later; the failed writes take the rest.
head -c $((2 * MiB)) /dev/zero > "$REPO/filler"
start=$(sdd_rpc backup.start "{\"vm\": \"ctx-keep\", \"type\": \"full\", \"disks\": $BIG_DISKS}")
JOB4=$(echo "$start" | jget 'r["job"]')
ID4=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')
nbdcopy "$scratch/big" "$(echo "$start" | jget 'r["disks"][0]["uri"]')" 2>/dev/null &&
    fail "nbdcopy into a full repository (keep) succeeded"
for i in $(seq 1 600); do
    status=$(sdd_rpc job.status "{\"job\": \"$JOB4\"}")
    echo "$status" | jcheck 'r["phase"] == "running"' || break
    sleep 0.1
done
echo "$status" | jcheck 'r["phase"] == "failed"' || fail "keep: the job is not failed: $status"
echo "$status" | full_reason 'r["failure_reason"]' || fail "keep: reason: $status"
[ -z "$(exports_now)" ] || fail "keep: exports left: $(exports_now)"
[ -f "$REPO/ctx-keep/disk0/$ID4.qcow2" ] || fail "keep: the image was deleted"
# The sidecar could not say so yet: the repository is full to the byte.
sidecar ctx-keep disk0 "$ID4" | jcheck 'r["status"] == "running"' ||
    fail "keep: the sidecar was written on a full repository?: $(sidecar ctx-keep disk0 "$ID4")"
grep -q "job $JOB4: failed, but .*No space left on device" "$SDD_LOG" ||
    fail "keep: the sidecar that could not be written is not logged"
sdd_rpc daemon.info >/dev/null
rm "$REPO/filler"
for i in $(seq 1 600); do
    sidecar ctx-keep disk0 "$ID4" | jcheck 'r["status"] == "running"' || break
    sleep 0.1
done
sidecar ctx-keep disk0 "$ID4" | jcheck 'r["status"] == "failed"' ||
    fail "keep: the sidecar was not written once there was room: $(sidecar ctx-keep disk0 "$ID4")"
sidecar ctx-keep disk0 "$ID4" | full_reason 'r["failure_reason"]' ||
    fail "keep: the late sidecar's reason: $(sidecar ctx-keep disk0 "$ID4")"
[ -f "$REPO/ctx-keep/disk0/$ID4.qcow2" ] || fail "keep: the image went with the late sidecar"
grep -q "job $JOB4: the sidecar of disk0/$ID4 says failed at last" "$SDD_LOG" ||
    fail "keep: the late sidecar is not logged"
show ctx-keep "$ID4" | jcheck 'r["status"] == "failed" and r["has_image"] is True' ||
    fail "keep: backup.show: $(show ctx-keep "$ID4")"

sdd_stop
srv_stop
umount "$REPO" || fail "the repository's tmpfs is still busy"
