#!/bin/bash
# An incremental costs what changed, through the whole product path:
# sendense-capture copies into exports that sendensed made (backup.start /
# backup.complete) on a real sendense-nbd.
#
# A 1 GiB raw disk, about 40% random data in runs (4 KiB-aligned, so some
# 64 KiB blocks are half data, half hole), the rest holes, is backed up in
# full. Then 819 blocks of 64 KiB (5% of the disk) get new data: runs of
# adjacent blocks, single blocks in holes, in data and across their edges.
# The change list (VMware's QueryChangedDiskAreas shape, against the
# full's change id) drives the incremental. Checked, with the figures in
# the log:
#  - wire: the export received exactly the changed bytes as NBD write
#    payload (export.stats, job.status, the sidecar, the capture summary),
#    nothing zeroed, trimmed or read; with the 28-byte request headers
#    added it is still <= 1.05 x the changed bytes;
#  - allocated: the incremental file's host allocation (the sidecar's
#    allocated_bytes, backup.list, stat) <= 1.1 x changed + metadata, and
#    even <= changed + metadata, where the metadata bound comes from the
#    image's own header (header cluster, L1, refcount table and blocks)
#    and the L2 tables the changed clusters fall in (extended L2: 16-byte
#    entries); qemu-img map shows the incremental's own layer holding
#    exactly the change list, as data;
#  - correctness: the full equals the original disk, the chain equals the
#    changed disk (qemu-img compare), both images check clean.
# The same checker is then shown a wasteful incremental (another VM, the
# changed disk copied whole into its overlay without --changes): its
# chain is just as correct, and the checker must reject it.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires qemu-img
. "$top_srcdir/tests/sendensed-lib.sh"

. "$top_srcdir/tests/capture-lib.sh"

SIZE=$((1 << 30))
BLOCK=65536
NBLOCKS=819                     # 5% of 1 GiB in 64 KiB blocks
CHANGED=$((NBLOCKS * BLOCK))
NBD_REQUEST_HEADER=28           # bytes of an NBD request before its payload
# The layout of the disk and of the changes is random; the seed is printed
# so that a failure can be replayed (SEED=... make check ...).
SEED=${SEED:-$RANDOM$RANDOM}
echo "seed $SEED"

src=$scratch/disk.raw
changes=$scratch/changes.json
export SIZE BLOCK NBLOCKS SEED

# stats EXPORT: export.stats of a backup's export, before backup.complete
# removes it.
stats() {
    srv_rpc export.stats "{\"name\": \"$1\"}" > "$scratch/stats.json"
}
saved_stat() { jget "r[\"stats\"][\"$1\"][\"$2\"]" < "$scratch/stats.json"; }

sidecar_of() {          # VM ID KEY
    jget "r[\"$3\"]" < "$REPO/$1/disk0/$2.json" || fail "no sidecar $1/$2"
}

# start_job VM TYPE: backup.start for a VM with one 1 GiB disk; sets JOB,
# ID, EXPORT, URI and PARENT_CID.
start_job() {
    local out
    out=$(sdd_rpc backup.start "{\"vm\": \"$1\", \"type\": \"$2\",
        \"disks\": [{\"name\": \"disk0\", \"size\": $SIZE}]}")
    JOB=$(echo "$out" | jget 'r["job"]')
    ID=$(echo "$out" | jget 'r["disks"][0]["backup_id"]')
    EXPORT=$(echo "$out" | jget 'r["disks"][0]["export"]')
    URI=$(echo "$out" | jget 'r["disks"][0]["uri"]')
    PARENT_CID=$(echo "$out" | jget 'r["disks"][0]["parent_change_id"]')
}

complete_job() {        # CHANGE_ID
    sdd_rpc backup.complete "{\"job\": \"$JOB\", \"change_ids\": {\"disk0\": \"$1\"}}" |
        jcheck 'r["phase"] == "completed"' || fail "backup.complete of $JOB"
}

