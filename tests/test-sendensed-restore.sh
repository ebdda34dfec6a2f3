#!/bin/bash
# Restore through sendensed (docs/SENDENSED.md, "Restore") against a real
# sendense-nbd.
#
# A VM disk is made at test time (tests/fixtures/make-vm-disk.sh: GPT,
# ext4 + XFS + an LVM volume, captured mid-write so every journal needs
# replay) and backed up through sendensed (backup.start full, nbdcopy
# into the export, backup.complete). Files are changed on the disk and
# an incremental is taken the same way. Then, for both points:
# restore.mount (both at once), restore.ls and restore.stat against what
# was written, restore.extract of changed files (cmp) and of directories
# as tar (diff -r), whole-disk restore.export read back with nbdcopy
# (cmp with the disk at that moment). restore.umount, SIGKILL of
# sendensed with a mount up and a restart, SIGTERM with a mount up, and
# expiry by mount_idle_timeout must each leave nothing: no guest mount
# in the daemon's namespace, no loop device backed by our files, no
# nbdfuse, no restore export in sendense-nbd, no folder in the runtime
# dir. An extraction paused mid-way keeps its mount from umount and
# expiry while the daemon serves other calls. The backup images are
# byte for byte unchanged at the end.
#
# The test runs in a private mount namespace of its own, so the mounts
# it makes to change the disk never reach the host.
. "${top_srcdir:-..}/tests/private-ns.sh"
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires nbdfuse nbdcopy partx blkid sfdisk mkfs.ext4 mkfs.xfs xfs_io lvs \
    vgcfgrestore tar losetup sha256sum pgrep
[ -c /dev/fuse ] && [ -c /dev/loop-control ] ||
    { echo "$0: SKIP: no /dev/fuse or /dev/loop-control"; exit 77; }
. "$top_srcdir/tests/sendensed-lib.sh"

FIXTURE=$top_srcdir/tests/fixtures/make-vm-disk.sh
rt=$SDD_RT                      # restore_runtime_dir (sendensed-lib.sh)
MiB=$((1024 * 1024))
SIZE=$((640 * MiB))             # make-vm-disk.sh's size

# --- the disk, and its first backup -----------------------------------

must "$FIXTURE" --label gpt --dirty "$scratch/disk.raw" "$scratch/exp1"

# sendense-nbd's temporary overlays go to $TMPDIR: keep them in scratch.
mkdir -p "$scratch/tmp"
TMPDIR=$scratch/tmp srv_start
sdd_config
sdd_start
VM=ctx-restore
DISKS="[{\"name\": \"disk0\", \"size\": $SIZE}]"

# backup TYPE: back disk.raw up whole; prints the backup id.
backup() {
    local start job id
    start=$(sdd_rpc backup.start "{\"vm\": \"$VM\", \"type\": \"$1\", \"disks\": $DISKS}")
    job=$(echo "$start" | jget 'r["job"]')
    id=$(echo "$start" | jget 'r["disks"][0]["backup_id"]')
    must nbdcopy "$scratch/disk.raw" "$(echo "$start" | jget 'r["disks"][0]["uri"]')"
    sdd_rpc backup.complete "{\"job\": \"$job\"}" | jcheck 'r["phase"] == "completed"' ||
        fail "backup.complete of $id"
    echo "$id"
}

ID1=$(backup full)
cp --sparse=always "$scratch/disk.raw" "$scratch/src1.raw"

# --- change files, and the incremental --------------------------------

# part_dev N: a loop device on partition N of disk.raw.
part_dev() {
    local start sectors dev
    read -r start sectors < <(partx --show --noheadings -o START,SECTORS --nr "$1" "$scratch/disk.raw")
    dev=$(losetup -f --show --offset $((start * 512)) --sizelimit $((sectors * 512)) "$scratch/disk.raw") ||
        fail "loop device for partition $1"
    echo "$dev"
}

