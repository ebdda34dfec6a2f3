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
# The commands forwarded to sendensed print tables and key value lines by
# default, with the right ids, sizes and names: restore export, list and
# unexport; backup verify (with checksum), delete (refused, a leaf,
# cascade, merge), prune (dry run, two consolidations, nothing to do),
# retention (a VM's own rules set, shown, cleared);
# their --json output is the daemon's result. Where root, FUSE and loop
# devices are at hand, a small ext4 disk is backed up and restore mount,
# ls, stat, extract and umount are checked the same way.
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

# sendense-nbd's temporary overlays (restore mount) go to $TMPDIR.
mkdir -p "$scratch/tmp"
TMPDIR=$scratch/tmp srv_start
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
for cmd in start complete fail list show chain status watch jobs delete verify prune retention; do
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

# --- restore export, list, unexport ---------------------------------------

list=$(ctl restore list)
[ "$list" = "$(printf 'EXPORT  VM  DISK  BACKUP  CREATED  URI\n\nMOUNT  VM  DISK  BACKUP  CREATED  VOLUMES')" ] ||
    fail "restore list with nothing: $list"
out=$(ctl restore export ctx-c1 disk0 "$FULL")
RNAME=$(printf '%s\n' "$out" | sed -n 's/^name  *//p')
case $RNAME in restore-disk0-"$FULL"-*) ;; *) fail "restore export: name '$RNAME': $out" ;; esac
RURI="nbd+unix:///$RNAME?socket=$SRV_SOCK"
[ "$(printf '%s\n' "$out" | sed -n 's/^uri  *//p')" = "$RURI" ] || fail "restore export: uri: $out"
for want in "vm +ctx-c1" "disk +disk0" "backup +$FULL" "repository +main" \
        "created +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} UTC"; do
    printf '%s\n' "$out" | grep -Eq "^$want$" || fail "restore export: no line '$want': $out"
done
row_has "$(ctl export list)" "$RNAME" serving qcow2 ro "8 MiB" || fail "the restore export in sendense-nbd: $(ctl export list)"
# --json: the daemon's object, with the name asked for.
ctl restore export ctx-c1 disk1 "$FULL" --name ctl-r1 --json | jcheck '(
    sorted(r) == ["created", "disk", "id", "name", "repository", "uri", "vm"] and
    r["name"] == "restore-ctl-r1" and r["disk"] == "disk1" and r["id"] == "'"$FULL"'")' ||
    fail "restore export --json"
list=$(ctl restore list)
row_has "$list" EXPORT VM DISK BACKUP CREATED URI || fail "restore list header: $list"
row_has "$list" MOUNT VM DISK BACKUP CREATED VOLUMES || fail "restore list mounts header: $list"
row_has "$list" "$RNAME" ctx-c1 disk0 "$FULL" "$RURI" || fail "restore list disk0: $list"
row_has "$list" restore-ctl-r1 ctx-c1 disk1 "$FULL" || fail "restore list disk1: $list"
printf '%s\n' "$list" | grep -Eq "^$RNAME  .* [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} UTC  " ||
    fail "restore list created: $list"
ctl restore list --json > "$scratch/rlist.json"
$NBD_RPC "$SDD_SOCK" restore.list > "$scratch/rlist.rpc.json"
"$PYTHON" -c 'import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); sys.exit(a != b)' \
    "$scratch/rlist.json" "$scratch/rlist.rpc.json" || fail "restore list --json is not the daemon's result"
[ "$(ctl restore unexport "$RNAME")" = "restore export $RNAME removed" ] || fail "restore unexport"
ctl restore unexport restore-ctl-r1 --json | jcheck 'r == {"name": "restore-ctl-r1"}' ||
    fail "restore unexport --json"
ctl restore list --json | jcheck 'r == {"exports": [], "mounts": []}' || fail "restore unexport left: $(ctl restore list)"
ctl_fails 1 "restore.unexport: " restore unexport "$RNAME"
[ -f "$REPO/ctx-c1/disk0/$FULL.qcow2" ] && [ -f "$REPO/ctx-c1/disk0/$INCR.qcow2" ] ||
    fail "a restore export took images with it"

# --- retention: verify, delete, prune -------------------------------------

