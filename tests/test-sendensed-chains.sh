#!/bin/bash
# sendensed's chain methods against a real sendense-nbd: chains of a full
# and five incrementals written through NBD (nbdcopy, then random 64 KiB
# blocks with libnbd), the content of every point saved; backup.delete
# refused for a backup others depend on, refused while a job runs or an
# export reads the disk, then refuse/cascade/merge; backup.prune
# keep_last=3 in commit mode and in synthetic mode, every kept point still
# reading as saved (qemu-img compare through its chain) and clean
# (qemu-img check); sendensed killed (abort) after each step of a
# consolidation in both modes and of a delete by merge, restarted, every
# retained point still restorable and the folder holding exactly the
# catalog's files; the
# repository's retention applied after each backup, and a VM's own rules
# (vm.retention) over the repository's; repo.cleanup removing
# what an interrupted delete leaves; backup.verify finding a flipped byte
# in a data cluster by checksum; a consolidation paused mid-way while the
# daemon serves everything else (another VM's backups and verify) and
# refuses what would touch that VM; SIGTERM waiting for a running task.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires nbdcopy qemu-img
"$PYTHON" -c 'import nbd' 2>/dev/null ||
    { echo "$0: SKIP: $PYTHON has no nbd module (python3-libnbd)"; exit 77; }

. "$top_srcdir/tests/sendensed-lib.sh"
ulimit -c 0     # the crash steps abort() on purpose

# --- helpers ---------------------------------------------------------------

# REPO (sendensed-lib.sh) is "main": consolidation commit (the default).
REPO_S=$scratch/repo-syn    # consolidation: synthetic
REPO_R=$scratch/repo-ret    # retention keep_last: 2, applied after backups
SDD_REPOSITORIES="[{name: main, path: $REPO},
    {name: syn, path: $REPO_S, consolidation: synthetic},
    {name: ret, path: $REPO_R, retention: {keep_last: 2}}]"
SAVED=$scratch/saved        # SAVED/<vm>/<stamp>.raw: each point's content
mkdir -p "$SAVED"
MiB=$((1024 * 1024))

# repo_of REPONAME: its path.
repo_of() {
    case $1 in syn) echo "$REPO_S" ;; ret) echo "$REPO_R" ;; *) echo "$REPO" ;; esac
}

# backup REPONAME VM SIZE: one backup of disk0 of VM (a full when VM has
# none, else an incremental): the first one copies a random source whole,
# the next ones change 8 random 64 KiB blocks. The source as it was is
# saved as $SAVED/VM/<stamp>.raw. Prints the backup id.
backup() {
    local repo=$1 vm=$2 size=$3 src=$SAVED/$2/current start job id uri blocks b
    mkdir -p "$SAVED/$vm"
    start=$(sdd_rpc backup.start "{\"vm\": \"$vm\", \"repository\": \"$repo\",
        \"disks\": [{\"name\": \"disk0\", \"size\": $size}]}")
    job=$(echo "$start" | jget 'r["job"]')
    id=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')
    uri=$(echo "$start" | jget 'r["disks"][0]["uri"]')
    if [ ! -e "$src" ]; then
        head -c "$size" /dev/urandom > "$src"
        must nbdcopy "$src" "$uri"
    else
        blocks=$(shuf -i 0-$((size / 65536 - 1)) -n 8 | tr '\n' ' ')
        for b in $blocks; do
            head -c 65536 /dev/urandom |
                dd of="$src" bs=65536 seek="$b" conv=notrunc status=none
        done
        write_blocks "$uri" "$src" $blocks
    fi
    sdd_rpc backup.complete "{\"job\": \"$job\", \"change_ids\": {\"disk0\": \"cid-$id\"}}" |
        jcheck 'r["phase"] == "completed"' || fail "backup $id did not complete"
    cp "$src" "$SAVED/$vm/${id#*-}.raw"
    echo "$id"
}

# chain REPONAME VM SIZE N: a full and N incrementals; prints the ids.
chain() {
    local i
    for i in $(seq 0 "$4"); do backup "$1" "$2" "$3"; done
}

# listed REPONAME VM: the ids of disk0's backups, oldest first.
listed() {
    sdd_rpc backup.list "{\"vm\": \"$2\", \"repository\": \"$1\"}" |
        jget '" ".join(b["id"] for b in r["backups"] if b["disk"] == "disk0")'
}