# change_tree DIR: the changes of the second point, made to a file
# system or to the expected copy alike.
change_tree() {
    printf 'changed after the full backup\n' > "$1/p1/hello.txt"
    rm "$1/p1/dir/name with space.txt"
    cp "$scratch/new.bin" "$1/p1/dir/sub/new.bin"
    printf 'a second note, for the incremental\n' > "$1/p2/late/note.txt"
}

head -c $((300 * 1024)) /dev/urandom > "$scratch/new.bin"
cp -a "$scratch/exp1" "$scratch/exp2"
change_tree "$scratch/exp2"
mkdir -p "$scratch/live/p1" "$scratch/live/p2"
dev1=$(part_dev 1)
dev2=$(part_dev 2)
cleanup_fn "umount -q '$scratch/live/p1' '$scratch/live/p2' 2>/dev/null; losetup -d $dev1 $dev2 2>/dev/null"
must mount "$dev1" "$scratch/live/p1"      # replays the journals
must mount "$dev2" "$scratch/live/p2"
change_tree "$scratch/live"
umount "$scratch/live/p1" "$scratch/live/p2" || fail "umount of the changed disk"
losetup -d "$dev1" "$dev2"
cmp -s "$scratch/disk.raw" "$scratch/src1.raw" && fail "the changed disk is the same"

ID2=$(backup incremental)
IMG1=$REPO/$VM/disk0/$ID1.qcow2
IMG2=$REPO/$VM/disk0/$ID2.qcow2
sums_before=$(sha256sum "$IMG1" "$IMG2")

# --- two mounts at once -----------------------------------------------

# mount_point ID: restore.mount, checked; prints the result.
mount_point() {
    local out
    out=$(sdd_rpc restore.mount "{\"vm\": \"$VM\", \"disk\": \"disk0\", \"id\": \"$1\"}")
    echo "$out" | jcheck '(r["id"] == "'"$1"'" and r["mount"].startswith("mnt-") and
        sorted((v["name"], v["fstype"], v["mounted"]) for v in r["volumes"]
               if v["mounted"]) ==
        [("p1", "ext4", True), ("p2", "xfs", True), ("sdvg-root", "ext4", True)])' ||
        fail "restore.mount $1: $out"
    echo "$out"
}

M1=$(mount_point "$ID1" | jget 'r["mount"]')
M2=$(mount_point "$ID2" | jget 'r["mount"]')
[ "$M1" != "$M2" ] || fail "two mounts with one id"
remember_loops
[ -n "$SEEN_LOOPS" ] || fail "no loop devices while two points are mounted"
[ "$(daemon_mounts | wc -l)" = 6 ] || fail "want 6 guest mounts in sendensed's namespace: $(daemon_mounts)"
[ -z "$(grep -F " $rt/" /proc/self/mountinfo)" ] || fail "guest mounts are visible outside sendensed"
[ -n "$(our_nbdfuse)" ] || fail "no nbdfuse while mounted"
sdd_rpc restore.list | jcheck 'sorted(m["mount"] for m in r["mounts"]) == sorted(["'"$M1"'", "'"$M2"'"])' ||
    fail "restore.list: $(sdd_rpc restore.list)"
# The private exports take no network client: allow is empty.
srv_rpc export.list | jcheck '(sorted(e["name"] for e in r["exports"]
    if e["name"].startswith("restore-mnt-")) != [] and
    all(e["overlay"] == "temporary" and e["allow"] == [] for e in r["exports"]
        if e["name"].startswith("restore-mnt-")))' ||
    fail "the mount exports: $(srv_rpc export.list)"

# --- listings, stats, extraction --------------------------------------

# ls_names MOUNT VOLUME PATH: the names restore.ls gives, one a line.
ls_names() {
    sdd_rpc restore.ls "{\"mount\": \"$1\", \"volume\": \"$2\", \"path\": \"$3\"}" |
        jget '"\n".join(e["name"] for e in r["entries"] if e["name"] != "lost+found")'
}
# want_names DIR: what was written there, sorted as restore.ls sorts.
want_names() { (cd "$1" && LC_ALL=C ls -A | LC_ALL=C sort); }

