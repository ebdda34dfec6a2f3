#!/bin/bash
# sendensed against a real sendense-nbd: a full backup of a VM with two
# disks written with nbdcopy, completed and checked with qemu-img; an
# incremental (type auto) that receives only the changed 64 KiB blocks
# and reads back, through its backing file, as the changed source;
# backup.list/show/chain; a second job for a running VM refused;
# backup.fail; sendensed killed with SIGKILL during a job and restarted
# (the job is resolved failed, its export removed); a job without writes
# failed by idle_timeout; bad input (unknown VM, "../" in a name,
# malformed JSON, an oversized request) answered with JSON-RPC errors and
# nothing changed on disk.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires nbdcopy qemu-img
"$PYTHON" -c 'import nbd' 2>/dev/null ||
    { echo "$0: SKIP: $PYTHON has no nbd module (python3-libnbd)"; exit 77; }

. "$top_srcdir/tests/sendensed-lib.sh"

# Every file and folder of the repository with size and mtime.
repo_state() {
    (cd "$REPO" && find . -printf '%p %y %s %T@\n' | sort)
}

exports_now() {
    srv_rpc export.list | jget '" ".join(sorted(e["name"] for e in r["exports"]))'
}

# sidecar VM DISK ID: the sidecar's JSON.
sidecar() {
    cat "$REPO/$1/$2/$3.json" || fail "no sidecar $1/$2/$3"
}

# --- start both daemons ---------------------------------------------------

srv_start
sdd_config
sdd_start
[ "$(stat -c %a "$SDD_SOCK")" = 660 ] ||
    fail "sendensed socket mode is $(stat -c %a "$SDD_SOCK"), not 660"
export REPO SRV_SOCK
sdd_rpc daemon.info | jcheck '(r["name"] == "sendensed" and
    r["repositories"] == [{"name": "main", "path": env["REPO"]}] and
    r["idle_timeout"] == 300 and r["keep_failed_images"] is False)' ||
    fail "daemon.info: $(sdd_rpc daemon.info)"
"$SENDENSED" --help | grep -q "^Usage: sendensed" || fail "sendensed --help"
# A second daemon on the same socket refuses to start, in one line.
if "$SENDENSED" --foreground -c "$SDD_DIR/sendensed.yaml" 2>"$scratch/second.err"; then
    fail "a second sendensed started on the same socket"
fi
[ "$(our_stderr "$scratch/second.err" | wc -l)" = 1 ] &&
    grep -q "^sendensed: .*another daemon is listening" "$scratch/second.err" ||
    fail "second sendensed: $(cat "$scratch/second.err")"
sdd_rpc daemon.info >/dev/null

MiB=$((1024 * 1024))
head -c $((8 * MiB)) /dev/urandom > "$scratch/src0"
head -c $((4 * MiB)) /dev/urandom > "$scratch/src1"
DISKS="[{\"name\": \"disk0\", \"size\": $((8 * MiB))},
        {\"name\": \"disk1\", \"size\": $((4 * MiB)), \"label\": \"data\"}]"

# --- a full backup --------------------------------------------------------

start=$(sdd_rpc backup.start "{\"vm\": \"ctx-t1\", \"type\": \"full\",
                              \"display_name\": \"test vm\", \"disks\": $DISKS}")
echo "$start" | jcheck '(r["vm"] == "ctx-t1" and r["repository"] == "main" and
    r["phase"] == "running" and r["type"] == "full" and len(r["disks"]) == 2 and
    all(d["name"] == "disk%d" % i and d["backup_type"] == "full" and
        d["backup_id"].startswith("full-") and d["parent_id"] is None and
        d["parent_change_id"] is None and
        d["export"].startswith("backup-ctx-t1-disk%d-full-" % i) and
        d["uri"] == "nbd+unix:///%s?socket=%s" % (d["export"], env["SRV_SOCK"])
        for i, d in enumerate(r["disks"])))' || fail "backup.start full: $start"
