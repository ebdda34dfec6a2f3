#!/bin/bash
# End to end (issue 5): real sendense-nbd and sendensed on temporary
# folders, a real NBD client, a real VM disk.
#
# The disk is made at test time (tests/fixtures/make-vm-disk.sh: GPT with
# ext4, XFS and an LVM volume holding ext4, captured mid-write). A full
# backup is written by nbdcopy through the job's NBD export. Then, five
# times: files are changed on the disk (loop-mounted: rewrites, a larger
# rewrite, deletes, new files, a rename, on all three file systems), the
# 64 KiB blocks that differ from the previous point are found by
# comparing the raw disk with its copy, and only those are written
# through NBD; the incremental must hold exactly those clusters (qemu-img
# map), record them as written, and allocate little more.
#
# Every point is then restored both ways: restore.mount with ls, extract
# of the changed files (cmp; a deleted one must be absent) and of each
# whole volume as tar (diff -r with what was written), and restore.export
# read back by nbdcopy (cmp with the disk at that moment). While a point
# is mounted its disk is busy: delete and prune change nothing. Deleting
# a backup others depend on is refused. backup.prune keep_last=3
# (commit mode) consolidates, and every kept point restores exactly
# again, its files clean for qemu-img check, verified by checksum, the
# folder holding just the catalog's files. Restores never change a
# backup image, and leave nothing behind: no mount, loop device, nbdfuse,
# restore export or runtime folder.
#
# The test runs in a private mount namespace of its own, so the mounts it
# makes to change the disk never reach the host.
. "${top_srcdir:-..}/tests/private-ns.sh"
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires nbdfuse nbdcopy qemu-img partx blkid sfdisk mkfs.ext4 mkfs.xfs \
    xfs_io lvs pvs vgcfgrestore tar losetup sha256sum pgrep
[ -c /dev/fuse ] && [ -c /dev/loop-control ] ||
    { echo "$0: SKIP: no /dev/fuse or /dev/loop-control"; exit 77; }
"$PYTHON" -c 'import nbd' 2>/dev/null ||
    { echo "$0: SKIP: $PYTHON has no nbd module (python3-libnbd)"; exit 77; }
. "$top_srcdir/tests/sendensed-lib.sh"

FIXTURE=$top_srcdir/tests/fixtures/make-vm-disk.sh
MiB=$((1024 * 1024))
SIZE=$((640 * MiB))             # make-vm-disk.sh's size
VM=ctx-e2e
DISK=$scratch/disk.raw          # the live disk
DATA=$scratch/data              # contents written by the rounds
EXP=$scratch/exp                # EXP/<k>/<volume>/: the files of point k
RAW=$scratch/raw                # RAW/<k>.raw: the disk at point k
OUT=$scratch/out                # what restores produce
DIR=$REPO/$VM/disk0
VOLS="p1 p2 sdvg-root"
mkdir -p "$DATA" "$EXP" "$RAW" "$OUT" "$scratch/live"

# --- the disk ---------------------------------------------------------

must "$FIXTURE" --label gpt --dirty "$DISK" "$EXP/0"

# part_range N: "offset size" in bytes of partition N of the disk.
part_range() {
    local start sectors
    read -r start sectors < <(partx --show --noheadings -o START,SECTORS --nr "$1" "$DISK")
    echo $((start * 512)) $((sectors * 512))
}
read -r P1_OFF P1_SIZE < <(part_range 1)
read -r P2_OFF P2_SIZE < <(part_range 2)
read -r P3_OFF P3_SIZE < <(part_range 3)

# The LVM volume "root" is extents 2..17 of 4 MiB (make-vm-disk.sh) after
# the physical volume's data start, which LVM reports.
LVMCFG='devices { scan_lvs = 0 } activation { udev_sync = 0 udev_rules = 0 monitoring = 0 } global { event_activation = 0 } backup { backup = 0 archive = 0 }'
export LVM_SUPPRESS_FD_WARNINGS=1
l3=$(losetup -r -f --show --offset "$P3_OFF" --sizelimit "$P3_SIZE" "$DISK") ||
    fail "loop device for the LVM partition"