# backup_r: one backup of disk0 of ctx-r (1 MiB) through the tool, the
# whole disk written: a full first, then incrementals. Prints its id.
head -c "$MiB" /dev/urandom > "$scratch/src-r"
backup_r() {
    local start
    start=$(ctl backup start --vm ctx-r --disk disk0:1M --json)
    must nbdcopy "$scratch/src-r" "$(echo "$start" | jget 'r["disks"][0]["uri"]')"
    ctl backup complete "$(echo "$start" | jget 'r["job"]')" >/dev/null
    echo "$start" | jget 'r["disks"][0]["backup_id"]'
}
# ids_r: the ids of ctx-r's backups, oldest first.
ids_r() { ctl backup list --vm ctx-r --json | jget '" ".join(b["id"] for b in r["backups"])'; }
R=()
for i in 1 2 3 4 5; do R+=("$(backup_r)"); done
[ "$(ids_r)" = "${R[*]}" ] && [ "${R[0]%%-*}" = full ] && [ "${R[4]%%-*}" = incr ] ||
    fail "ctx-r's backups: $(ids_r) / ${R[*]}"

# verify: the result, what was read, the checksum, a row per image.
verify=$(ctl backup verify ctx-r disk0 "${R[2]}" --checksum)
sum=$(ctl backup show ctx-r disk0 "${R[2]}" --json | jget 'r["checksum"]["value"]')
for want in "backup +${R[2]}" "result +ok" "read +1 MiB in [0-9]+ runs, 0 errors" \
        "checksum +match \(sha256\)" "recorded +$sum" "computed +$sum"; do
    printf '%s\n' "$verify" | grep -Eq "^$want$" || fail "backup verify: no line '$want': $verify"
done
row_has "$verify" IMAGE CORRUPTIONS LEAKS "CHECK ERRORS" "CORRUPT BIT" ERROR || fail "backup verify header: $verify"
[ "$(printf '%s\n' "$verify" | sed -n '/^IMAGE /,$p' | awk 'NR > 1 {print $1}' | tr '\n' ' ')" = \
  "${R[0]} ${R[1]} ${R[2]} " ] || fail "backup verify: not one row per image of the chain: $verify"
row_has "$verify" "${R[1]}" 0 0 0 no - || fail "backup verify row: $verify"
ctl backup verify ctx-r disk0 "${R[2]}" --checksum --json > "$scratch/verify.json"
$NBD_RPC "$SDD_SOCK" backup.verify '{"vm": "ctx-r", "disk": "disk0", "id": "'"${R[2]}"'", "checksum": true}' \
    > "$scratch/verify.rpc.json"
"$PYTHON" -c 'import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); sys.exit(a != b)' \
    "$scratch/verify.json" "$scratch/verify.rpc.json" || fail "backup verify --json is not the daemon's result"
jcheck 'r["ok"] is True and r["checksum"]["match"] is True' < "$scratch/verify.json" ||
    fail "backup verify --json: $(cat "$scratch/verify.json")"
! ctl backup verify ctx-r disk0 "${R[2]}" | grep -q "^checksum" || fail "backup verify without --checksum shows one"

# delete: refused while others depend on it; a leaf; a cascade, newest
# first; a full merged into its child (--json).
ctl_fails 1 "backup.delete: .*${R[1]}" backup delete ctx-r "${R[0]}"
out=$(ctl backup delete ctx-r "${R[4]}")
row_has "$out" VM DISK BACKUP RESULT && row_has "$out" ctx-r disk0 "${R[4]}" removed &&
    [ "$(printf '%s\n' "$out" | wc -l)" = 2 ] || fail "backup delete: $out"
out=$(ctl backup delete ctx-r "${R[2]}" --mode cascade)
row_has "$out" VM DISK BACKUP RESULT || fail "backup delete --mode cascade header: $out"
[ "$(printf '%s\n' "$out" | awk 'NR > 1 {print $1, $2, $3, $4}' | tr '\n' ' ')" = \
  "ctx-r disk0 ${R[3]} removed ctx-r disk0 ${R[2]} removed " ] || fail "backup delete --mode cascade: $out"
[ "$(ids_r)" = "${R[0]} ${R[1]}" ] || fail "after the deletes: $(ids_r)"
N1=full-${R[1]#*-}
ctl backup delete ctx-r "${R[0]}" --mode merge --json | jcheck '(r == {"vm": "ctx-r",
    "id": "'"${R[0]}"'", "disks": [{"disk": "disk0", "removed": [], "merged_into": "'"$N1"'"}]})' ||
    fail "backup delete --mode merge --json"
