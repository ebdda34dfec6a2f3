#!/bin/bash
# sendense-ctl against a real sendense-nbd and sendensed: export
# add/list/get/stats/remove; a backup of a VM with two disks started with
# `backup start`, written with nbdcopy, followed with `backup status` and
# completed with `backup complete`; list/show/chain tables name the right
# ids and sizes, and their --json output is the daemon's result; `backup
# watch` of a finished job ends at once; `backup fail`; exit statuses:
# 2 with one stderr line for usage errors, 3 for a socket nobody answers
# on, 1 with the daemon's message for a daemon error (unknown VM, a
# method the daemon does not have); --help of every group and command.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires nbdcopy qemu-img

. "$top_srcdir/tests/sendensed-lib.sh"

CTL_BIN=${SENDENSE_CTL:-$(cd "$top_builddir/ctl" 2>/dev/null && pwd)/sendense-ctl}
if [ ! -x "$CTL_BIN" ]; then
    echo "$0: ERROR: $CTL_BIN was not built" >&2
    exit 99
fi

# The tool finds both daemons through the environment; --socket and
# --nbd-socket are tested on their own below.
export SENDENSE_SOCKET=$SDD_SOCK
unset SENDENSE_NBD_SOCKET

# ctl ARGS...: must succeed; prints its stdout.
ctl() {
    local out rc=0
    out=$("$CTL_BIN" --nbd-socket "$SRV_CTL" "$@" 2>"$scratch/ctl.err") || rc=$?
    if [ "$rc" != 0 ]; then
        cat "$scratch/ctl.err" >&2
        fail "sendense-ctl $* exited with $rc"
    fi
    [ -z "$(our_stderr "$scratch/ctl.err")" ] ||
        fail "sendense-ctl $* wrote to stderr: $(cat "$scratch/ctl.err")"
    printf '%s\n' "$out"
}

# ctl_fails STATUS PATTERN ARGS...: must exit with STATUS and print one
# line on stderr, "sendense-ctl: ..." matching PATTERN (grep -E), and
# nothing on stdout.
ctl_fails() {
    local want=$1 pattern=$2 rc=0 out
    shift 2
    out=$("$CTL_BIN" "$@" 2>"$scratch/ctl.err.raw") || rc=$?
    our_stderr "$scratch/ctl.err.raw" > "$scratch/ctl.err"
    [ "$rc" = "$want" ] ||
        fail "sendense-ctl $*: exit $rc, not $want ($(cat "$scratch/ctl.err"))"
    [ "$(wc -l < "$scratch/ctl.err")" = 1 ] &&
        grep -Eq "^sendense-ctl: .*$pattern" "$scratch/ctl.err" ||
        fail "sendense-ctl $*: stderr is not one line matching '$pattern': $(cat "$scratch/ctl.err")"
    [ -z "$out" ] || fail "sendense-ctl $*: printed on stdout: $out"
}

# row_has TEXT WORD...: some line of TEXT holds every WORD as a
# column (columns are separated by two or more blanks).
row_has() {
    local text=$1
    shift
    printf '%s\n' "$text" | "$PYTHON" -c '
import re, sys
words = sys.argv[1:]
for line in sys.stdin:
    cols = [c.strip() for c in re.split(r"\s{2,}", line.rstrip("\n"))]
    if all(w in cols for w in words):
        sys.exit(0)
sys.exit(1)' "$@"
}

srv_start
sdd_config
sdd_start

# --- help on every level --------------------------------------------------

"$CTL_BIN" --help | grep -q "^Usage: sendense-ctl " || fail "sendense-ctl --help"
"$CTL_BIN" --help | grep -q "3 the daemon cannot be reached" ||
    fail "--help does not document the exit statuses"