pe_start=$(pvs --readonly --devices "$l3" --config "$LVMCFG" --noheadings --units b \
    --nosuffix -o pe_start "$l3" 2>/dev/null | tr -d ' ')
losetup -d "$l3"
[ -n "$pe_start" ] || fail "pvs found no physical volume on partition 3"
LV_OFF=$((P3_OFF + pe_start + 2 * 4 * MiB))
LV_SIZE=$((16 * 4 * MiB))

# --- changing the live disk -------------------------------------------

# live_up / live_down: the three file systems of the disk mounted
# read-write at $scratch/live/<volume> (the first mount replays the
# journals, as the guest's next boot would).
LIVE_LOOPS=
live_up() {
    local vol off size dev
    for vol in $VOLS; do
        case $vol in
        p1) off=$P1_OFF size=$P1_SIZE ;;
        p2) off=$P2_OFF size=$P2_SIZE ;;
        sdvg-root) off=$LV_OFF size=$LV_SIZE ;;
        esac
        dev=$(losetup -f --show --offset "$off" --sizelimit "$size" "$DISK") ||
            fail "loop device for $vol"
        LIVE_LOOPS="$LIVE_LOOPS $dev"
        mkdir -p "$scratch/live/$vol"
        # nouuid: the XFS of a restore mount may have the same UUID.
        if [ "$vol" = p2 ]; then
            must mount -o nouuid "$dev" "$scratch/live/$vol"
        else
            must mount "$dev" "$scratch/live/$vol"
        fi
    done
}
live_down() {
    local vol
    for vol in $VOLS; do
        umount "$scratch/live/$vol" || fail "umount of the live $vol"
    done
    losetup -d $LIVE_LOOPS || fail "detaching the live loop devices"
    LIVE_LOOPS=
}
live_release() {
    local vol
    for vol in $VOLS; do umount -q "$scratch/live/$vol" 2>/dev/null; done
    [ -z "$LIVE_LOOPS" ] || losetup -d $LIVE_LOOPS 2>/dev/null
}
cleanup_fn live_release

rand() { head -c "$2" /dev/urandom > "$DATA/$1"; }
rand new1.bin $((200 * 1024))
rand blob-large.bin $((3 * MiB))
rand big.bin $((2 * MiB))
rand patch.bin 4096
rand new4.bin $((700 * 1024))
rand blob-small.bin $((1536 * 1024))
rand new5.bin $((512 * 1024))

# change ROUND DIR: the changes of point ROUND, made to the live file
# systems or to a copy of the expected tree alike (DIR/<volume>/).
change() {
    local d=$2
    case $1 in
    1)  printf 'hello, rewritten after the full backup\n' > "$d/p1/hello.txt" &&
        rm "$d/p1/dir/name with space.txt" &&
        cp "$DATA/new1.bin" "$d/p1/dir/sub/new1.bin" &&
        printf 'the note, changed in round 1\n' > "$d/sdvg-root/late/note.txt" ;;
    2)  cp "$DATA/blob-large.bin" "$d/sdvg-root/dir/sub/blob.bin" &&  # 1 MiB -> 3 MiB
        printf 'appended in round 2\n' >> "$d/p2/hello.txt" &&
        mkdir "$d/p1/newdir" &&
        printf 'in a new folder\n' > "$d/p1/newdir/file.txt" ;;
    3)  rm -r "$d/p1/dir/sub" &&
        cp "$DATA/big.bin" "$d/sdvg-root/big.bin" &&
        dd if="$DATA/patch.bin" of="$d/p2/late/late.bin" bs=4096 seek=10 conv=notrunc status=none ;;
    4)  printf 'hello, fourth version\n' > "$d/p1/hello.txt" &&
        rm "$d/sdvg-root/hello.txt" &&
        mv "$d/p1/newdir" "$d/p1/moved" &&
        cp "$DATA/new4.bin" "$d/p2/dir/new4.bin" ;;
    5)  cp "$DATA/blob-small.bin" "$d/sdvg-root/dir/sub/blob.bin" &&  # 3 MiB -> 1.5 MiB
        cp "$DATA/new5.bin" "$d/p1/dir/new5.bin" &&
        : > "$d/p2/late/note.txt" &&
        ln -s moved/file.txt "$d/p1/link5" ;;
    esac
}
# The files the rounds touch: each point has its version, or none.
TRACKED="p1:hello.txt p1:dir/sub/new1.bin p1:dir/new5.bin p1:moved/file.txt
    p2:hello.txt p2:late/late.bin p2:late/note.txt p2:dir/new4.bin
    sdvg-root:hello.txt sdvg-root:late/note.txt sdvg-root:dir/sub/blob.bin
    sdvg-root:big.bin"