JOB1=$(echo "$start" | jget 'r["job"]')
FULL=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')
EXP0=$(echo "$start" | jget 'r["disks"][0]["export"]')
EXP1=$(echo "$start" | jget 'r["disks"][1]["export"]')
[ "$(exports_now)" = "$EXP0 $EXP1" ] || fail "exports after start: $(exports_now)"
sidecar ctx-t1 disk0 "$FULL" | jcheck 'r["status"] == "running" and r["job_id"] == "'"$JOB1"'"' ||
    fail "sidecar of a running backup: $(sidecar ctx-t1 disk0 "$FULL")"
jcheck '(r["context_id"] == "ctx-t1" and r["display_name"] == "test vm" and
    [(d["name"], d["virtual_size"], d["label"]) for d in r["disks"]] ==
    [("disk0", 8 << 20, None), ("disk1", 4 << 20, "data")])' \
    < "$REPO/ctx-t1/vm.json" || fail "vm.json: $(cat "$REPO/ctx-t1/vm.json")"

# A second job for a VM with one running is refused, and changes nothing.
before=$(repo_state)
err=$(sdd_error backup.start "{\"vm\": \"ctx-t1\", \"disks\": $DISKS}")
echo "$err" | jcheck 'r["code"] == 1003 and "'"$JOB1"'" in r["message"]' ||
    fail "second job for a running VM: $err"
[ "$(repo_state)" = "$before" ] || fail "a refused start changed the repository"
[ "$(exports_now)" = "$EXP0 $EXP1" ] || fail "a refused start changed the exports"

must nbdcopy "$scratch/src0" "$(echo "$start" | jget 'r["disks"][0]["uri"]')"
must nbdcopy "$scratch/src1" "$(echo "$start" | jget 'r["disks"][1]["uri"]')"

status=$(sdd_rpc job.status "{\"job\": \"$JOB1\"}")
echo "$status" | jcheck '(r["phase"] == "running" and
    [(d["bytes_written"], d["total"], d["percent"]) for d in r["disks"]] ==
    [(8 << 20, 8 << 20, 100.0), (4 << 20, 4 << 20, 100.0)])' ||
    fail "job.status after the copy: $status"
sdd_rpc backup.progress "{\"job\": \"$JOB1\"}" | jcheck 'r["job"] == "'"$JOB1"'"' ||
    fail "backup.progress is not job.status"

done1=$(sdd_rpc backup.complete "{\"job\": \"$JOB1\",
        \"change_ids\": {\"disk0\": \"cid-0\", \"disk1\": \"cid-1\"}}")
echo "$done1" | jcheck 'r["phase"] == "completed" and r["ended_at"] is not None' ||
    fail "backup.complete: $done1"
[ -z "$(exports_now)" ] || fail "exports left after complete: $(exports_now)"
for i in 0 1; do
    img=$REPO/ctx-t1/disk$i/$FULL.qcow2
    qemu_check_clean "$img"
    same_content "$scratch/src$i" "$img"
    sidecar ctx-t1 disk$i "$FULL" | jcheck '(r["status"] == "completed" and
        r["change_id"] == "cid-'$i'" and r["bytes_written"] == r["virtual_size"] and
        r["allocated_bytes"] >= r["virtual_size"] and r["ended_at"] is not None)' ||
        fail "sidecar after complete: $(sidecar ctx-t1 disk$i "$FULL")"
done
err=$(sdd_error backup.complete "{\"job\": \"$JOB1\"}")
echo "$err" | jcheck 'r["code"] == 1005' || fail "complete twice: $err"

# --- an incremental (auto) with 5% of disk0 changed -----------------------

cp "$scratch/src0" "$scratch/src0b"
# 6 of the 128 blocks of 64 KiB, chosen at random, get new random data.
blocks=$(shuf -i 0-127 -n 6 | sort -n | tr '\n' ' ')
for b in $blocks; do
    head -c 65536 /dev/urandom |
        dd of="$scratch/src0b" bs=65536 seek="$b" conv=notrunc status=none