check_point() {
    local m=$1 exp=$2 vol path
    for vol in p1 p2 sdvg-root; do
        for path in / dir dir/sub late; do
            [ "$(ls_names "$m" "$vol" "$path")" = "$(want_names "$exp/$vol/$path")" ] ||
                fail "restore.ls $m $vol $path: $(ls_names "$m" "$vol" "$path") / want $(want_names "$exp/$vol/$path")"
        done
    done
    sdd_rpc restore.stat "{\"mount\": \"$m\", \"volume\": \"p1\", \"path\": \"hello.txt\"}" |
        jcheck '(r["type"] == "file" and r["size"] == '"$(stat -c %s "$exp/p1/hello.txt")"' and
                 r["mode"] == 0o640)' || fail "restore.stat $m p1 hello.txt"
    sdd_rpc restore.stat "{\"mount\": \"$m\", \"volume\": \"p1\", \"path\": \"dir/rel-link\"}" |
        jcheck 'r["type"] == "symlink"' || fail "restore.stat of a symlink"
}
check_point "$M1" "$scratch/exp1"
check_point "$M2" "$scratch/exp2"

out=$scratch/out
mkdir -p "$out"
# extract MOUNT VOLUME PATH DEST FORMAT
extract() {
    sdd_rpc restore.extract "{\"mount\": \"$1\", \"volume\": \"$2\", \"path\": \"$3\", \"dest\": \"$4\"}" |
        jcheck 'r["format"] == "'"$5"'" and r["dest"] == "'"$4"'"' || fail "restore.extract $*"
}
for pt in 1 2; do
    m=$M1; [ $pt = 2 ] && m=$M2
    extract "$m" p1 hello.txt "$out/hello.$pt" file
    extract "$m" p2 late/note.txt "$out/note.$pt" file
    extract "$m" sdvg-root late/late.bin "$out/late.$pt" file
    cmp "$out/hello.$pt" "$scratch/exp$pt/p1/hello.txt" || fail "hello.txt of point $pt"
    cmp "$out/note.$pt" "$scratch/exp$pt/p2/late/note.txt" || fail "late/note.txt of point $pt"
    cmp "$out/late.$pt" "$scratch/exp$pt/sdvg-root/late/late.bin" || fail "late.bin of point $pt"
    extract "$m" p1 dir "$out/dir.$pt.tar" tar
    mkdir "$out/dir.$pt"
    tar -xf "$out/dir.$pt.tar" -C "$out/dir.$pt" || fail "unpacking dir.$pt.tar"
    diff -r --no-dereference "$scratch/exp$pt/p1/dir" "$out/dir.$pt" >&2 ||
        fail "the tar of p1/dir of point $pt differs from what was written"
done
cmp -s "$out/hello.1" "$out/hello.2" && fail "hello.txt did not change between the points"
cmp "$out/dir.2/sub/new.bin" "$scratch/new.bin" || fail "new.bin in the second point"

# Refused: an existing dest, a relative one, an unknown mount or
# volume, a path out of the volume. Nothing is written.
export out
err=$(sdd_error restore.extract "{\"mount\": \"$M1\", \"volume\": \"p1\", \"path\": \"hello.txt\", \"dest\": \"$out/hello.1\"}")
echo "$err" | jcheck 'r["code"] == 1002' || fail "extract over an existing file: $err"
cmp "$out/hello.1" "$scratch/exp1/p1/hello.txt" || fail "a refused extract changed its dest"
err=$(sdd_error restore.extract "{\"mount\": \"$M1\", \"volume\": \"p1\", \"path\": \"hello.txt\", \"dest\": \"rel.txt\"}")
echo "$err" | jcheck 'r["code"] == 1005' || fail "extract to a relative dest: $err"
err=$(sdd_error restore.ls '{"mount": "mnt-00000000", "volume": "p1", "path": "/"}')
echo "$err" | jcheck 'r["code"] == 1001' || fail "ls of an unknown mount: $err"
err=$(sdd_error restore.ls "{\"mount\": \"$M1\", \"volume\": \"p9\", \"path\": \"/\"}")
echo "$err" | jcheck 'r["code"] == 1001' || fail "ls of an unknown volume: $err"
err=$(sdd_error restore.extract "{\"mount\": \"$M1\", \"volume\": \"p1\", \"path\": \"dir/up-link/passwd\", \"dest\": \"$out/x\"}")
[ ! -e "$out/x" ] || fail "a refused extract left its dest"
err=$(sdd_error restore.mount "{\"vm\": \"$VM\", \"disk\": \"disk0\", \"id\": \"full-20000101T000000Z\"}")
echo "$err" | jcheck 'r["code"] == 1001' || fail "mount of an unknown backup: $err"