# changed_blocks NEW OLD: the 64 KiB blocks where two equally long files
# differ, as block numbers. Only ranges where either file has data are
# read (both are sparse copies of a mostly empty disk).
changed_blocks() {
    "$PYTHON" - "$1" "$2" <<'EOF' || fail "comparing $1 with $2"
import os, sys
BS = 65536
fds = [os.open(p, os.O_RDONLY) for p in sys.argv[1:3]]
size = os.fstat(fds[0]).st_size
assert size == os.fstat(fds[1]).st_size and size % BS == 0
blocks = set()
for fd in fds:
    off = 0
    while off < size:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            break
        h = os.lseek(fd, d, os.SEEK_HOLE)
        blocks.update(range(d // BS, (h - 1) // BS + 1))
        off = h
print(" ".join(str(b) for b in sorted(blocks)
               if os.pread(fds[0], BS, b * BS) != os.pread(fds[1], BS, b * BS)))
EOF
}

# top_layer_blocks IMG: the 64 KiB blocks IMG's own layer allocates
# (qemu-img map, depth 0), as block numbers.
top_layer_blocks() {
    qemu-img map --output=json "$1" | "$PYTHON" -c '
import json, sys
out = []
for e in json.load(sys.stdin):
    if e["depth"] == 0 and e["present"]:
        assert e["start"] % 65536 == 0 and e["length"] % 65536 == 0, e
        out += range(e["start"] // 65536, (e["start"] + e["length"]) // 65536)
print(" ".join(str(b) for b in out))' || fail "qemu-img map of $1"
}

# --- the daemons, the full backup -------------------------------------

# sendense-nbd's temporary overlays go to $TMPDIR: keep them in scratch.
mkdir -p "$scratch/tmp"
TMPDIR=$scratch/tmp srv_start
sdd_config
sdd_start
DISKS="[{\"name\": \"disk0\", \"size\": $SIZE}]"

# start TYPE: backup.start; sets JOB ID URI and checks the parent.
start() {
    local out
    out=$(sdd_rpc backup.start "{\"vm\": \"$VM\", \"type\": \"$1\", \"disks\": $DISKS}")
    JOB=$(echo "$out" | jget 'r["job"]')
    ID=$(echo "$out" | jget 'r["disks"][0]["backup_id"]')
    URI=$(echo "$out" | jget 'r["disks"][0]["uri"]')
    if [ "$1" = full ]; then
        echo "$out" | jcheck 'r["disks"][0]["backup_type"] == "full"' || fail "backup.start full: $out"
    else
        echo "$out" | jcheck '(r["disks"][0]["backup_type"] == "incr" and
            r["disks"][0]["parent_id"] == "'"${IDS[-1]}"'")' || fail "backup.start incremental: $out"
    fi
}
complete() {
    sdd_rpc backup.complete "{\"job\": \"$JOB\", \"change_ids\": {\"disk0\": \"cid-$ID\"}}" |
        jcheck 'r["phase"] == "completed"' || fail "backup.complete of $ID"
}
show() { sdd_rpc backup.show "{\"vm\": \"$VM\", \"disk\": \"disk0\", \"id\": \"$1\"}"; }

IDS=()
start full
must nbdcopy "$DISK" "$URI"
complete
IDS+=("$ID")
cp --sparse=always "$DISK" "$RAW/0.raw"

# --- five incrementals of the changed blocks only ---------------------

for k in 1 2 3 4 5; do
    cp -a "$EXP/$((k - 1))" "$EXP/$k"
    change $k "$EXP/$k" || fail "round $k on the expected tree"
    live_up
    change $k "$scratch/live" || fail "round $k on the disk"
    live_down
    blocks=$(changed_blocks "$DISK" "$RAW/$((k - 1)).raw")
    n=$(echo $blocks | wc -w)
    [ "$n" -gt 0 ] || fail "round $k changed no block of the disk"
    start incremental
    write_blocks "$URI" "$DISK" $blocks
    complete
    IDS+=("$ID")
    cp --sparse=always "$DISK" "$RAW/$k.raw"

    # Exactly the changed clusters, recorded as written; the image is
    # those clusters and a little qcow2 metadata (header, L1, L2 and
    # refcount tables: a few clusters), far below the disk's size.
    [ "$(top_layer_blocks "$DIR/$ID.qcow2")" = "$blocks" ] ||
        fail "incremental $k allocates other clusters than the $n changed ones"
    sc=$(show "$ID")
    echo "incremental $k: $n blocks changed; sidecar: $(echo "$sc" |
        jget '"written %d, allocated %d" % (r["bytes_written"], r["allocated_bytes"])')"
    echo "$sc" | jcheck '(r["type"] == "incr" and r["parent"] == "'"${IDS[k - 1]}"'" and
        r["status"] == "completed" and r["bytes_written"] == '$((n * 65536))' and
        r["allocated_bytes"] <= '$((n * 65536 + MiB))' and
        r["allocated_bytes"] * 10 < '$SIZE')' || fail "incremental $k ($n blocks): $sc"