done
cmp -s "$scratch/src0" "$scratch/src0b" && fail "the changed source is the same"

start=$(sdd_rpc backup.start "{\"vm\": \"ctx-t1\", \"disks\": $DISKS}")
echo "$start" | jcheck '(r["type"] == "auto" and
    [(d["backup_type"], d["parent_id"], d["parent_change_id"]) for d in r["disks"]] ==
    [("incr", "'"$FULL"'", "cid-0"), ("incr", "'"$FULL"'", "cid-1")] and
    all(d["export"].startswith("backup-ctx-t1-disk%d-incr-" % i)
        for i, d in enumerate(r["disks"])))' || fail "backup.start auto: $start"
JOB2=$(echo "$start" | jget 'r["job"]')
INCR=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')

write_blocks "$(echo "$start" | jget 'r["disks"][0]["uri"]')" "$scratch/src0b" $blocks

done2=$(sdd_rpc backup.complete "{\"job\": \"$JOB2\", \"change_ids\": {\"disk0\": \"cid-0b\"}}")
echo "$done2" | jcheck 'r["phase"] == "completed"' || fail "complete incremental: $done2"
for i in 0 1; do
    img=$REPO/ctx-t1/disk$i/$INCR.qcow2
    qemu_check_clean "$img"
    qemu-img info --output=json "$img" | jcheck '(
        r["backing-filename"] == "'"$FULL"'.qcow2" and
        r["backing-filename-format"] == "qcow2" and
        r["format-specific"]["data"]["extended-l2"] is True)' ||
        fail "incremental image header: $(qemu-img info "$img")"
done
same_content "$scratch/src0b" "$REPO/ctx-t1/disk0/$INCR.qcow2"
same_content "$scratch/src1" "$REPO/ctx-t1/disk1/$INCR.qcow2"
export MiB
sidecar ctx-t1 disk0 "$INCR" | jcheck '(r["status"] == "completed" and
    r["type"] == "incr" and r["parent"] == "'"$FULL"'" and
    r["change_id"] == "cid-0b" and r["bytes_written"] == 6 * 65536 and
    r["allocated_bytes"] < r["virtual_size"] // 4)' ||
    fail "incremental sidecar: $(sidecar ctx-t1 disk0 "$INCR")"
sidecar ctx-t1 disk1 "$INCR" | jcheck '(r["change_id"] is None and
    r["bytes_written"] == 0 and r["allocated_bytes"] < r["virtual_size"] // 4)' ||
    fail "untouched incremental's sidecar: $(sidecar ctx-t1 disk1 "$INCR")"

# --- the catalog methods --------------------------------------------------

list=$(sdd_rpc backup.list '{"vm": "ctx-t1"}')
echo "$list" | jcheck '(sorted((b["disk"], b["id"], b["status"], b["usable"])
    for b in r["backups"]) == sorted([("disk0", "'"$FULL"'", "completed", True),
    ("disk0", "'"$INCR"'", "completed", True), ("disk1", "'"$FULL"'", "completed", True),
    ("disk1", "'"$INCR"'", "completed", True)]) and
    all(b["vm"] == "ctx-t1" and b["repository"] == "main" for b in r["backups"]))' ||
    fail "backup.list: $list"
sdd_rpc backup.list | jcheck 'len(r["backups"]) == 4' || fail "backup.list without a VM"
show=$(sdd_rpc backup.show "{\"vm\": \"ctx-t1\", \"disk\": \"disk0\", \"id\": \"$INCR\"}")
echo "$show" | jcheck '(r["id"] == "'"$INCR"'" and r["type"] == "incr" and
    r["parent"] == "'"$FULL"'" and r["backing_file"] == "'"$FULL"'.qcow2" and
    r["change_id"] == "cid-0b" and r["has_image"] is True)' || fail "backup.show: $show"