# check_points REPONAME VM EXPECTED_STAMPS: the catalog lists exactly
# these points (by stamp), each usable, completed, with a checksum, its
# image reading as saved through its chain and clean; the folder holds
# exactly the listed files (no leftover, no journal).
check_points() {
    local repo=$1 vm=$2 want=$3 dir list id got=
    dir=$(repo_of "$repo")/$vm/disk0
    list=$(sdd_rpc backup.list "{\"vm\": \"$vm\", \"repository\": \"$repo\"}")
    echo "$list" | jcheck 'all(b["status"] == "completed" and b["usable"] and
        b["checksum"] is not None for b in r["backups"])' ||
        fail "$vm: not all points usable and checksummed: $list"
    for id in $(listed "$repo" "$vm"); do
        got="$got ${id#*-}"
        same_content "$SAVED/$vm/${id#*-}.raw" "$dir/$id.qcow2"
        qemu_check_clean "$dir/$id.qcow2"
    done
    [ "${got# }" = "$want" ] || fail "$vm: points are '${got# }', expected '$want'"
    want=$(for id in $(listed "$repo" "$vm"); do echo "$id.json"; echo "$id.qcow2"; done | sort)
    [ "$(ls -A "$dir" | sort)" = "$want" ] ||
        fail "$vm: the folder holds $(ls -A "$dir" | tr '\n' ' '), the catalog $want"
}

stamps() { local id; for id in "$@"; do printf '%s ' "${id#*-}"; done | sed 's/ $//'; }

# settle VM REPONAME: wait for the retention run after a backup to end
# (a dry-run prune is refused as busy while it holds the VM).
settle() {
    local i err
    for i in $(seq 1 1200); do
        err=$($NBD_RPC "$SDD_SOCK" backup.prune "{\"vm\": \"$1\", \"repository\": \"$2\",
            \"dry_run\": true}" 2>&1 >/dev/null) && return 0
        case $err in *busy*) sleep 0.05 ;; *) fail "settle $1: $err" ;; esac
    done
    fail "VM $1 stayed busy"
}

# --- start both daemons ---------------------------------------------------

srv_start
sdd_config
sdd_start
SIZE=$((32 * MiB))

# --- delete ---------------------------------------------------------------

read -r -a D <<< "$(chain main ctx-del $SIZE 5 | tr '\n' ' ')"
[ "${#D[@]}" = 6 ] || fail "chain: ${D[*]}"
check_points main ctx-del "$(stamps "${D[@]}")"

# A backup others depend on: refused, naming the dependant; nothing changes.
before=$(ls -l "$REPO/ctx-del/disk0")
err=$(sdd_error backup.delete "{\"vm\": \"ctx-del\", \"id\": \"${D[2]}\"}")
echo "$err" | jcheck 'r["code"] == 1003 and "'"${D[3]}"'" in r["message"]' ||
    fail "delete of a depended-on backup: $err"
[ "$(ls -l "$REPO/ctx-del/disk0")" = "$before" ] || fail "a refused delete changed files"

# Busy: an export reading the disk's chain, then a running job.
srv_rpc export.add "{\"name\": \"peek\", \"path\": \"$REPO/ctx-del/disk0/${D[5]}.qcow2\",
    \"format\": \"qcow2\", \"readonly\": true}" >/dev/null
err=$(sdd_error backup.delete "{\"vm\": \"ctx-del\", \"id\": \"${D[5]}\"}")
echo "$err" | jcheck 'r["code"] == 1003 and "busy" in r["message"] and "peek" in r["message"]' ||
    fail "delete with an export open: $err"
srv_rpc export.remove '{"name": "peek"}' >/dev/null
start=$(sdd_rpc backup.start '{"vm": "ctx-del", "disks": [{"name": "disk0", "size": '$SIZE'}]}')
err=$(sdd_error backup.delete "{\"vm\": \"ctx-del\", \"id\": \"${D[5]}\"}")
echo "$err" | jcheck 'r["code"] == 1003 and "running job" in r["message"]' ||
    fail "delete during a job: $err"