done
sdd_rpc backup.chain "{\"vm\": \"$VM\", \"disk\": \"disk0\"}" |
    jcheck 'r["usable"] and [b["id"] for b in r["chain"]] == "'"${IDS[*]}"'".split()' ||
    fail "the chain of six points"

# --- restoring every point --------------------------------------------

# ls_names MOUNT VOLUME PATH / want_names DIR: names, as restore.ls sorts.
ls_names() {
    sdd_rpc restore.ls "{\"mount\": \"$1\", \"volume\": \"$2\", \"path\": \"$3\"}" |
        jget '"\n".join(e["name"] for e in r["entries"] if e["name"] != "lost+found")'
}
want_names() { (cd "$1" && LC_ALL=C ls -A | LC_ALL=C sort); }

extract() {
    sdd_rpc restore.extract "{\"mount\": \"$1\", \"volume\": \"$2\", \"path\": \"$3\", \"dest\": \"$4\"}" |
        jcheck 'r["format"] == "'"$5"'"' || fail "restore.extract $*"
}

# check_tracked MOUNT EXPDIR DEST: each of $TRACKED that EXPDIR has,
# restore.extract'ed to DEST, is the same file; one it has not (deleted,
# or not made yet) is not found (1001) by restore.stat. One python for
# all the calls: a start of one costs a tenth of a second here.
check_tracked() {
    "$PYTHON" - "$top_srcdir/tests/tools" "$SDD_SOCK" "$@" $TRACKED <<'EOF'
import filecmp, importlib, os, sys
sys.path.insert(0, sys.argv[1])
rpc = importlib.import_module("nbd-rpc")
sock, mount, exp, dest = sys.argv[2:6]
bad = 0
for t in sys.argv[6:]:
    vol, path = t.split(":", 1)
    want = os.path.join(exp, vol, path)
    p = {"mount": mount, "volume": vol, "path": path}
    if os.path.lexists(want):
        r = rpc.call(sock, "restore.extract", dict(p, dest=dest))
        if r.get("result", {}).get("format") != "file":
            print("extract %s: %s" % (t, r), file=sys.stderr)
            bad = 1
        elif not filecmp.cmp(dest, want, shallow=False):
            print("%s differs from what was written" % t, file=sys.stderr)
            bad = 1
        if os.path.lexists(dest):
            os.unlink(dest)
    else:
        r = rpc.call(sock, "restore.stat", p)
        if r.get("error", {}).get("code") != 1001:
            print("%s should be absent: %s" % (t, r), file=sys.stderr)
            bad = 1
sys.exit(bad)
EOF
}