chain=$(sdd_rpc backup.chain '{"vm": "ctx-t1", "disk": "disk0"}')
echo "$chain" | jcheck '(r["id"] == "'"$INCR"'" and r["usable"] is True and
    [b["id"] for b in r["chain"]] == ["'"$FULL"'", "'"$INCR"'"])' || fail "backup.chain: $chain"
sdd_rpc backup.chain "{\"vm\": \"ctx-t1\", \"disk\": \"disk1\", \"id\": \"$FULL\"}" |
    jcheck '[b["id"] for b in r["chain"]] == ["'"$FULL"'"]' || fail "backup.chain of the full"

# --- backup.fail ----------------------------------------------------------

start=$(sdd_rpc backup.start "{\"vm\": \"ctx-t1\", \"type\": \"incremental\", \"disks\": $DISKS}")
echo "$start" | jcheck 'all(d["parent_id"] == "'"$INCR"'" for d in r["disks"])' ||
    fail "an incremental on top of the last one: $start"
JOB3=$(echo "$start" | jget 'r["job"]')
ID3=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')
[ -f "$REPO/ctx-t1/disk0/$ID3.qcow2" ] || fail "no image for job 3"
[ -n "$(exports_now)" ] || fail "no exports for job 3"
failed=$(sdd_rpc backup.fail "{\"job\": \"$JOB3\", \"reason\": \"test says no\"}")
echo "$failed" | jcheck 'r["phase"] == "failed" and r["failure_reason"] == "test says no"' ||
    fail "backup.fail: $failed"
[ -z "$(exports_now)" ] || fail "exports left after backup.fail: $(exports_now)"
for i in 0 1; do
    [ ! -e "$REPO/ctx-t1/disk$i/$ID3.qcow2" ] || fail "backup.fail left the image of disk$i"
    sidecar ctx-t1 disk$i "$ID3" | jcheck 'r["status"] == "failed" and r["failure_reason"] == "test says no"' ||
        fail "sidecar after backup.fail: $(sidecar ctx-t1 disk$i "$ID3")"
done
sdd_rpc backup.chain '{"vm": "ctx-t1", "disk": "disk0"}' | jcheck 'r["id"] == "'"$INCR"'"' ||
    fail "a failed backup became the chain's end"

# --- SIGKILL during a job, then restart -----------------------------------

start=$(sdd_rpc backup.start "{\"vm\": \"ctx-t1\", \"disks\": $DISKS}")
ID4=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')
must nbdcopy "$scratch/src1" "$(echo "$start" | jget 'r["disks"][1]["uri"]')"
sdd_kill
[ -n "$(exports_now)" ] || fail "the exports went with sendensed"
sdd_start
[ -z "$(exports_now)" ] || fail "exports of the killed job left after restart: $(exports_now)"
for i in 0 1; do
    [ ! -e "$REPO/ctx-t1/disk$i/$ID4.qcow2" ] || fail "recovery left the image of disk$i"
    sidecar ctx-t1 disk$i "$ID4" | jcheck '(r["status"] == "failed" and
        r["failure_reason"] == "sendensed restarted during the backup")' ||
        fail "sidecar after recovery: $(sidecar ctx-t1 disk$i "$ID4")"
done
grep -q "recovery: ctx-t1/disk0/$ID4" "$SDD_LOG" || fail "recovery was not logged"

# --- bad input: clear errors, nothing changed -----------------------------

before=$(repo_state)
err=$(sdd_error backup.show '{"vm": "ctx-none", "disk": "disk0", "id": "x"}')
echo "$err" | jcheck 'r["code"] == 1001 and "ctx-none" in r["message"]' ||
    fail "backup.show of an unknown VM: $err"
err=$(sdd_error backup.start '{"vm": "../evil", "disks": [{"name": "disk0", "size": 1048576}]}')
echo "$err" | jcheck 'r["code"] == 1005 and "VM context id" in r["message"]' ||
    fail "../ in a VM name: $err"