sdd_rpc backup.fail "{\"job\": \"$(echo "$start" | jget 'r["job"]')\", \"reason\": \"test\"}" >/dev/null
failed=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')
sdd_rpc backup.delete "{\"vm\": \"ctx-del\", \"id\": \"$failed\"}" >/dev/null

# The newest: no dependant, deleted (sidecar and image).
sdd_rpc backup.delete "{\"vm\": \"ctx-del\", \"disk\": \"disk0\", \"id\": \"${D[5]}\"}" |
    jcheck 'r["disks"] == [{"disk": "disk0", "removed": ["'"${D[5]}"'"]}]' ||
    fail "delete of the newest"
check_points main ctx-del "$(stamps "${D[@]:0:5}")"

# Cascade: D3 and D4 that depends on it.
sdd_rpc backup.delete "{\"vm\": \"ctx-del\", \"id\": \"${D[3]}\", \"mode\": \"cascade\"}" |
    jcheck 'r["disks"][0]["removed"] == ["'"${D[4]}"'", "'"${D[3]}"'"]' ||
    fail "cascade delete"
check_points main ctx-del "$(stamps "${D[@]:0:3}")"

# Merge an incremental: D2 is rebased onto D0 and keeps its content.
sdd_rpc backup.delete "{\"vm\": \"ctx-del\", \"id\": \"${D[1]}\", \"mode\": \"merge\"}" >/dev/null
check_points main ctx-del "$(stamps "${D[0]}" "${D[2]}")"
sdd_rpc backup.show "{\"vm\": \"ctx-del\", \"disk\": \"disk0\", \"id\": \"${D[2]}\"}" |
    jcheck 'r["parent"] == "'"${D[0]}"'" and r["backing_file"] == "'"${D[0]}"'.qcow2"' ||
    fail "merged incremental's sidecar"
# Merge the full: consolidated with D2, which becomes the full.
sdd_rpc backup.delete "{\"vm\": \"ctx-del\", \"id\": \"${D[0]}\", \"mode\": \"merge\"}" |
    jcheck 'r["disks"][0]["merged_into"] == "full-'"${D[2]#*-}"'"' || fail "merge of the full"
check_points main ctx-del "$(stamps "${D[2]}")"

# --- prune, commit mode ---------------------------------------------------

read -r -a C <<< "$(chain main ctx-commit $SIZE 5 | tr '\n' ' ')"
out=$(sdd_rpc backup.prune '{"vm": "ctx-commit", "keep_last": 3, "dry_run": true}')
echo "$out" | jcheck 'r["dry_run"] and [a["action"] for a in r["actions"]] == ["consolidate"]' ||
    fail "dry run: $out"
check_points main ctx-commit "$(stamps "${C[@]}")"
ino_full=$(stat -c %i "$REPO/ctx-commit/disk0/${C[0]}.qcow2")
out=$(sdd_rpc backup.prune '{"vm": "ctx-commit", "keep_last": 3}')
echo "$out" | jcheck '[a["action"] for a in r["actions"]] == ["consolidate"] * 3' ||
    fail "prune keep_last=3: $out"