# --- whole-disk exports -----------------------------------------------

E1=$(sdd_rpc restore.export "{\"vm\": \"$VM\", \"disk\": \"disk0\", \"id\": \"$ID1\"}")
E2=$(sdd_rpc restore.export "{\"vm\": \"$VM\", \"disk\": \"disk0\", \"id\": \"$ID2\", \"name\": \"second\"}")
echo "$E2" | jcheck 'r["name"] == "restore-second"' || fail "restore.export with a name: $E2"
echo "$E1" | jcheck 'r["name"].startswith("restore-disk0-'"$ID1"'-")' || fail "restore.export: $E1"
err=$(sdd_error restore.export "{\"vm\": \"$VM\", \"disk\": \"disk0\", \"id\": \"$ID1\", \"name\": \"second\"}")
echo "$err" | jcheck 'r["code"] == 1002' || fail "a second export of the same name: $err"
sdd_rpc restore.list | jcheck 'sorted(e["name"] for e in r["exports"]) == sorted(["'"$(echo "$E1" | jget 'r["name"]')"'", "restore-second"])' ||
    fail "restore.list exports: $(sdd_rpc restore.list)"
srv_rpc export.get "{\"name\": \"restore-second\"}" | jcheck 'r["readonly"] is True' ||
    fail "the whole-disk export is not read-only"
must nbdcopy "$(echo "$E1" | jget 'r["uri"]')" "$out/whole1.raw"
must nbdcopy "$(echo "$E2" | jget 'r["uri"]')" "$out/whole2.raw"
cmp "$out/whole1.raw" "$scratch/src1.raw" || fail "restore.export of the full differs from the disk then"
cmp "$out/whole2.raw" "$scratch/disk.raw" || fail "restore.export of the incremental differs from the disk then"
rm -f "$out/whole1.raw" "$out/whole2.raw"
for e in "$(echo "$E1" | jget 'r["name"]')" restore-second; do
    sdd_rpc restore.unexport "{\"name\": \"$e\"}" >/dev/null
done
sdd_rpc restore.list | jcheck 'r["exports"] == []' || fail "exports listed after unexport"

# --- umount -----------------------------------------------------------

sdd_rpc restore.umount "{\"mount\": \"$M1\"}" >/dev/null
sdd_rpc restore.umount "{\"mount\": \"$M2\"}" >/dev/null
sdd_rpc restore.list | jcheck 'r["mounts"] == [] and r["exports"] == []' ||
    fail "restore.list after umount: $(sdd_rpc restore.list)"
assert_nothing_left "after restore.umount"

# --- SIGKILL with a mount up, then restart ----------------------------

M3=$(mount_point "$ID2" | jget 'r["mount"]')
remember_loops
E3=$(sdd_rpc restore.export "{\"vm\": \"$VM\", \"disk\": \"disk0\", \"id\": \"$ID1\"}" | jget 'r["name"]')
[ -n "$(restore_exports)" ] || fail "no restore exports before the kill"
sdd_kill
sdd_start
assert_nothing_left "SIGKILL of sendensed with a mount up, then a restart"
grep -q "restore: removed export $E3 left by an earlier sendensed" "$SDD_LOG" ||
    fail "the old whole-disk export was not reported removed"