[ "$(ids_r)" = "$N1" ] || fail "after the merge: $(ids_r)"
out=$(ctl backup delete ctx-r "$N1" --disk disk0)
row_has "$out" ctx-r disk0 "$N1" removed || fail "backup delete of a lone full: $out"

# prune: a dry run says what it would do and changes nothing; then two
# consolidations, a row each; then nothing is left to do.
R=()
for i in 1 2 3; do R+=("$(backup_r)"); done
[ "$(ids_r)" = "${R[*]}" ] || fail "ctx-r's new backups: $(ids_r) / ${R[*]}"
out=$(ctl backup prune ctx-r --keep-last 1 --dry-run)
[ "$(printf '%s\n' "$out" | head -2)" = "$(printf 'dry run: nothing was changed\n')" ] ||
    fail "backup prune --dry-run banner: $out"
row_has "$out" VM DISK ACTION BACKUP DETAIL || fail "backup prune header: $out"
row_has "$out" ctx-r disk0 consolidate "${R[0]}" "2 step(s)" || fail "backup prune --dry-run: $out"
[ "$(printf '%s\n' "$out" | wc -l)" = 4 ] || fail "backup prune --dry-run has other rows: $out"
[ "$(ids_r)" = "${R[*]}" ] || fail "a dry run changed the catalog: $(ids_r)"
out=$(ctl backup prune ctx-r --keep-last 1)
row_has "$out" ctx-r disk0 consolidate "${R[0]}" "into full-${R[1]#*-}" || fail "backup prune, first step: $out"
row_has "$out" ctx-r disk0 consolidate "full-${R[1]#*-}" "into full-${R[2]#*-}" || fail "backup prune, second step: $out"
[ "$(printf '%s\n' "$out" | wc -l)" = 3 ] || fail "backup prune has other rows: $out"
[ "$(ids_r)" = "full-${R[2]#*-}" ] || fail "after the prune: $(ids_r)"
[ "$(ctl backup prune ctx-r --keep-last 1)" = "nothing to prune" ] || fail "a second prune"
ctl backup prune ctx-r --keep-last 1 --dry-run --json | jcheck 'r == {"dry_run": True, "actions": []}' ||
    fail "backup prune --json"

# retention: a VM's own rules (vm.retention), set and shown per rule for
# the VM, its repository (none here) and in effect; --json is the
# daemon's result; --clear drops them before setting those given.
out=$(ctl backup retention ctx-r --keep-last 5)
for want in "vm +ctx-r" "repository +main"; do
    printf '%s\n' "$out" | grep -Eq "^$want$" || fail "backup retention: no line '$want': $out"
done
row_has "$out" RULE VM REPOSITORY EFFECTIVE || fail "backup retention header: $out"
[ "$(printf '%s\n' "$out" | sed -n '/^RULE /,$p' | tail -n +2 | sed 's/  */ /g')" = \
  "$(printf 'keep last 5 - 5\nkeep days - - -')" ] || fail "backup retention rows: $out"
ctl backup retention ctx-r --json > "$scratch/retention.json"
$NBD_RPC "$SDD_SOCK" vm.retention '{"vm": "ctx-r"}' > "$scratch/retention.rpc.json"
"$PYTHON" -c 'import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); sys.exit(a != b)' \
    "$scratch/retention.json" "$scratch/retention.rpc.json" || fail "backup retention --json is not the daemon's result"
jcheck '(r["vm_retention"] == {"keep_last": 5, "keep_days": None} and
    r["effective"] == r["vm_retention"])' < "$scratch/retention.json" ||
    fail "backup retention --json: $(cat "$scratch/retention.json")"
ctl backup retention ctx-r --clear --keep-days 30 --json |
    jcheck 'r["vm_retention"] == {"keep_last": None, "keep_days": 30}' || fail "backup retention --clear --keep-days"
row_has "$(ctl backup retention ctx-r)" "keep days" 30 - 30 || fail "backup retention: $(ctl backup retention ctx-r)"
ctl backup retention ctx-r --clear --json |
    jcheck 'r["vm_retention"] == {"keep_last": None, "keep_days": None}' || fail "backup retention --clear"