check_points main ctx-commit "$(stamps "${C[@]:3}")"
# In place: the full is the same file, now named after the kept point.
[ "$(stat -c %i "$REPO/ctx-commit/disk0/full-${C[3]#*-}.qcow2")" = "$ino_full" ] ||
    fail "commit mode wrote a new file"
for id in $(listed main ctx-commit); do
    sdd_rpc backup.verify "{\"vm\": \"ctx-commit\", \"disk\": \"disk0\", \"id\": \"$id\",
        \"checksum\": true}" | jcheck 'r["ok"] and r["checksum"]["match"]' ||
        fail "verify $id after commit consolidation"
done

# --- prune, synthetic mode ------------------------------------------------

read -r -a S <<< "$(chain syn ctx-syn $SIZE 5 | tr '\n' ' ')"
top_before=$(stat -c '%i %Y %s' "$REPO_S/ctx-syn/disk0/${S[5]}.qcow2"; md5sum < "$REPO_S/ctx-syn/disk0/${S[5]}.qcow2")
out=$(sdd_rpc backup.prune '{"repository": "syn", "keep_last": 3}')
echo "$out" | jcheck '[a["action"] for a in r["actions"]] == ["consolidate"] * 3' ||
    fail "synthetic prune: $out"
check_points syn ctx-syn "$(stamps "${S[@]:3}")"
sdd_rpc backup.show "{\"vm\": \"ctx-syn\", \"disk\": \"disk0\", \"id\": \"full-${S[3]#*-}\", \"repository\": \"syn\"}" |
    jcheck 'r["type"] == "synthetic-full"' || fail "the new full is not synthetic"
[ "$(stat -c '%i %Y %s' "$REPO_S/ctx-syn/disk0/${S[5]}.qcow2"; md5sum < "$REPO_S/ctx-syn/disk0/${S[5]}.qcow2")" = "$top_before" ] ||
    fail "synthetic mode changed a file it did not need to"

# --- the repository's retention, applied after each backup ---------------

# Each backup's retention runs once it is answered: wait for it before
# the next one (it holds the VM).
R=()
for i in 0 1 2 3; do
    R+=("$(backup ret ctx-ret $SIZE)")
    settle ctx-ret ret
done
check_points ret ctx-ret "$(stamps "${R[@]:2}")"
# A call's keep_last overrides the repository's.
sdd_rpc backup.prune '{"repository": "ret", "keep_last": 1}' |
    jcheck '[a["action"] for a in r["actions"]] == ["consolidate"]' || fail "prune keep_last=1"
check_points ret ctx-ret "$(stamps "${R[3]}")"

# --- crash at each step of a consolidation, then restart ------------------

SMALL=$((4 * MiB))
for mode in commit synthetic; do
    if [ $mode = commit ]; then
        repo=main steps="journal commit switch link new-sidecar children remove-sidecars remove-images"
    else
        repo=syn steps="journal convert new-sidecar switch children remove-sidecars remove-images"
    fi
    for step in $steps; do
        vm=ctx-crash-$mode-$step
        read -r -a K <<< "$(chain $repo "$vm" $SMALL 2 | tr '\n' ' ')"
        sdd_stop
        SENDENSED_TEST_CRASH_AT=$step sdd_start
        if $NBD_RPC "$SDD_SOCK" backup.prune "{\"vm\": \"$vm\", \"repository\": \"$repo\",
                \"keep_last\": 2}" >/dev/null 2>&1; then
            fail "$mode: the daemon did not stop at step $step"
        fi
        wait "$SDD_PID" 2>/dev/null
        SDD_PID=
        sdd_start
        # Rolled back (all three points) or finished (the two kept ones).
        got=$(stamps $(listed $repo "$vm"))
        if [ "$got" = "$(stamps "${K[@]}")" ]; then
            [ $mode = synthetic ] || fail "commit mode rolled back after $step"
            check_points $repo "$vm" "$got"
        else
            check_points $repo "$vm" "$(stamps "${K[@]:1}")"
        fi
        [ ! -e "$(repo_of $repo)/$vm/disk0/consolidation.journal" ] ||
            fail "$mode/$step: journal left"
        sdd_rpc backup.chain "{\"vm\": \"$vm\", \"disk\": \"disk0\", \"repository\": \"$repo\"}" |
            jcheck 'r["usable"] and r["chain"][0]["type"] != "incr"' || fail "$mode/$step: chain"
    done
done
grep -q "finished an interrupted consolidation" "$SDD_LOG" || fail "no recovery logged"

# The same for deleting an incremental by merging it into its child: a
# crash at any step is finished at the next start, the child keeping its
# content, re-pointed at the grandparent, its checksum right.
for step in merge-journal merge-child merge-sidecar; do
    vm=ctx-crash-$step
    read -r -a K <<< "$(chain main "$vm" $SMALL 3 | tr '\n' ' ')"
    sdd_stop
    SENDENSED_TEST_CRASH_AT=$step sdd_start
    if $NBD_RPC "$SDD_SOCK" backup.delete "{\"vm\": \"$vm\", \"id\": \"${K[1]}\",
            \"mode\": \"merge\"}" >/dev/null 2>&1; then
        fail "merge: the daemon did not stop at step $step"
    fi
    wait "$SDD_PID" 2>/dev/null
    SDD_PID=
    sdd_start
    check_points main "$vm" "$(stamps "${K[0]}" "${K[2]}" "${K[3]}")"
    [ ! -e "$REPO/$vm/disk0/consolidation.journal" ] || fail "merge/$step: journal left"
    sdd_rpc backup.show "{\"vm\": \"$vm\", \"disk\": \"disk0\", \"id\": \"${K[2]}\"}" |
        jcheck 'r["parent"] == "'"${K[0]}"'"' || fail "merge/$step: the child's parent"
    sdd_rpc backup.verify "{\"vm\": \"$vm\", \"disk\": \"disk0\", \"id\": \"${K[2]}\", \"checksum\": true}" |
        jcheck 'r["ok"]' || fail "merge/$step: the child's checksum"
done

# What an interrupted delete leaves (an image whose sidecar is gone) and an
# interrupted atomic write (a temporary file): repo.cleanup removes them.
dir=$REPO/ctx-commit/disk0
cp "$dir/$(listed main ctx-commit | awk '{print $NF}').qcow2" "$dir/incr-20991231T000000Z.qcow2"
echo '{}' > "$dir/.incr-20991231T000000Z.json.a1b2c3.tmp"
sdd_rpc repo.cleanup '{"repository": "main"}' | jcheck '(r["temp_files_removed"] == 1 and
    r["images_removed"] == ["ctx-commit/disk0/incr-20991231T000000Z.qcow2"])' ||
    fail "repo.cleanup: $(sdd_rpc repo.cleanup)"
check_points main ctx-commit "$(stamps "${C[@]:3}")"

# --- verify detects a flipped byte ---------------------------------------

id=$(listed main ctx-commit | awk '{print $NF}')
img=$REPO/ctx-commit/disk0/$id.qcow2
sdd_rpc backup.verify "{\"vm\": \"ctx-commit\", \"disk\": \"disk0\", \"id\": \"$id\", \"checksum\": true}" |
    jcheck 'r["ok"] and r["checksum"]["match"] and r["read"]["bytes"] > 0' || fail "verify before damage"
host=$(qemu-img map --output=json "$img" | jget '[e for e in r if e["depth"] == 0 and e["data"]][0]["offset"]')
"$PYTHON" - "$img" "$host" <<'EOF' || fail "flipping a byte"
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]) + 100)
    b = f.read(1)
    f.seek(int(sys.argv[2]) + 100)
    f.write(bytes([b[0] ^ 0xff]))