"$CTL_BIN" --version | grep -q "^sendense-ctl " || fail "--version"
for group in server export connection backup restore; do
    help=$("$CTL_BIN" "$group" --help) || fail "$group --help exited non-zero"
    cmds=$(printf '%s\n' "$help" | sed -n '/^Commands:/,/^$/p' | awk 'NF > 1 {print $1}')
    [ -n "$cmds" ] || fail "$group --help lists no commands"
    for cmd in $cmds; do
        out=$("$CTL_BIN" "$group" "$cmd" --help) ||
            fail "$group $cmd --help exited non-zero"
        printf '%s\n' "$out" | grep -q "^Usage: sendense-ctl $group $cmd" ||
            fail "$group $cmd --help: $out"
        printf '%s\n' "$out" | grep -q "^Exit status:" ||
            fail "$group $cmd --help does not give the exit statuses"
    done
done
for cmd in start complete fail list show chain status watch jobs delete verify prune; do
    "$CTL_BIN" backup --help | grep -q "^  $cmd " || fail "backup --help does not list $cmd"
done
for cmd in info reload; do
    "$CTL_BIN" server --help | grep -q "^  $cmd " || fail "server --help does not list $cmd"
done
for cmd in list get add remove fence stats; do
    "$CTL_BIN" export --help | grep -q "^  $cmd " || fail "export --help does not list $cmd"
done

# --- usage errors: exit 2, one line, nothing sent -------------------------

ctl_fails 2 "no command group" 
ctl_fails 2 "unknown command group 'bogus'" bogus
ctl_fails 2 "backup: no command given" backup
ctl_fails 2 "backup: unknown command 'frobnicate'" backup frobnicate
ctl_fails 2 "unknown option '--bogus'" backup list --bogus
ctl_fails 2 "unknown option '--bogus'" --bogus backup list
ctl_fails 2 "option '--vm' needs an argument" backup list --vm
ctl_fails 2 "--vm is required" backup start --disk disk0:1M
ctl_fails 2 "at least one --disk" backup start --vm ctx-u
ctl_fails 2 "invalid size '12X'" backup start --vm ctx-u --disk disk0:12X
ctl_fails 2 "is not NAME:SIZE" backup start --vm ctx-u --disk disk0
ctl_fails 2 "--type must be full, incremental or auto" backup start --vm ctx-u --disk disk0:1M --type weekly
ctl_fails 2 "--reason is required" backup fail job-x
ctl_fails 2 "missing argument" backup show ctx-u disk0
ctl_fails 2 "too many arguments" backup status a b
ctl_fails 2 "is not DISK=ID" backup complete job-x --change-id nodisk
ctl_fails 2 "not a connection id" connection close zero
ctl_fails 2 "invalid value 'vmdk' for --format" export add e1 /x --format vmdk

# --- unreachable: exit 3 --------------------------------------------------

ctl_fails 3 "sendensed control socket $scratch/nothing.sock: No such file" --socket "$scratch/nothing.sock" backup list
ctl_fails 3 "sendense-nbd control socket $scratch/nothing.sock: No such file" --nbd-socket "$scratch/nothing.sock" export list
SENDENSE_NBD_SOCKET=$scratch/nothing.sock ctl_fails 3 "control socket .*: " server info
SENDENSE_SOCKET=$scratch/nothing.sock ctl_fails 3 "control socket .*: " backup status job-x
# A socket file nobody listens on.
"$PYTHON" -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$scratch/dead.sock"
ctl_fails 3 "sendensed control socket .*dead.sock: Connection refused" --socket "$scratch/dead.sock" backup list

# --- sendense-nbd: server, export, connection -----------------------------

export SRV_CTL
ctl server info | grep -Eq "^name +sendense-nbd$" || fail "server info: $(ctl server info)"
ctl server info --json | jcheck 'r["name"] == "sendense-nbd"' || fail "server info --json"
ctl server reload | grep -q "^added 0, " || fail "server reload: $(ctl server reload)"

MiB=$((1024 * 1024))
truncate -s $((3 * MiB / 2)) "$scratch/plain.img"
out=$(ctl export add ctl-e1 "$scratch/plain.img" --format raw --description "from ctl")
printf '%s\n' "$out" | grep -Eq "^state +serving$" || fail "export add: $out"
printf '%s\n' "$out" | grep -Eq "^size +1.5 MiB$" || fail "export add size: $out"
[ -f "$SRV_EXPORTS/ctl-e1.yaml" ] || fail "export add did not persist the export"
# Adding the same definition again is fine; another one is the daemon's error.
ctl export add ctl-e1 "$scratch/plain.img" --format raw --description "from ctl" >/dev/null
ctl_fails 1 "export.add: export 'ctl-e1' exists with another definition" \
    --nbd-socket "$SRV_CTL" export add ctl-e1 "$scratch/plain.img" --readonly
