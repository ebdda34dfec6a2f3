#!/usr/bin/env bash
# Images written by qemu (qemu-img, qemu-io) read back through our engine:
# `sendense-img convert -O raw` must give the same bytes as `qemu-img
# convert -O raw`, and `sendense-img map --json` must say the same as
# `qemu-img map --output=json` about every byte (see compare_maps).
# Covered: cluster sizes, v2 and v3, refcount widths, extended L2, zero
# and compressed clusters, backing chains (raw at the bottom, a backing
# file shorter than its overlay), internal snapshots and bitmaps.

. "${srcdir:-.}/functions.sh"
requires qemu-img qemu-io python3 cmp

cases=0

# check_read IMG: compare our reading of IMG with qemu's.
check_read() {
    local img=$1 name
    name=$(basename "$img")
    # The maps report host-file holes (SEEK_DATA): written back first,
    # the chain reads the same to every map taken after, ours and qemu's.
    sync
    rm -f "$scratch/ours.raw" "$scratch/theirs.raw"
    must "$SENDENSE_IMG" convert -O raw "$img" "$scratch/ours.raw"
    must qemu-img convert -O raw "$img" "$scratch/theirs.raw"
    cmp "$scratch/ours.raw" "$scratch/theirs.raw" ||
        fail "$name: sendense-img convert and qemu-img convert differ"
    "$SENDENSE_IMG" map --json "$img" >"$scratch/ours.json" ||
        fail "$name: sendense-img map failed"
    qemu-img map --output=json "$img" >"$scratch/theirs.json" ||
        fail "$name: qemu-img map failed"
    compare_maps "$scratch/ours.json" "$scratch/theirs.json" ||
        fail "$name: sendense-img map disagrees with qemu-img map"
    # The text map lists data ranges with their host offsets. qemu-img
    # 7.2 refuses to print one for compressed clusters; we print those
    # (marked "compressed"), so compare only when qemu-img can.
    if qemu-img map "$img" >"$scratch/theirs.txt" 2>/dev/null; then
        "$SENDENSE_IMG" map "$img" >"$scratch/ours.txt" ||
            fail "$name: sendense-img map (text) failed"
        compare_text_maps "$scratch/ours.txt" "$scratch/theirs.txt" \
            "$scratch/theirs.json" || fail "$name: text maps differ"
    fi
    cases=$((cases + 1))
}