EOF
out=$(sdd_rpc backup.verify "{\"vm\": \"ctx-commit\", \"disk\": \"disk0\", \"id\": \"$id\", \"checksum\": true}")
echo "$out" | jcheck '(not r["ok"] and r["checksum"]["match"] is False and
    r["read"]["errors"] == 0)' || fail "verify after damage: $out"

# --- long operations run beside the loop ----------------------------------
# A consolidation paused right after its journal (SENDENSED_TEST_PAUSE_AT)
# holds its VM. Meanwhile the daemon answers, refuses everything that
# would touch that VM's chains, and runs another VM's backups and a
# second long operation. SIGTERM with a task running waits for it.

PAUSE=$scratch/paused

# prune_paused JSON: backup.prune in the background until it pauses.
prune_paused() {
    sdd_call_paused "$PAUSE" "$scratch/prune.out" backup.prune "$1"
    PRUNE_PID=$BG_PID
}

sdd_stop
SENDENSED_TEST_PAUSE_AT=journal SENDENSED_TEST_PAUSE_FILE=$PAUSE sdd_start
T=($(chain main ctx-task $SIZE 2))
prune_paused '{"vm": "ctx-task", "keep_last": 2}'
sdd_rpc daemon.info >/dev/null
sdd_rpc backup.list '{"vm": "ctx-task"}' | jcheck 'len(r["backups"]) >= 2' ||
    fail "backup.list during a consolidation"