list=$(ctl export list)
row_has "$list" NAME STATE FORMAT SIZE PATH || fail "export list header: $list"
row_has "$list" ctl-e1 serving raw rw "1.5 MiB" "$scratch/plain.img" || fail "export list: $list"
ctl export list --json | jcheck '([e["name"] for e in r["exports"]] == ["ctl-e1"] and
    r["exports"][0]["size"] == 3 << 19)' || fail "export list --json: $(ctl export list --json)"
ctl export get ctl-e1 | grep -Eq "^description +from ctl$" || fail "export get: $(ctl export get ctl-e1)"

# Some traffic, then the counters.
head -c $MiB /dev/urandom > "$scratch/data1m"
must nbdcopy "$scratch/data1m" "$(srv_unix_uri ctl-e1)"
stats=$(ctl export stats)
row_has "$stats" ctl-e1 "1 MiB" || fail "export stats: $stats"
ctl export stats ctl-e1 | grep -Eq "^bytes written +1 MiB$" || fail "export stats NAME: $(ctl export stats ctl-e1)"
ctl export stats ctl-e1 --json | jcheck 'r["stats"]["bytes"]["write"] == 1 << 20' ||
    fail "export stats --json: $(ctl export stats ctl-e1 --json)"
ctl connection list | grep -q "^ID " || fail "connection list: $(ctl connection list)"
ctl connection list --json | jcheck 'r["connections"] == []' || fail "connection list --json"
ctl_fails 1 "connection.close: no connection 999" --nbd-socket "$SRV_CTL" connection close 999
ctl export fence ctl-e1 | grep -q "^export ctl-e1 fenced" || fail "export fence"
ctl export remove ctl-e1 | grep -q "^export ctl-e1 removed" || fail "export remove"
ctl export list --json | jcheck 'r["exports"] == []' || fail "export remove left: $(ctl export list --json)"
ctl_fails 1 "export.get: no export named 'ctl-e1'" --nbd-socket "$SRV_CTL" export get ctl-e1

# --- sendensed: a backup of two disks -------------------------------------

head -c $((8 * MiB)) /dev/urandom > "$scratch/src0"
head -c $((4 * MiB)) /dev/urandom > "$scratch/src1"
start=$(ctl backup start --vm ctx-c1 --disk disk0:8M --disk disk1:4194304:data \
        --type full --json)
echo "$start" | jcheck '(r["vm"] == "ctx-c1" and r["phase"] == "running" and
    [(d["name"], d["backup_type"], d["total"]) for d in r["disks"]] ==
    [("disk0", "full", 8 << 20), ("disk1", "full", 4 << 20)])' ||
    fail "backup start --json: $start"
JOB=$(echo "$start" | jget 'r["job"]')
FULL=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')
URI0=$(echo "$start" | jget 'r["disks"][0]["uri"]')
URI1=$(echo "$start" | jget 'r["disks"][1]["uri"]')
EXP0=$(echo "$start" | jget 'r["disks"][0]["export"]')

# The exports sendensed asked for are visible through the other socket.
row_has "$(ctl export list)" "$EXP0" serving qcow2 rw "8 MiB" || fail "the job's export: $(ctl export list)"
ctl_fails 1 "backup.start: .*$JOB" backup start --vm ctx-c1 --disk disk0:8M

must nbdcopy "$scratch/src0" "$URI0"
must nbdcopy "$scratch/src1" "$URI1"

status=$(ctl backup status "$JOB")
printf '%s\n' "$status" | grep -Eq "^phase +running$" || fail "backup status: $status"
row_has "$status" disk0 "$FULL" full running "8 MiB" "100.0%" "$EXP0" || fail "backup status disk0: $status"
row_has "$status" disk1 "$FULL" full "4 MiB" "100.0%" || fail "backup status disk1: $status"
ctl backup status "$JOB" --json | jcheck '[d["bytes_written"] for d in r["disks"]] == [8 << 20, 4 << 20]' ||
    fail "backup status --json"