ctl_fails 1 "vm.retention: .*keep_last" backup retention ctx-r --keep-last 0
ctl_fails 1 "vm.retention: .*ctx-nope" backup retention ctx-nope
ctl_fails 2 "--keep-days needs a number" backup retention ctx-r --keep-days soon

# backup fail: the watch of a failed job exits 1 with the reason.
start3=$(ctl backup start --vm ctx-c2 --disk disk0:1M --json)
JOB3=$(echo "$start3" | jget 'r["job"]')
# backup fence: a running job's exports (no writer here: at once).
[ "$(ctl backup fence "$JOB3")" = "job $JOB3: fenced disk0" ] || fail "backup fence: $(ctl backup fence "$JOB3")"
ctl backup fence "$JOB3" disk0 --json | jcheck 'r["fenced"] == ["disk0"]' || fail "backup fence --json"
ctl_fails 1 "has no disk" backup fence "$JOB3" disk7
ctl backup fail "$JOB3" --reason "agent lost" | grep -Eq "^failure +agent lost$" ||
    fail "backup fail"
ctl_fails 1 "not running: agent lost" backup fence "$JOB3"
rc=0
"$CTL_BIN" backup watch "$JOB3" > "$scratch/watch3.out" 2> "$scratch/watch3.err" || rc=$?
[ "$rc" = 1 ] || fail "backup watch of a failed job exited $rc"
[ "$(our_stderr "$scratch/watch3.err")" = "sendense-ctl: job $JOB3 failed: agent lost" ] ||
    fail "backup watch of a failed job: $(cat "$scratch/watch3.err")"
grep -q "^$JOB3 failed " "$scratch/watch3.out" || fail "backup watch: $(cat "$scratch/watch3.out")"
row_has "$(ctl backup list --vm ctx-c2)" ctx-c2 disk0 failed no || fail "failed backup not listed"

# --- restore mount, ls, stat, extract, umount ----------------------------