busy_ok='r["code"] == 1003 and "backup.prune is running" in r["message"]'
for call in \
    "backup.start|{\"vm\": \"ctx-task\", \"disks\": [{\"name\": \"disk0\", \"size\": $SIZE}]}" \
    "backup.delete|{\"vm\": \"ctx-task\", \"id\": \"${T[2]}\"}" \
    "backup.verify|{\"vm\": \"ctx-task\", \"disk\": \"disk0\", \"id\": \"${T[2]}\"}" \
    "backup.prune|{\"vm\": \"ctx-task\", \"keep_last\": 1}" \
    "vm.retention|{\"vm\": \"ctx-task\", \"keep_last\": 1}" \
    "restore.export|{\"vm\": \"ctx-task\", \"disk\": \"disk0\", \"id\": \"${T[2]}\"}" \
    "restore.mount|{\"vm\": \"ctx-task\", \"disk\": \"disk0\", \"id\": \"${T[2]}\"}"; do
    err=$(sdd_error "${call%%|*}" "${call#*|}")
    echo "$err" | jcheck "$busy_ok" || fail "${call%%|*} during a consolidation: $err"
done
err=$(sdd_error repo.cleanup '{}')
echo "$err" | jcheck 'r["code"] == 1003' || fail "repo.cleanup during a consolidation: $err"
# Another VM: two backups, and its own long operation beside the first.
O=($(chain main ctx-other $SIZE 1))
sdd_rpc backup.verify "{\"vm\": \"ctx-other\", \"disk\": \"disk0\", \"id\": \"${O[1]}\", \"checksum\": true}" |
    jcheck 'r["ok"]' || fail "backup.verify of another VM during a consolidation"
kill -0 "$PRUNE_PID" 2>/dev/null || fail "the paused backup.prune answered"
[ -e "$REPO/ctx-task/disk0/consolidation.journal" ] || fail "no journal while paused"
rm -f "$PAUSE"
wait "$PRUNE_PID" || fail "backup.prune failed: $(cat "$scratch/prune.out")"
jcheck '[a["action"] for a in r["actions"]] == ["consolidate"]' < "$scratch/prune.out" ||
    fail "backup.prune after its pause: $(cat "$scratch/prune.out")"
check_points main ctx-task "$(stamps "${T[1]}" "${T[2]}")"
check_points main ctx-other "$(stamps "${O[@]}")"
sdd_rpc backup.verify "{\"vm\": \"ctx-task\", \"disk\": \"disk0\", \"id\": \"$(listed main ctx-task | cut -d' ' -f2)\", \"checksum\": true}" |
    jcheck 'r["ok"]' || fail "backup.verify once the consolidation ended"

# SIGTERM while a consolidation runs: finished first, then a clean exit.
prune_paused '{"vm": "ctx-task", "keep_last": 1}'
kill -TERM "$SDD_PID"
for i in $(seq 1 1200); do
    grep -q "waiting for 1 long operation" "$SDD_LOG" && break
    sleep 0.05
done
grep -q "waiting for 1 long operation" "$SDD_LOG" || fail "no word of the task at SIGTERM"
kill -0 "$SDD_PID" 2>/dev/null || fail "sendensed exited with a consolidation running"
rm -f "$PAUSE"
rc=0
wait "$SDD_PID" || rc=$?
SDD_PID=
[ "$rc" = 0 ] || fail "sendensed exited with status $rc after SIGTERM with a task"
sdd_check_log
wait "$PRUNE_PID" 2>/dev/null || :
[ ! -e "$REPO/ctx-task/disk0/consolidation.journal" ] || fail "journal left after SIGTERM"
sdd_start
check_points main ctx-task "$(stamps "${T[2]}")"
sdd_stop

# backup.complete checks and checksums its images off the loop too: while
# that is paused the job is "completing", cannot be failed, its VM takes
# no second job, and another VM's backup runs start to end.
SENDENSED_TEST_PAUSE_AT=check-images SENDENSED_TEST_PAUSE_FILE=$PAUSE sdd_start
start=$(sdd_rpc backup.start "{\"vm\": \"ctx-task\", \"disks\": [{\"name\": \"disk0\", \"size\": $SIZE}]}")
job=$(echo "$start" | jget 'r["job"]')
must nbdcopy "$SAVED/ctx-task/current" "$(echo "$start" | jget 'r["disks"][0]["uri"]')"
sdd_call_paused "$PAUSE" "$scratch/complete.out" backup.complete "{\"job\": \"$job\"}"
complete_pid=$BG_PID
sdd_rpc job.status "{\"job\": \"$job\"}" | jcheck 'r["phase"] == "completing"' ||
    fail "job.status while completing: $(sdd_rpc job.status "{\"job\": \"$job\"}")"