# check_files K ID: mount point K# check_files K ID: mount point K (backup ID) and compare its files with
# what was written up to round K.
check_files() {
    local k=$1 id=$2 exp=$EXP/$1 out m vol
    out=$(sdd_rpc restore.mount "{\"vm\": \"$VM\", \"disk\": \"disk0\", \"id\": \"$id\"}")
    echo "$out" | jcheck '(sorted((v["name"], v["fstype"]) for v in r["volumes"] if v["mounted"]) ==
        [("p1", "ext4"), ("p2", "xfs"), ("sdvg-root", "ext4")] and
        [v["offset"] for v in r["volumes"] if v["name"] == "sdvg-root"] == ['$LV_OFF'])' ||
        fail "restore.mount of point $k: $out"
    m=$(echo "$out" | jget 'r["mount"]')
    remember_loops
    [ -n "$(our_loops)" ] && [ -n "$(our_nbdfuse)" ] || fail "point $k mounted without loop devices or nbdfuse"
    for vol in $VOLS; do
        [ "$(ls_names "$m" "$vol" /)" = "$(want_names "$exp/$vol")" ] ||
            fail "restore.ls of point $k $vol: $(ls_names "$m" "$vol" /)"
        # The whole volume as tar, against what was written.
        extract "$m" "$vol" / "$OUT/$k-$vol.tar" tar
        mkdir "$OUT/$k-$vol"
        tar -xf "$OUT/$k-$vol.tar" -C "$OUT/$k-$vol" || fail "unpacking $k-$vol.tar"
        rm -rf "$OUT/$k-$vol/lost+found"
        diff -r --no-dereference "$exp/$vol" "$OUT/$k-$vol" >&2 ||
            fail "the files of $vol at point $k differ from what was written"
    done
    check_tracked "$m" "$exp" "$OUT/$k-file" || fail "the changed files of point $k"
    rm -rf "$OUT/$k-"*
    MOUNT=$m
}

# check_disk K ID: the whole disk of point K, read back through NBD.
check_disk() {
    local out name
    out=$(sdd_rpc restore.export "{\"vm\": \"$VM\", \"disk\": \"disk0\", \"id\": \"$2\"}")
    name=$(echo "$out" | jget 'r["name"]')
    must nbdcopy "$(echo "$out" | jget 'r["uri"]')" "$OUT/whole.raw"
    # (cmp reads the holes too, seconds for each disk)
    [ -z "$(changed_blocks "$OUT/whole.raw" "$RAW/$1.raw")" ] ||
        fail "restore.export of point $1 differs from the disk then"
    rm "$OUT/whole.raw"
    sdd_rpc restore.unexport "{\"name\": \"$name\"}" >/dev/null
}

# check_point K ID: both ways, with a mount and an export up at once.
check_point() {
    check_files "$1" "$2"
    check_disk "$1" "$2"
    [ -z "${3:-}" ] || "$3"
    sdd_rpc restore.umount "{\"mount\": \"$MOUNT\"}" >/dev/null
    assert_nothing_left "after restoring point $1"
}

images() { (cd "$DIR" && sha256sum *.qcow2); }
folder() { ls -l --time-style=full-iso "$DIR"; }
sums_before=$(images)