# watch of a running job, output to a pipe: a plain line per poll; it is
# stopped once the first line is there (the job is still running).
"$CTL_BIN" backup watch "$JOB" > "$scratch/watch.out" 2>&1 &
WATCH_PID=$!
for i in $(seq 1 100); do
    [ -s "$scratch/watch.out" ] && break
    sleep 0.05
done
kill "$WATCH_PID" 2>/dev/null
wait "$WATCH_PID" 2>/dev/null
grep -Eq "^$JOB running 100\.0% 12 MiB / 12 MiB .*/s ETA " "$scratch/watch.out" ||
    fail "backup watch of a running job: $(cat "$scratch/watch.out")"

done_out=$(ctl backup complete "$JOB" --change-id disk0=cid-0 --change-id disk1=cid-1)
printf '%s\n' "$done_out" | grep -Eq "^phase +completed$" || fail "backup complete: $done_out"
for i in 0 1; do
    qemu_check_clean "$REPO/ctx-c1/disk$i/$FULL.qcow2"
    same_content "$scratch/src$i" "$REPO/ctx-c1/disk$i/$FULL.qcow2"
done

# watch of a finished job: ends at once, status 0.
out=$("$CTL_BIN" backup watch "$JOB") || fail "backup watch of a completed job exited $?"
printf '%s\n' "$out" | tail -1 | grep -q "^job $JOB completed$" || fail "backup watch: $out"
"$CTL_BIN" backup watch "$JOB" --json | jcheck 'r["phase"] == "completed"' ||
    fail "backup watch --json"

# An incremental of disk0 only, with a change id.
start2=$(ctl backup start --vm ctx-c1 --disk disk0:8M --json)
JOB2=$(echo "$start2" | jget 'r["job"]')
INCR=$(echo "$start2" | jget 'r["disks"][0]["backup_id"]')
echo "$start2" | jcheck 'r["disks"][0]["parent_id"] == "'"$FULL"'" and r["disks"][0]["backup_type"] == "incr"' ||
    fail "incremental start: $start2"
head -c 65536 /dev/urandom > "$scratch/blk"
must nbdcopy --destination-is-zero "$scratch/blk" "$(echo "$start2" | jget 'r["disks"][0]["uri"]')"
ctl backup complete "$JOB2" --change-id disk0=cid-0b >/dev/null

# list / show / chain: tables and --json.
list=$(ctl backup list --vm ctx-c1)
row_has "$list" VM DISK ID TYPE STATUS SIZE WRITTEN || fail "backup list header: $list"
row_has "$list" ctx-c1 disk0 "$FULL" full completed yes "8 MiB" "8 MiB" cid-0 || fail "backup list full disk0: $list"
row_has "$list" ctx-c1 disk1 "$FULL" full completed yes "4 MiB" "4 MiB" cid-1 || fail "backup list full disk1: $list"
row_has "$list" ctx-c1 disk0 "$INCR" incr completed yes "8 MiB" "64 KiB" cid-0b || fail "backup list incr: $list"
[ "$(printf '%s\n' "$list" | wc -l)" = 4 ] || fail "backup list has other rows: $list"
ctl backup list --vm ctx-c1 --json > "$scratch/list.json"
$NBD_RPC "$SDD_SOCK" backup.list '{"vm": "ctx-c1"}' > "$scratch/list.rpc.json"
"$PYTHON" -c 'import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); sys.exit(a != b)' \
    "$scratch/list.json" "$scratch/list.rpc.json" || fail "backup list --json is not the daemon's result"
jcheck '(sorted((b["disk"], b["id"]) for b in r["backups"]) ==
    sorted([("disk0", "'"$FULL"'"), ("disk1", "'"$FULL"'"), ("disk0", "'"$INCR"'")]))' \
    < "$scratch/list.json" || fail "backup list --json: $(cat "$scratch/list.json")"