err=$(sdd_error backup.fail "{\"job\": \"$job\", \"reason\": \"test\"}")
echo "$err" | jcheck '"completing" in r["message"]' || fail "backup.fail while completing: $err"
err=$(sdd_error backup.start "{\"vm\": \"ctx-task\", \"disks\": [{\"name\": \"disk0\", \"size\": $SIZE}]}")
echo "$err" | jcheck 'r["code"] == 1003' || fail "a second job while completing: $err"
O=("${O[@]}" $(backup main ctx-other $SIZE))
kill -0 "$complete_pid" 2>/dev/null || fail "the paused backup.complete answered"
rm -f "$PAUSE"
wait "$complete_pid" || fail "backup.complete failed: $(cat "$scratch/complete.out")"
jcheck 'r["phase"] == "completed"' < "$scratch/complete.out" ||
    fail "backup.complete after its pause: $(cat "$scratch/complete.out")"
cp "$SAVED/ctx-task/current" "$SAVED/ctx-task/$(echo "$start" | jget 'r["disks"][0]["backup_id"]' | sed 's/^[a-z]*-//').raw"
check_points main ctx-task "$(stamps "${T[2]}" "$(echo "$start" | jget 'r["disks"][0]["backup_id"]')")"
check_points main ctx-other "$(stamps "${O[@]}")"
sdd_stop

# --- a VM's own retention rules (vm.retention) ----------------------------
# Kept in its vm.json; rule by rule they replace the repository's, for
# backup.prune (one VM, or a whole repository where each VM has its own)
# and for the retention run after each completed backup; a call's
# keep_last still overrides both.

sdd_start

# rules VM REPONAME: "last/days" of the VM's, the repository's and the
# effective rules ("-": not set).
rules() {
    sdd_rpc vm.retention "{\"vm\": \"$1\", \"repository\": \"$2\"}" |
        jget '" ".join("%s/%s" % tuple("-" if r[k][x] is None else r[k][x]
            for x in ("keep_last", "keep_days"))
            for k in ("vm_retention", "repository_retention", "effective"))'
}

# "main" has no rule: a VM's own keep_last alone decides.
read -r -a V <<< "$(chain main ctx-vm $SIZE 3 | tr '\n' ' ')"
[ "$(rules ctx-vm main)" = "-/- -/- -/-" ] || fail "ctx-vm's rules at first: $(rules ctx-vm main)"
out=$(sdd_rpc vm.retention '{"vm": "ctx-vm", "keep_last": 3}')
echo "$out" | jcheck 'r == {"vm": "ctx-vm", "repository": "main",
    "vm_retention": {"keep_last": 3, "keep_days": None},
    "repository_retention": {"keep_last": None, "keep_days": None},
    "effective": {"keep_last": 3, "keep_days": None}}' || fail "vm.retention keep_last 3: $out"
jcheck 'r["retention"] == {"keep_last": 3, "keep_days": None}' < "$REPO/ctx-vm/vm.json" ||
    fail "vm.json after vm.retention: $(cat "$REPO/ctx-vm/vm.json")"
check_points main ctx-vm "$(stamps "${V[@]}")"
# A whole-repository prune: only ctx-vm has a rule.
out=$(sdd_rpc backup.prune '{"repository": "main", "dry_run": true}')
echo "$out" | jcheck 'r["actions"] == [{"vm": "ctx-vm", "disk": "disk0",
    "action": "consolidate", "id": "'"${V[0]}"'", "detail": "1 step(s)"}]' ||
    fail "whole-repository prune with one VM's rule: $out"
# The call's keep_last over the VM's.
out=$(sdd_rpc backup.prune '{"vm": "ctx-vm", "keep_last": 1, "dry_run": true}')
echo "$out" | jcheck '[a["detail"] for a in r["actions"]] == ["3 step(s)"]' ||
    fail "prune keep_last=1 over the VM's 3: $out"
# keep_last 2, then the next backup (backup.start rewrites vm.json and
# keeps the rule): consolidated down to 2 points.
sdd_rpc vm.retention '{"vm": "ctx-vm", "keep_last": 2}' >/dev/null
V+=("$(backup main ctx-vm $SIZE)")
settle ctx-vm main
check_points main ctx-vm "$(stamps "${V[3]}" "${V[4]}")"
[ "$(rules ctx-vm main)" = "2/- -/- 2/-" ] || fail "ctx-vm's rules after a backup: $(rules ctx-vm main)"
grep -q "retention: ctx-vm/disk0: consolidate" "$SDD_LOG" || fail "ctx-vm's retention not logged"