# While a point is mounted, its disk is busy: nothing may be deleted.
busy_checks() {
    local before err out
    before=$(folder)
    err=$(sdd_error backup.delete "{\"vm\": \"$VM\", \"id\": \"${IDS[5]}\"}")
    echo "$err" | jcheck 'r["code"] == 1003 and "busy" in r["message"]' ||
        fail "delete of a mounted point: $err"
    out=$(sdd_rpc backup.prune "{\"vm\": \"$VM\", \"keep_last\": 3}")
    echo "$out" | jcheck '[a["action"] for a in r["actions"]] == ["skip"]' ||
        fail "prune while mounted: $out"
    [ "$(folder)" = "$before" ] || fail "delete or prune changed files of a busy disk"
}

for k in 0 1 2 3 4; do check_point $k "${IDS[k]}"; done
check_point 5 "${IDS[5]}" busy_checks
[ "$(images)" = "$sums_before" ] || fail "a restore changed a backup image"

# --- deletion rules ---------------------------------------------------

before=$(folder)
for k in 0 2; do
    err=$(sdd_error backup.delete "{\"vm\": \"$VM\", \"id\": \"${IDS[k]}\"}")
    echo "$err" | jcheck 'r["code"] == 1003 and "'"${IDS[k + 1]}"'" in r["message"]' ||
        fail "delete of ${IDS[k]}, which ${IDS[k + 1]} depends on: $err"
done
[ "$(folder)" = "$before" ] || fail "a refused delete changed files"

# --- retention: keep the last three -----------------------------------

out=$(sdd_rpc backup.prune "{\"vm\": \"$VM\", \"keep_last\": 3}")
echo "$out" | jcheck '[a["action"] for a in r["actions"]] == ["consolidate"] * 3' ||
    fail "prune keep_last=3: $out"
KEPT=("full-${IDS[3]#*-}" "${IDS[4]}" "${IDS[5]}")

# check_catalog IDS...: the catalog lists these points, each completed,
# usable and verified by checksum, clean for qemu-img; the folder holds
# exactly their files.
check_catalog() {
    local id want
    sdd_rpc backup.list "{\"vm\": \"$VM\"}" |
        jcheck '([b["id"] for b in r["backups"]] == "'"$*"'".split() and
            all(b["status"] == "completed" and b["usable"] for b in r["backups"]))' ||
        fail "the catalog is not $*: $(sdd_rpc backup.list "{\"vm\": \"$VM\"}")"
    for id in "$@"; do
        qemu_check_clean "$DIR/$id.qcow2"
        sdd_rpc backup.verify "{\"vm\": \"$VM\", \"disk\": \"disk0\", \"id\": \"$id\", \"checksum\": true}" |
            jcheck 'r["ok"] and r["checksum"]["match"]' || fail "backup.verify $id"
    done
    want=$(for id in "$@"; do echo "$id.json"; echo "$id.qcow2"; done | sort)
    [ "$(ls -A "$DIR" | sort)" = "$want" ] ||
        fail "the folder holds $(ls -A "$DIR" | tr '\n' ' '), the catalog $*"
}
check_catalog "${KEPT[@]}"
show "${KEPT[0]}" | jcheck 'r["type"] == "full" and r["parent"] is None' ||
    fail "the consolidated full: $(show "${KEPT[0]}")"
sums_before=$(images)
for k in 3 4 5; do check_point $k "${KEPT[k - 3]}"; done
[ "$(images)" = "$sums_before" ] || fail "a restore changed a backup image"

# The kept full is depended on; the newest is not.
err=$(sdd_error backup.delete "{\"vm\": \"$VM\", \"id\": \"${KEPT[0]}\"}")
echo "$err" | jcheck 'r["code"] == 1003' || fail "delete of the consolidated full: $err"
sdd_rpc backup.delete "{\"vm\": \"$VM\", \"id\": \"${KEPT[2]}\"}" |
    jcheck 'r["disks"] == [{"disk": "disk0", "removed": ["'"${KEPT[2]}"'"]}]' ||
    fail "delete of the newest"
check_catalog "${KEPT[@]:0:2}"
same_content "$RAW/4.raw" "$DIR/${KEPT[1]}.qcow2"

assert_nothing_left "at the end"
sdd_stop
srv_stop
exit 0