show=$(ctl backup show ctx-c1 disk0 "$INCR")
printf '%s\n' "$show" | grep -Eq "^parent +$FULL$" || fail "backup show parent: $show"
printf '%s\n' "$show" | grep -Eq "^virtual size +8 MiB \(8388608 bytes\)$" || fail "backup show size: $show"
printf '%s\n' "$show" | grep -Eq "^started +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} UTC$" || fail "backup show time: $show"
ctl backup show ctx-c1 disk0 "$INCR" --json | jcheck 'r["id"] == "'"$INCR"'" and r["change_id"] == "cid-0b"' ||
    fail "backup show --json"

chain=$(ctl backup chain ctx-c1 disk0)
printf '%s\n' "$chain" | grep -Eq "^backup +$INCR$" || fail "backup chain: $chain"
row_has "$chain" disk0 "$FULL" full || fail "backup chain full: $chain"
row_has "$chain" disk0 "$INCR" incr || fail "backup chain incr: $chain"
# Full first.
[ "$(printf '%s\n' "$chain" | grep -n -e "$FULL  " | head -1 | cut -d: -f1)" -lt \
  "$(printf '%s\n' "$chain" | grep -n -e "$INCR  " | head -1 | cut -d: -f1)" ] ||
    fail "backup chain order: $chain"
ctl backup chain ctx-c1 disk0 "$FULL" --json | jcheck '[b["id"] for b in r["chain"]] == ["'"$FULL"'"]' ||
    fail "backup chain ID --json"
ctl backup jobs | grep -q "^$JOB2 " || fail "backup jobs: $(ctl backup jobs)"

# --- daemon errors: exit 1 with the daemon's message ----------------------

ctl_fails 1 "backup.show: .*ctx-nope" backup show ctx-nope disk0 "$FULL"
ctl_fails 1 "backup.chain: .*ctx-nope" backup chain ctx-nope disk0
ctl_fails 1 "job.status: " backup status job-20990101T000000Z-00000000
ctl_fails 1 "backup.complete: " backup complete "$JOB"
ctl_fails 1 "backup.verify: .*ctx-nope" backup verify ctx-nope disk0 "$FULL"
# A daemon without the method (-32601): sendense-nbd's socket stands in
# for a sendensed older than the command.
ctl_fails 1 "backup delete: not implemented yet by sendensed \(it has no method backup.delete\)" \
    --socket "$SRV_CTL" backup delete ctx-c1 "$INCR"
ctl_fails 1 "restore mount: not implemented yet by sendensed" \
    --socket "$SRV_CTL" restore mount ctx-c1 disk0 "$INCR"
ctl_fails 2 "--keep-last needs a number" backup prune --keep-last many
# The forwarded commands print the daemon's result as JSON.
ctl backup verify ctx-c1 disk0 "$INCR" | jcheck 'isinstance(r, dict)' || fail "backup verify"
ctl restore list | jcheck '"mounts" in r and "exports" in r' || fail "restore list"
[ -f "$REPO/ctx-c1/disk0/$INCR.qcow2" ] || fail "the incremental's image is gone"

# backup fail: the watch of a failed job exits 1 with the reason.
start3=$(ctl backup start --vm ctx-c2 --disk disk0:1M --json)
JOB3=$(echo "$start3" | jget 'r["job"]')
ctl backup fail "$JOB3" --reason "agent lost" | grep -Eq "^failure +agent lost$" ||
    fail "backup fail"
rc=0
"$CTL_BIN" backup watch "$JOB3" > "$scratch/watch3.out" 2> "$scratch/watch3.err" || rc=$?
[ "$rc" = 1 ] || fail "backup watch of a failed job exited $rc"
[ "$(our_stderr "$scratch/watch3.err")" = "sendense-ctl: job $JOB3 failed: agent lost" ] ||
    fail "backup watch of a failed job: $(cat "$scratch/watch3.err")"
grep -q "^$JOB3 failed " "$scratch/watch3.out" || fail "backup watch: $(cat "$scratch/watch3.out")"
row_has "$(ctl backup list --vm ctx-c2)" ctx-c2 disk0 failed no || fail "failed backup not listed"

sdd_stop
srv_stop