[ ! -e "$scratch/evil" ] || fail "../ in a VM name created a folder"
err=$(sdd_error backup.start '{"vm": "ctx-t2", "disks": [{"name": "disk01", "size": 1048576}]}')
echo "$err" | jcheck 'r["code"] == 1005' || fail "a bad disk name: $err"
err=$(sdd_error backup.start '{"vm": "ctx-t2", "disks": [{"name": "disk0", "size": 1000}]}')
echo "$err" | jcheck 'r["code"] == 1005 and "512" in r["message"]' || fail "a bad size: $err"
err=$(sdd_error backup.start '{"vm": "ctx-t2", "type": "weekly", "disks": []}')
echo "$err" | jcheck 'r["code"] == -32602' || fail "a bad type: $err"
err=$(sdd_error backup.start '{"vm": "ctx-t2", "type": "incremental", "disks": [{"name": "disk0", "size": 1048576}]}')
echo "$err" | jcheck 'r["code"] == 1001 and "no completed" in r["message"]' ||
    fail "an incremental without a parent: $err"
err=$(sdd_error backup.complete '{"job": "job-nope"}')
echo "$err" | jcheck 'r["code"] == 1001' || fail "complete of an unknown job: $err"
err=$(sdd_error backup.start '{"vm": "ctx-t2", "repository": "other", "disks": [{"name": "disk0", "size": 1048576}]}')
echo "$err" | jcheck 'r["code"] == 1001 and "other" in r["message"]' || fail "an unknown repository: $err"

# Malformed JSON and an oversized line on one connection, which stays usable.
"$PYTHON" - "$SDD_SOCK" <<'EOF' || fail "malformed and oversized requests"
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(60)
s.connect(sys.argv[1])
f = s.makefile("rb")
def reply(line):
    s.sendall(line)
    return json.loads(f.readline())
r = reply(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
assert r["error"]["code"] == -32700, r
big = b'{"jsonrpc": "2.0", "id": 2, "method": "daemon.info", "params": {"x": "' + \
      b"a" * (2 << 20) + b'"}}\n'
r = reply(big)
assert r["error"]["code"] == -32001 and r["id"] is None, r
r = reply(b'{"jsonrpc": "2.0", "id": 3, "method": "no.such"}\n')
assert r["error"]["code"] == -32601, r
r = reply(b'{"jsonrpc": "2.0", "id": 4, "method": "daemon.info"}\n')
assert r["result"]["name"] == "sendensed", r
EOF
[ "$(repo_state)" = "$before" ] || {
    diff <(echo "$before") <(repo_state) >&2
    fail "bad input changed the repository"
}
[ -z "$(exports_now)" ] || fail "bad input added exports: $(exports_now)"

# --- idle_timeout ---------------------------------------------------------

sdd_stop
sdd_config "idle_timeout: 1"
sdd_start
start=$(sdd_rpc backup.start '{"vm": "ctx-idle", "disks": [{"name": "disk0", "size": 1048576}]}')
JOB5=$(echo "$start" | jget 'r["job"]')
ID5=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')
# Bounded wait for the timer (a generous bound, not a timing check).
for i in $(seq 1 600); do
    status=$(sdd_rpc job.status "{\"job\": \"$JOB5\"}")
    echo "$status" | jcheck 'r["phase"] == "running"' || break
    sleep 0.1
done
echo "$status" | jcheck 'r["phase"] == "failed" and r["failure_reason"] == "no write activity for 1 s"' ||
    fail "an idle job: $status"
[ -z "$(exports_now)" ] || fail "the idle job's export is left: $(exports_now)"
[ ! -e "$REPO/ctx-idle/disk0/$ID5.qcow2" ] || fail "the idle job's image is left"
sidecar ctx-idle disk0 "$ID5" | jcheck 'r["status"] == "failed"' || fail "idle job's sidecar"

sdd_stop
srv_stop