# metadata_bound IMAGE CHANGES: an upper bound of the bytes a qcow2
# overlay holding exactly CHANGES needs besides their data, from the
# image's own header: the header cluster (header, extensions, backing
# file name), the L1 table, the refcount table, enough refcount blocks
# for every cluster of the file, and one L2 table for each L2 range a
# changed cluster falls in. Prints "BYTES breakdown...".
metadata_bound() {
    "$PYTHON" - "$1" "$2" <<'EOF' || fail "cannot compute the metadata bound of $1"
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    h = f.read(104)
(magic, version, _bf_off, _bf_size, cluster_bits, _size, _crypt, l1_size,
 _l1_off, _rt_off, rt_clusters, _nsnap, _snap_off, incompat, _compat,
 _autoclear, refcount_order, _hlen) = struct.unpack(">4sIQIIQIIQQIIQQQQII", h)
assert magic == b"QFI\xfb" and version == 3, "not a qcow2 v3 image"
cs = 1 << cluster_bits
extended = bool(incompat & (1 << 4))
l2_entries = cs // (16 if extended else 8)
l1_clusters = -(-l1_size * 8 // cs)
areas = json.load(open(sys.argv[2]))["changedArea"]
clusters = set()
for a in areas:
    clusters.update(range(a["start"] // cs, -(-(a["start"] + a["length"]) // cs)))
l2_tables = len({c // l2_entries for c in clusters})
fixed = 1 + l1_clusters + rt_clusters + l2_tables
refblock_entries = cs * 8 // (1 << refcount_order)
# Refcount blocks count themselves too: iterate to the fixed point.
refblocks = 1
while -(-(fixed + refblocks + len(clusters)) // refblock_entries) > refblocks:
    refblocks += 1
meta = (fixed + refblocks) * cs
print(meta, "cluster_size=%d extended_l2=%s l2_entries=%d header=1 l1=%d "
      "refcount_table=%d refcount_blocks=%d l2_tables=%d data_clusters=%d"
      % (cs, extended, l2_entries, l1_clusters, rt_clusters, refblocks,
         l2_tables, len(clusters)))
EOF
}

# efficient LABEL WIRE_PAYLOAD WIRE_WITH_HEADERS ALLOCATED METADATA: the
# bounds of the issue; prints each comparison, returns 1 if one fails.
efficient() {
    local ok=0
    echo "   $1: wire payload $2 <= 1.05 x $CHANGED = $((CHANGED * 105 / 100))?"
    [ $(($2 * 100)) -le $((CHANGED * 105)) ] || { echo "   $1: NO, wire payload $2"; ok=1; }
    echo "   $1: wire with request headers $3 <= 1.05 x $CHANGED?"
    [ $(($3 * 100)) -le $((CHANGED * 105)) ] || { echo "   $1: NO, wire with headers $3"; ok=1; }
    echo "   $1: allocated $4 <= 1.1 x $CHANGED + $5 = $((CHANGED * 11 / 10 + $5))?"
    [ $(($4 * 10)) -le $((CHANGED * 11 + $5 * 10)) ] || { echo "   $1: NO, allocated $4"; ok=1; }
    return $ok
}

# --- the disk: ~40% random data in runs, the rest holes --------------------

echo "1. a 1 GiB disk with data in runs"
DATA=$("$PYTHON" - "$src" <<'EOF'
import os, random, sys
size, seed = int(os.environ["SIZE"]), int(os.environ["SEED"])
rnd = random.Random(seed)
K4 = 4096
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
os.ftruncate(fd, size)
pos = data = 0
# Holes of 64 KiB..12 MiB and data runs of 64 KiB..8 MiB (4 KiB-aligned):
# on average 4 of every 10 bytes are data.
while pos < size:
    pos += rnd.randint(16, 3072) * K4
    n = min(rnd.randint(16, 2048) * K4, size - pos)
    if n <= 0:
        break
    for off in range(0, n, 1 << 20):
        os.pwrite(fd, os.urandom(min(1 << 20, n - off)), pos + off)
    pos += n
    data += n
os.fsync(fd)
os.close(fd)
print(data)
EOF
) || fail "cannot make the disk"
echo "   data $DATA bytes ($((DATA * 100 / SIZE))% of $SIZE)"

# --- the full backup --------------------------------------------------------

srv_start
sdd_config
sdd_start

echo "2. full backup"
VM=ctx-eff
FULL_CID="52 3c 9b 12 ab cd 00 11-8e 7f 6a 5b 4c 3d 2e 1f/1"
start_job $VM full
FULL=$ID
capture --target-is-zero "$src" "$URI"
must_equal "full: bytes read" "$(summary read)" "$DATA"
must_equal "full: bytes written" "$(summary written)" "$DATA"
stats "$EXPORT"
must_equal "full: export bytes.write" "$(saved_stat bytes write)" "$DATA"
complete_job "$FULL_CID"
full_img=$REPO/$VM/disk0/$FULL.qcow2
# Before the disk changes: the full is the original disk.
same_content "$src" "$full_img"
qemu_check_clean "$full_img"
full_sum=$(sha256sum < "$full_img")
echo "   full: written $DATA, allocated $(sidecar_of $VM "$FULL" allocated_bytes)"

# --- 5% of the disk changes -------------------------------------------------

echo "3. 819 blocks of 64 KiB change"
start_job $VM incremental
INCR=$ID
INCR_EXPORT=$EXPORT
INCR_URI=$URI
# The agent asks CBT for the changes since the parent's change id.
must_equal "incremental's parent change id" "$PARENT_CID" "$FULL_CID"
export PARENT_CID
"$PYTHON" - "$src" "$changes" <<'EOF' || fail "cannot change the disk"
import json, os, random, sys
size, block, nblocks = (int(os.environ[k]) for k in ("SIZE", "BLOCK", "NBLOCKS"))
rnd = random.Random(int(os.environ["SEED"]) + 1)
fd = os.open(sys.argv[1], os.O_RDWR)
total = size // block

def kind(b):
    """What the 64 KiB block held before: hole, data or mixed."""
    off = b * block
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        return "hole"
    if d >= off + block:
        return "hole"
    if d > off:
        return "mixed"
    return "data" if os.lseek(fd, off, os.SEEK_HOLE) >= off + block else "mixed"

kinds = [kind(b) for b in range(total)]
pool = {k: [b for b in range(total) if kinds[b] == k] for k in ("hole", "data", "mixed")}
chosen = set()
# Runs of 2..8 adjacent blocks anywhere (they cross holes and data too).
while len(chosen) < nblocks // 4:
    s = rnd.randrange(total - 8)
    chosen.update(range(s, s + min(rnd.randint(2, 8), nblocks - len(chosen))))
# Single blocks: up to 24 across a data/hole edge, then holes and data in turn.
for b in rnd.sample(pool["mixed"], min(24, len(pool["mixed"]))):
    chosen.add(b)
order = ["hole", "data"]
while len(chosen) < nblocks:
    chosen.add(rnd.choice(pool[order[len(chosen) % 2]]))
chosen = sorted(chosen)
assert len(chosen) == nblocks
for b in chosen:
    os.pwrite(fd, os.urandom(block), b * block)
os.fsync(fd)
os.close(fd)

# Sorted, touching areas merged: as QueryChangedDiskAreas answers.
areas = []
for b in chosen:
    if areas and areas[-1]["start"] + areas[-1]["length"] == b * block:
        areas[-1]["length"] += block
    else:
        areas.append({"start": b * block, "length": block})
with open(sys.argv[2], "w") as f:
    json.dump({"changeId": os.environ["PARENT_CID"], "startOffset": 0,
               "length": size, "changedArea": areas}, f)
count = {k: sum(1 for b in chosen if kinds[b] == k) for k in pool}
adjacent = sum(1 for a, b in zip(chosen, chosen[1:]) if b == a + 1)
print("   %d blocks (%d bytes) in %d areas: %d were holes, %d data, %d mixed; "
      "%d adjacent pairs" % (len(chosen), len(chosen) * block, len(areas),
      count["hole"], count["data"], count["mixed"], adjacent))
# The mix the test is about must be there, whatever the seed.
if not (count["hole"] and count["data"] and count["mixed"] and adjacent):
    sys.exit("the changes miss a kind of block")
EOF

# --- the incremental --------------------------------------------------------

echo "4. incremental from the change list"
capture --changes "$changes" "$src" "$INCR_URI"
must_equal "incremental: bytes read" "$(summary read)" $CHANGED
must_equal "incremental: bytes written" "$(summary written)" $CHANGED
must_equal "incremental: bytes zeroed" "$(summary zeroed)" 0
must_equal "incremental: bytes skipped" "$(summary skipped)" $((SIZE - CHANGED))
stats "$INCR_EXPORT"
WIRE=$(saved_stat bytes write)
REQUESTS=0
for op in write zero trim flush read block_status cache; do
    REQUESTS=$((REQUESTS + $(saved_stat ops $op)))
done
WIRE_HEADERS=$((WIRE + REQUESTS * NBD_REQUEST_HEADER))
echo "   export.stats: bytes.write $WIRE in $(saved_stat ops write) writes, $(saved_stat ops flush) flushes;" \
    "$REQUESTS requests in all, with their headers $WIRE_HEADERS bytes"
for op in zero trim read; do
    must_equal "incremental: export bytes.$op" "$(saved_stat bytes $op)" 0
done
sdd_rpc job.status "{\"job\": \"$JOB\"}" > "$scratch/status.json"
must_equal "incremental: job.status bytes_written" \
    "$(jget 'r["disks"][0]["bytes_written"]' < "$scratch/status.json")" "$WIRE"
complete_job "cid-2"
incr_img=$REPO/$VM/disk0/$INCR.qcow2
SIDECAR_WRITTEN=$(sidecar_of $VM "$INCR" bytes_written)
ALLOC=$(sidecar_of $VM "$INCR" allocated_bytes)
LISTED=$(sdd_rpc backup.list "{\"vm\": \"$VM\"}" |
    jget '[(b["bytes_written"], b["allocated_bytes"]) for b in r["backups"] if b["id"] == "'"$INCR"'"]')
STAT_ALLOC=$(( $(stat -c '%b * %B' "$incr_img") ))
read -r META META_WHY <<< "$(metadata_bound "$incr_img" "$changes")"
[ -n "$META" ] || fail "no metadata bound for $incr_img"
echo "   sidecar: bytes_written $SIDECAR_WRITTEN allocated_bytes $ALLOC; backup.list $LISTED;" \
    "stat allocation $STAT_ALLOC; file size $(stat -c %s "$incr_img")"
echo "   metadata bound $META bytes: $META_WHY"
must_equal "incremental: sidecar bytes_written" "$SIDECAR_WRITTEN" "$WIRE"
must_equal "incremental: backup.list" "$LISTED" "[[$SIDECAR_WRITTEN, $ALLOC]]"

# Wire: every changed byte is sent once, as the payload of a write, and
# nothing else is sent as payload: the change list is 64 KiB-aligned and
# sendense-capture reads change-list areas as data (no zero detection),
# so exactly the changed bytes, not just at most 1.05 x.
must_equal "incremental: export bytes.write (exactly the changed bytes)" "$WIRE" $CHANGED
efficient "incremental (sidecar)" "$WIRE" "$WIRE_HEADERS" "$ALLOC" "$META" ||
    fail "the incremental costs more than what changed"
efficient "incremental (stat)" "$WIRE" "$WIRE_HEADERS" "$STAT_ALLOC" "$META" ||
    fail "the incremental costs more than what changed"
# Tighter: every changed extent is whole clusters, written once into a
# fresh overlay, so the data clusters are exactly the changed bytes; the
# rest can only be metadata.
for a in "$ALLOC" "$STAT_ALLOC"; do
    [ "$a" -le $((CHANGED + META)) ] ||
        fail "allocated $a > changed $CHANGED + metadata $META"
done

# The incremental's own layer (depth 0) is exactly the change list, as data.
qemu-img map --output=json "$incr_img" > "$scratch/map.json" || fail "qemu-img map $incr_img"
"$PYTHON" - "$scratch/map.json" "$changes" <<'EOF' || fail "the incremental's own layer is not the change list"
import json, sys
own = []
for e in json.load(open(sys.argv[1])):
    if e["depth"] != 0 or not e["present"]:
        continue
    if not e["data"]:
        sys.exit("depth 0 holds zeros at %d+%d" % (e["start"], e["length"]))
    if own and own[-1][0] + own[-1][1] == e["start"]:
        own[-1][1] += e["length"]
    else:
        own.append([e["start"], e["length"]])
want = [[a["start"], a["length"]] for a in json.load(open(sys.argv[2]))["changedArea"]]
if own != want:
    extra = sorted(set(map(tuple, own)) - set(map(tuple, want)))[:5]
    missing = sorted(set(map(tuple, want)) - set(map(tuple, own)))[:5]
    sys.exit("own layer %d areas, change list %d; own only: %s; list only: %s"
             % (len(own), len(want), extra, missing))
print("   qemu-img map: depth 0 = the %d changed areas, %d bytes, all data"
      % (len(own), sum(l for _, l in own)))
EOF

# Correctness: the chain is the changed disk, the full did not move.
same_content "$src" "$incr_img"
qemu_check_clean "$incr_img"
qemu_check_clean "$full_img"
[ "$(sha256sum < "$full_img")" = "$full_sum" ] || fail "the full image changed under its incremental"
echo "   chain == changed disk (qemu-img compare); both images check clean"

# --- the checker rejects a wasteful incremental ----------------------------

# Another VM whose incremental is the whole changed disk copied into its
# overlay (no --changes): its chain is as correct as the good one's, so
# only the figures can tell, and the checker must say no.
echo "5. control: the same incremental without --changes"
start_job ctx-eff-ctl full
complete_job "ctl-1"
start_job ctx-eff-ctl incremental
CTL=$ID
capture "$src" "$URI"
stats "$EXPORT"
CTL_WIRE=$(saved_stat bytes write)
REQUESTS=0
for op in write zero trim flush read block_status cache; do
    REQUESTS=$((REQUESTS + $(saved_stat ops $op)))
done
complete_job "ctl-2"
ctl_img=$REPO/ctx-eff-ctl/disk0/$CTL.qcow2
same_content "$src" "$ctl_img"
CTL_ALLOC=$(sidecar_of ctx-eff-ctl "$CTL" allocated_bytes)
read -r CTL_META _ <<< "$(metadata_bound "$ctl_img" "$changes")"
[ -n "$CTL_META" ] || fail "no metadata bound for $ctl_img"
echo "   control: bytes.write $CTL_WIRE, bytes.zero $(saved_stat bytes zero), allocated $CTL_ALLOC"
if efficient "control" "$CTL_WIRE" $((CTL_WIRE + REQUESTS * NBD_REQUEST_HEADER)) \
    "$CTL_ALLOC" "$CTL_META"; then
    fail "the checker accepted an incremental that copied the whole disk"
fi

sdd_stop
srv_stop
echo "PASS: changed $CHANGED, wire $WIRE ($WIRE_HEADERS with headers)," \
    "allocated $ALLOC (stat $STAT_ALLOC), metadata bound $META"