# "ret" keeps 2; a VM there with its own keep_last 4 keeps 4.
W=("$(backup ret ctx-vret $SIZE)")
settle ctx-vret ret
sdd_rpc vm.retention '{"vm": "ctx-vret", "repository": "ret", "keep_last": 4}' >/dev/null
for i in 1 2 3 4; do
    W+=("$(backup ret ctx-vret $SIZE)")
    settle ctx-vret ret
done
check_points ret ctx-vret "$(stamps "${W[@]:1}")"
# Rule by rule: keep_days its own, keep_last back to the repository's
# (null), then nothing of its own (clear).
[ "$(rules ctx-vret ret)" = "4/- 2/- 4/-" ] || fail "ctx-vret's rules: $(rules ctx-vret ret)"
sdd_rpc vm.retention '{"vm": "ctx-vret", "repository": "ret", "keep_days": 3650}' >/dev/null
[ "$(rules ctx-vret ret)" = "4/3650 2/- 4/3650" ] || fail "keep_days set: $(rules ctx-vret ret)"
sdd_rpc vm.retention '{"vm": "ctx-vret", "repository": "ret", "keep_last": null}' >/dev/null
[ "$(rules ctx-vret ret)" = "-/3650 2/- 2/3650" ] || fail "keep_last null: $(rules ctx-vret ret)"

# Refused, with nothing changed: bad values, unknown VM or repository.
before=$(md5sum < "$REPO_R/ctx-vret/vm.json")
for params in '"keep_last": 0' '"keep_last": 1000001' '"keep_days": -1' \
        '"keep_days": 1000001' '"keep_last": "3"' '"keep_days": 1.5' \
        '"clear": "yes"' '"keep_weeks": 2'; do
    err=$(sdd_error vm.retention "{\"vm\": \"ctx-vret\", \"repository\": \"ret\", $params}")
    echo "$err" | jcheck 'r["code"] == -32602' || fail "vm.retention $params: $err"
done
err=$(sdd_error vm.retention '{"vm": "ctx-vret", "keep_last": 3}')
echo "$err" | jcheck 'r["code"] == 1001 and "ctx-vret" in r["message"]' ||
    fail "vm.retention of a VM of another repository: $err"
err=$(sdd_error vm.retention '{"vm": "ctx-nope", "repository": "ret"}')
echo "$err" | jcheck 'r["code"] == 1001' || fail "vm.retention of an unknown VM: $err"
err=$(sdd_error vm.retention '{"vm": "ctx-vret", "repository": "nope", "clear": true}')
echo "$err" | jcheck 'r["code"] == 1001' || fail "vm.retention in an unknown repository: $err"
[ "$(md5sum < "$REPO_R/ctx-vret/vm.json")" = "$before" ] || fail "a refused vm.retention changed vm.json"
[ "$(rules ctx-vret ret)" = "-/3650 2/- 2/3650" ] || fail "rules after refusals: $(rules ctx-vret ret)"

# clear: the repository's rules again; vm.json as without any; a prune
# of the repository now keeps ctx-vret's newest 2.
sdd_rpc vm.retention '{"vm": "ctx-vret", "repository": "ret", "clear": true}' |
    jcheck '(r["vm_retention"] == {"keep_last": None, "keep_days": None} and
        r["effective"] == {"keep_last": 2, "keep_days": None})' || fail "vm.retention clear"
jcheck '"retention" not in r' < "$REPO_R/ctx-vret/vm.json" ||
    fail "vm.json after clear: $(cat "$REPO_R/ctx-vret/vm.json")"
out=$(sdd_rpc backup.prune '{"repository": "ret"}')
echo "$out" | jcheck '[(a["vm"], a["action"]) for a in r["actions"]] == [("ctx-vret", "consolidate")] * 2' ||
    fail "prune of ret after clear: $out"
check_points ret ctx-vret "$(stamps "${W[@]:3}")"
sdd_stop
srv_stop
exit 0