# A 16 MiB disk holding ext4 straight on it (no partition table), made
# from a folder (mkfs.ext4 -d: no mount needed), backed up through the
# tool, then mounted by sendensed in its private namespace.
test_mounts() {
    local tree=$scratch/tree out id m ls want size
    mkdir -p "$tree/docs" "$scratch/out"
    printf 'hello from the backup\n' > "$tree/hello.txt"
    head -c $((3 * MiB / 2)) /dev/urandom > "$tree/docs/big.bin"
    ln -s hello.txt "$tree/link"
    chmod 640 "$tree/hello.txt"
    chmod 644 "$tree/docs/big.bin"
    chmod 750 "$tree/docs"
    touch -h -d @1759669450 "$tree/hello.txt" "$tree/link" "$tree/docs/big.bin" "$tree/docs"
    must mkfs.ext4 -q -F -b 4096 -d "$tree" "$scratch/fs.raw" 16M
    out=$(ctl backup start --vm ctx-m --disk disk0:16M --json)
    id=$(echo "$out" | jget 'r["disks"][0]["backup_id"]')
    must nbdcopy "$scratch/fs.raw" "$(echo "$out" | jget 'r["disks"][0]["uri"]')"
    ctl backup complete "$(echo "$out" | jget 'r["job"]')" >/dev/null

    out=$(ctl restore mount ctx-m disk0 "$id")
    m=$(printf '%s\n' "$out" | sed -n 's/^mount  *//p')
    case $m in mnt-????????) ;; *) fail "restore mount: mount id '$m': $out" ;; esac
    for want in "export +restore-$m" "vm +ctx-m" "disk +disk0" "backup +$id" "repository +main" \
            "created +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} UTC"; do
        printf '%s\n' "$out" | grep -Eq "^$want$" || fail "restore mount: no line '$want': $out"
    done
    row_has "$out" VOLUME KIND FSTYPE OFFSET SIZE MOUNTED NOTE || fail "restore mount header: $out"
    row_has "$out" disk disk ext4 "0 B" - yes - || fail "restore mount volume: $out"
    [ "$(printf '%s\n' "$out" | wc -l)" = 10 ] || fail "restore mount has other rows: $out"
    row_has "$(ctl restore list)" "$m" ctx-m disk0 "$id" "1 (1 mounted)" ||
        fail "restore list with a mount: $(ctl restore list)"

    # ls: type, size, mode, mtime, name; sorted by name.
    ls=$(ctl restore ls "$m" disk /)
    row_has "$ls" TYPE SIZE MODE MTIME NAME || fail "restore ls header: $ls"
    row_has "$ls" dir "4 KiB" rwxr-x--- "2025-10-05 13:04:10 UTC" docs || fail "restore ls docs: $ls"
    row_has "$ls" file "22 B" rw-r----- "2025-10-05 13:04:10 UTC" hello.txt || fail "restore ls hello.txt: $ls"
    row_has "$ls" symlink "9 B" rwxrwxrwx "2025-10-05 13:04:10 UTC" link || fail "restore ls link: $ls"
    row_has "$ls" dir rwx------ lost+found || fail "restore ls lost+found: $ls"
    [ "$(printf '%s\n' "$ls" | awk 'NR > 1 {print $NF}' | tr '\n' ' ')" = "docs hello.txt link lost+found " ] ||
        fail "restore ls rows: $ls"
    ls=$(ctl restore ls "$m" disk docs)
    row_has "$ls" file "1.5 MiB" rw-r--r-- "2025-10-05 13:04:10 UTC" big.bin &&
        [ "$(printf '%s\n' "$ls" | wc -l)" = 2 ] || fail "restore ls docs: $ls"
    ctl restore ls "$m" disk docs --json | jcheck '(r == {"entries": [{"name": "big.bin",
        "type": "file", "size": 3 << 19, "mode": 0o644, "mtime": 1759669450}]})' ||
        fail "restore ls --json: $(ctl restore ls "$m" disk docs --json)"

    want=$(printf '%s\n' "name             hello.txt" "type             file" \
        "size             22 B (22 bytes)" "mode             rw-r----- (0640)" \
        "mtime            2025-10-05 13:04:10 UTC")
    [ "$(ctl restore stat "$m" disk hello.txt)" = "$want" ] ||
        fail "restore stat: $(ctl restore stat "$m" disk hello.txt)"
    ctl restore stat "$m" disk link | grep -Eq "^type +symlink$" || fail "restore stat of a symlink"

    out=$(ctl restore extract "$m" disk hello.txt "$scratch/out/hello.txt")
    [ "$out" = "extracted to $scratch/out/hello.txt: file, 22 B (22 bytes)" ] || fail "restore extract: $out"
    cmp -s "$tree/hello.txt" "$scratch/out/hello.txt" || fail "restore extract: not the file"
    out=$(ctl restore extract "$m" disk docs "$scratch/out/docs.tar")
    size=$(stat -c %s "$scratch/out/docs.tar")
    printf '%s\n' "$out" | grep -Eq "^extracted to $scratch/out/docs.tar: tar archive, 1\.5 MiB \($size bytes\)$" ||
        fail "restore extract of a folder: $out"
    tar -xOf "$scratch/out/docs.tar" ./big.bin | cmp -s - "$tree/docs/big.bin" ||
        fail "restore extract of a folder: big.bin not in the archive"
    ctl_fails 1 "restore.extract: link: only files and directories" \
        restore extract "$m" disk link "$scratch/out/link"
    ctl restore extract "$m" disk hello.txt "$scratch/out/again.txt" --json | jcheck '(r == {
        "dest": "'"$scratch/out/again.txt"'", "format": "file", "bytes": 22})' ||
        fail "restore extract --json"

    [ "$(ctl restore umount "$m")" = "mount $m unmounted" ] || fail "restore umount"
    ctl restore list --json | jcheck 'r["mounts"] == []' || fail "restore umount left: $(ctl restore list)"
    ctl_fails 1 "restore.umount: " restore umount "$m"
    [ -z "$(losetup -a | grep -F "$SDD_DIR/restore/")" ] || fail "loop devices left: $(losetup -a)"
}

if [ "$(id -u)" = 0 ] && [ -c /dev/fuse ] && [ -c /dev/loop-control ] &&
        command -v nbdfuse >/dev/null && command -v mkfs.ext4 >/dev/null &&
        command -v losetup >/dev/null; then
    test_mounts
else
    echo "$0: note: restore mount not tested (needs root, FUSE, loop devices, nbdfuse, mkfs.ext4)" >&2
fi

sdd_stop
srv_stop