sdd_rpc restore.list | jcheck 'r["mounts"] == [] and r["exports"] == []' ||
    fail "restore.list after restart"

# --- SIGTERM with a mount up ------------------------------------------

M4=$(mount_point "$ID1" | jget 'r["mount"]')
remember_loops
sdd_stop
assert_nothing_left "SIGTERM of sendensed with a mount up"

# --- expiry -----------------------------------------------------------

sdd_config "mount_idle_timeout: 2"
sdd_start
M5=$(mount_point "$ID1" | jget 'r["mount"]')
remember_loops
# Wait for the timer to release it (the bound only guards a hang).
for i in $(seq 1 600); do
    sdd_rpc restore.list | jcheck 'r["mounts"] == []' && break
    sleep 0.2
done
sdd_rpc restore.list | jcheck 'r["mounts"] == []' || fail "mount $M5 did not expire"
grep -q "restore: mount $M5 .* unused for 2 s: released" "$SDD_LOG" ||
    fail "the expiry was not logged"
assert_nothing_left "expiry by mount_idle_timeout"
err=$(sdd_error restore.ls "{\"mount\": \"$M5\", \"volume\": \"p1\", \"path\": \"/\"}")
echo "$err" | jcheck 'r["code"] == 1001' || fail "an expired mount still answers: $err"

# --- an extraction runs beside the loop -------------------------------
# Paused mid-way (SENDENSED_TEST_PAUSE_AT=extract): the daemon serves
# other calls, the mount can be neither unmounted nor expired under it
# (mount_idle_timeout is still 2 s); once let go, the tar is right.
sdd_stop
PAUSE=$scratch/paused
SENDENSED_TEST_PAUSE_AT=extract SENDENSED_TEST_PAUSE_FILE=$PAUSE sdd_start
M6=$(mount_point "$ID2" | jget 'r["mount"]')
remember_loops
sdd_call_paused "$PAUSE" "$scratch/extract.out" restore.extract "{\"mount\": \"$M6\",
    \"volume\": \"p1\", \"path\": \"dir\", \"dest\": \"$out/dir.paused.tar\"}"
extract_pid=$BG_PID
[ "$(ls_names "$M6" p2 late)" = "$(want_names "$scratch/exp2/p2/late")" ] ||
    fail "restore.ls during an extraction"
err=$(sdd_error restore.umount "{\"mount\": \"$M6\"}")
echo "$err" | jcheck 'r["code"] == 1003 and "extraction" in r["message"]' ||
    fail "restore.umount during an extraction: $err"
sleep 7     # past mount_idle_timeout and a timer tick: must not expire
sdd_rpc restore.list | jcheck '[m["mount"] for m in r["mounts"]] == ["'"$M6"'"]' ||
    fail "the mount of a running extraction expired"
kill -0 "$extract_pid" 2>/dev/null || fail "the paused restore.extract answered"
rm -f "$PAUSE"
wait "$extract_pid" || fail "restore.extract failed: $(cat "$scratch/extract.out")"
jcheck 'r["format"] == "tar"' < "$scratch/extract.out" || fail "restore.extract: $(cat "$scratch/extract.out")"
mkdir "$out/dir.paused"
tar -xf "$out/dir.paused.tar" -C "$out/dir.paused" || fail "unpacking dir.paused.tar"
diff -r --no-dereference "$scratch/exp2/p1/dir" "$out/dir.paused" >&2 ||
    fail "the tar of an extraction let go after a pause differs"
sdd_rpc restore.umount "{\"mount\": \"$M6\"}" >/dev/null
assert_nothing_left "an extraction paused, then umount"

sdd_stop
[ "$(sha256sum "$IMG1" "$IMG2")" = "$sums_before" ] ||
    fail "a backup image changed: $sums_before / $(sha256sum "$IMG1" "$IMG2")"
qemu-img check -q "$IMG2" || fail "qemu-img check of the incremental"
srv_stop