# compare_text_maps OURS.txt THEIRS.txt THEIRS.json: the same guest bytes
# map to the same host offsets in the same files, except that qemu-img
# leaves out data clusters' bytes that are holes in the host file (its
# JSON marks them "data" and "zero"): those may only be in ours.
compare_text_maps() {
    python3 - "$@" <<'EOF'
import json, sys

UNIT = 512

def units(path):
    out = {}
    for line in open(path).read().splitlines()[1:]:
        start, length, mapped, name = line.split(None, 3)
        start, length, mapped = int(start, 0), int(length, 0), int(mapped, 0)
        for u in range(start // UNIT, (start + length) // UNIT):
            out[u] = (mapped + u * UNIT - start, name)
    return out

ours, theirs = units(sys.argv[1]), units(sys.argv[2])
holes = set()
for e in json.load(open(sys.argv[3])):
    if e["data"] and e["zero"]:
        holes.update(range(e["start"] // UNIT,
                           (e["start"] + e["length"]) // UNIT))
bad = [u for u in theirs if ours.get(u) != theirs[u]]
bad += [u for u in ours if u not in theirs and u not in holes]
if bad:
    u = min(bad)
    sys.exit("first difference at guest offset %#x: ours %s, theirs %s"
             % (u * UNIT, ours.get(u), theirs.get(u)))
EOF
}

# qio IMG CMD...: run qemu-io commands on IMG.
qio() {
    local img=$1 args=() c
    shift
    for c in "$@"; do
        args+=(-c "$c")
    done
    must qemu-io "${args[@]}" "$img"
}

# Patterns relative to the cluster size cs: a head write smaller than a
# cluster, a write across cluster boundaries at an odd sector, zeroed
# clusters inside data, a write into the middle of those zeros, and a
# write into the last cluster.
fill() {
    local img=$1 cs=$2 size=$3
    qio "$img" \
        "write -P 0x11 0 $((cs / 2))" \
        "write -P 0x22 $((cs * 3 + 512)) $((cs * 2))" \
        "write -P 0x33 $((cs * 8)) $((cs * 4))" \
        "write -z $((cs * 9)) $((cs * 2))" \
        "write -P 0x44 $((cs * 10 + 1024)) 512" \
        "write -P 0x55 $((size - 1024)) 1024"
}

# ---- layouts --------------------------------------------------------------
for cs in 512 4096 65536 2097152; do
    size=$((cs * 64))
    img=$scratch/cs$cs.qcow2
    must qemu-img create -f qcow2 -o cluster_size=$cs "$img" $size
    fill "$img" $cs $size
    check_read "$img"
done

for compat in 0.10 1.1; do
    for cs in 4096 65536; do
        img=$scratch/compat$compat-$cs.qcow2
        must qemu-img create -f qcow2 -o compat=$compat,cluster_size=$cs \
            "$img" 8M
        fill "$img" $cs $((8 << 20))
        check_read "$img"
    done
done

for bits in 1 16 64; do
    img=$scratch/refbits$bits.qcow2
    must qemu-img create -f qcow2 -o refcount_bits=$bits "$img" 8M
    fill "$img" 65536 $((8 << 20))
    check_read "$img"
done

# Extended L2: 4 KiB writes allocate subclusters (a 64 KiB cluster has 32
# of 2 KiB, a 2 MiB one 32 of 64 KiB); zeroes may be per subcluster.
for cs in 65536 2097152; do
    img=$scratch/extl2-$cs.qcow2
    sub=$((cs / 32))
    must qemu-img create -f qcow2 -o extended_l2=on,cluster_size=$cs \
        "$img" $((cs * 16))
    fill "$img" $cs $((cs * 16))
    qio "$img" "write -P 0x66 $((cs * 12 + sub * 3)) $sub" \
        "write -z $((cs * 12 + sub * 5)) $((sub * 2))"
    check_read "$img"
    # An overlay with extended L2: partly written clusters read the rest
    # from the backing file.
    top=$scratch/extl2-$cs-top.qcow2
    must qemu-img create -f qcow2 -o extended_l2=on,cluster_size=$cs \
        -b "$img" -F qcow2 "$top"
    qio "$top" "write -P 0x77 $((sub * 2)) $sub" \
        "write -z $((cs * 8 + sub)) $sub" \
        "write -P 0x78 $((cs * 3 + sub * 31)) $((sub * 2))"
    check_read "$top"
done

# ---- raw --------------------------------------------------------------------
img=$scratch/plain.raw
must qemu-img create -f raw "$img" 4M
qio "$img" "write -P 0x12 1M 64k" "write -P 0x13 $((4 * 1024 * 1024 - 4096)) 4k"
check_read "$img"

# ---- zero clusters --------------------------------------------------------
img=$scratch/zero.qcow2
must qemu-img create -f qcow2 "$img" 8M
qio "$img" "write -P 0x21 0 1M" "write -z 64k 128k" "write -z -u 512k 64k" \
    "write -z 4M 1M"
check_read "$img"
# Zero clusters over a backing file with data: they hide it.
top=$scratch/zero-top.qcow2
must qemu-img create -f qcow2 -b "$img" -F qcow2 "$top"
qio "$top" "write -z 0 128k" "write -z 768k 64k" "write -P 0x22 4M 4k"
check_read "$top"

# ---- compressed clusters --------------------------------------------------
for ct in zlib zstd; do
    img=$scratch/comp-$ct.qcow2
    must qemu-img create -f qcow2 -o compression_type=$ct "$img" 8M
    qio "$img" "write -c -P 0x31 0 64k" "write -c -P 0x32 192k 128k" \
        "write -P 0x33 1M 64k" "write -c -z 2M 64k"
    check_read "$img"
    # A whole image compressed by qemu-img convert -c, from mixed data.
    src=$scratch/comp-src.qcow2
    must qemu-img create -f qcow2 "$src" 8M
    fill "$src" 65536 $((8 << 20))
    qio "$src" "write -P 0x34 2M 1M"
    conv=$scratch/comp-conv-$ct.qcow2
    must qemu-img convert -c -O qcow2 -o compression_type=$ct "$src" "$conv"
    check_read "$conv"
done

# ---- backing chains -------------------------------------------------------
# raw (4 MiB) <- l1 (8 MiB) <- l2 (8 MiB) <- l3 (12 MiB): every layer
# overwrites parts of the ones below, and l3 is longer than l2.
base=$scratch/chain-base.raw
must qemu-img create -f raw "$base" 4M
qio "$base" "write -P 0x01 0 4M" "write -z 1M 512k"
chain=("$base")
prev=$base
prevfmt=raw
n=1
for spec in "8M 0x02 512k" "8M 0x03 1536k" "12M 0x04 2560k"; do
    set -- $spec
    img=$scratch/chain-l$n.qcow2
    must qemu-img create -f qcow2 -b "$prev" -F $prevfmt "$img" "$1"
    qio "$img" "write -P $2 $3 1M" "write -P $2 $((n * 3))M 64k" \
        "write -z $((n * 1024 + 64))k 64k" "write -P $2 $((n * 2 + 3))M 4k"
    prev=$img
    prevfmt=qcow2
    n=$((n + 1))
done
for img in "$scratch"/chain-l1.qcow2 "$scratch"/chain-l2.qcow2 \
    "$scratch"/chain-l3.qcow2; do
    check_read "$img"
done
# A backing file shorter than the overlay, with data at its very end.
short=$scratch/short.qcow2
must qemu-img create -f qcow2 "$short" 1M
qio "$short" "write -P 0x41 $((1024 * 1024 - 4096)) 4096"
over=$scratch/short-over.qcow2
must qemu-img create -f qcow2 -b "$short" -F qcow2 "$over" 4M
qio "$over" "write -P 0x42 3M 4k"
check_read "$over"
# Relative backing names resolve against the overlay's folder.
mkdir -p "$scratch/rel"
must qemu-img create -f qcow2 "$scratch/rel/base.qcow2" 2M
qio "$scratch/rel/base.qcow2" "write -P 0x51 0 1M"
(cd "$scratch/rel" && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 \
    top.qcow2) || fail "create the relative overlay"
qio "$scratch/rel/top.qcow2" "write -P 0x52 512k 4k"
check_read "$scratch/rel/top.qcow2"

# ---- snapshots and bitmaps ------------------------------------------------
img=$scratch/snap.qcow2
must qemu-img create -f qcow2 "$img" 8M
fill "$img" 65536 $((8 << 20))
must qemu-img snapshot -c first "$img"
qio "$img" "write -P 0x61 0 128k" "write -z 512k 64k" "write -P 0x62 6M 64k"
must qemu-img snapshot -c second "$img"
qio "$img" "write -P 0x63 64k 4k"
check_read "$img"

img=$scratch/bitmap.qcow2
must qemu-img create -f qcow2 "$img" 8M
must qemu-img bitmap --add "$img" b0
fill "$img" 65536 $((8 << 20))
must qemu-img bitmap --add "$img" b1
qio "$img" "write -P 0x71 2M 64k"
check_read "$img"

echo "$cases images read alike by sendense-img and qemu-img"
