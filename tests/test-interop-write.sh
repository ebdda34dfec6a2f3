#!/usr/bin/env bash
# Images written by sendense-img, judged by qemu-img:
#  - create: qemu-img check is clean and qemu-img info shows what was
#    asked for, the same as for the image qemu-img creates with the same
#    options; our info --json agrees with qemu-img's on our image;
#  - convert -O qcow2 (with -o variants and -B) from qemu-made chains:
#    qemu-img compare equal, check clean, zeros left unallocated;
#  - commit and rebase (safe, -u, onto nothing): the same result as
#    qemu-img commit / rebase on an identical chain.

. "${srcdir:-.}/functions.sh"
requires qemu-img qemu-io python3

qio() {
    local img=$1 args=() c
    shift
    for c in "$@"; do
        args+=(-c "$c")
    done
    must qemu-io "${args[@]}" "$img"
}

# json_fields FILE KEYS...: the named keys of a JSON object, one per line
# (format-specific.data is flattened), to compare two info outputs.
json_fields() {
    python3 - "$@" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
fs = j.get("format-specific", {}).get("data", {})
for k in sys.argv[2:]:
    print(k, json.dumps(fs.get(k[3:]) if k.startswith("fs.") else j.get(k)))
EOF
}

layout_keys="virtual-size cluster-size format dirty-flag backing-filename
    backing-filename-format fs.compat fs.compression-type fs.lazy-refcounts
    fs.refcount-bits fs.corrupt fs.extended-l2"

# ---- create -----------------------------------------------------------------
create_case() {
    local opts=$1 size=$2 ours=$scratch/ours.qcow2 theirs=$scratch/theirs.qcow2
    rm -f "$ours" "$theirs"
    must "$SENDENSE_IMG" create -q -f qcow2 ${opts:+-o "$opts"} "$ours" $size
    must qemu-img create -f qcow2 ${opts:+-o "$opts"} "$theirs" $size
    qemu_check_clean "$ours"
    qemu-img info --output=json "$ours" >"$scratch/q-ours.json"
    qemu-img info --output=json "$theirs" >"$scratch/q-theirs.json"
    json_fields "$scratch/q-ours.json" $layout_keys >"$scratch/a"
    json_fields "$scratch/q-theirs.json" $layout_keys >"$scratch/b"
    diff "$scratch/a" "$scratch/b" >&2 ||
        fail "create -o '$opts': qemu-img info differs from qemu's own image"
    # Our info on our image says what qemu-img info says.
    "$SENDENSE_IMG" info --json "$ours" >"$scratch/s-ours.json" ||
        fail "info --json"
    json_fields "$scratch/s-ours.json" $layout_keys actual-size filename \
        >"$scratch/a"
    json_fields "$scratch/q-ours.json" $layout_keys actual-size filename \
        >"$scratch/b"
    diff "$scratch/a" "$scratch/b" >&2 ||
        fail "create -o '$opts': our info --json differs from qemu-img info"
    # qemu can write into it, and it stays consistent.
    qio "$ours" "write -P 0x5a 0 128k" "write -z 1M 64k" \
        "write -P 0x5b $((size - 4096)) 4096"
    qemu_check_clean "$ours"
}

size=$((64 << 20))
for opts in "" cluster_size=512 cluster_size=4k cluster_size=2M \
    compat=0.10 compat=v2,cluster_size=4k refcount_bits=1 refcount_bits=64 \
    extended_l2=on extended_l2=on,cluster_size=2M lazy_refcounts=on \
    preallocation=metadata compression_type=zstd \
    compat=1.1,refcount_bits=8,cluster_size=16k,lazy_refcounts=on; do
    create_case "$opts" $size
done

# Over a backing file: the size comes from it, the header names it as
# given (relative to the overlay's folder) with its format.
mkdir -p "$scratch/dir"
must qemu-img create -f qcow2 "$scratch/dir/base.qcow2" 3M
(cd "$scratch" && "$SENDENSE_IMG" create -q -f qcow2 -b base.qcow2 \
    -F qcow2 dir/top.qcow2) || fail "create over a backing file"
qemu_check_clean "$scratch/dir/top.qcow2"
qemu-img info --output=json "$scratch/dir/top.qcow2" >"$scratch/q.json"
json_fields "$scratch/q.json" virtual-size backing-filename \
    backing-filename-format >"$scratch/a"
printf '%s\n' 'virtual-size 3145728' 'backing-filename "base.qcow2"' \
    'backing-filename-format "qcow2"' >"$scratch/b"
diff "$scratch/a" "$scratch/b" >&2 || fail "create -b: header"
(cd "$scratch" && "$SENDENSE_IMG" info --json dir/top.qcow2) \
    >"$scratch/s.json" || fail "info --json of an overlay"
json_fields "$scratch/s.json" full-backing-filename >"$scratch/a"
echo 'full-backing-filename "dir/base.qcow2"' >"$scratch/b"
diff "$scratch/a" "$scratch/b" >&2 || fail "info: full-backing-filename"

# --backing-chain lists every image, as qemu-img does.
"$SENDENSE_IMG" info --backing-chain --json "$scratch/dir/top.qcow2" \
    >"$scratch/s.json" || fail "info --backing-chain"
qemu-img info --backing-chain --output=json "$scratch/dir/top.qcow2" \
    >"$scratch/q.json"
python3 - "$scratch/s.json" "$scratch/q.json" <<'EOF' ||
import json, sys
ours, theirs = (json.load(open(p)) for p in sys.argv[1:3])
keys = ("filename", "format", "virtual-size", "backing-filename",
        "full-backing-filename", "backing-filename-format")
pick = lambda l: [{k: e.get(k) for k in keys} for e in l]
if pick(ours) != pick(theirs):
    sys.exit("ours: %s\ntheirs: %s" % (pick(ours), pick(theirs)))
EOF
    fail "info --backing-chain differs from qemu-img's"

# ---- convert ----------------------------------------------------------------
# A qemu-made chain: raw <- qcow2 (compressed, zero clusters) <- qcow2 with
# extended L2 and partial subcluster writes.
src_base=$scratch/src-base.raw
must qemu-img create -f raw "$src_base" 16M
qio "$src_base" "write -P 0x10 0 2M" "write -P 0x11 9M 1M"
src_mid=$scratch/src-mid.qcow2
must qemu-img create -f qcow2 -b "$src_base" -F raw "$src_mid"
qio "$src_mid" "write -P 0x20 1M 2M" "write -z 0 64k" \
    "write -c -P 0x21 4M 128k" "write -P 0x22 12M 4k"
src_top=$scratch/src-top.qcow2
must qemu-img create -f qcow2 -o extended_l2=on -b "$src_mid" -F qcow2 \
    "$src_top" 20M
qio "$src_top" "write -P 0x30 1536k 4k" "write -z 9M 64k" \
    "write -P 0x31 18M 1M"

for opts in "" cluster_size=4k compat=0.10 extended_l2=on \
    refcount_bits=1,cluster_size=2M compression_type=zstd; do
    dst=$scratch/conv.qcow2
    rm -f "$dst"
    must "$SENDENSE_IMG" convert -O qcow2 ${opts:+-o "$opts"} "$src_top" "$dst"
    same_content "$src_top" "$dst"
    qemu_check_clean "$dst"
    qemu-img info --output=json "$dst" | grep -q backing-filename &&
        fail "convert -o '$opts': the copy has a backing file"
done

# Zeros are not written: 1 MiB of data in a 256 MiB image costs 16
# clusters of 64 KiB, wherever the zeros come from.
sparse=$scratch/sparse.qcow2
must qemu-img create -f qcow2 "$sparse" 256M
qio "$sparse" "write -P 0x40 8M 1M" "write -z 16M 32M" "write -P 0 64M 8M"
must "$SENDENSE_IMG" convert -O qcow2 "$sparse" "$scratch/sparse-copy.qcow2"
alloc=$(qemu-img check --output=json "$scratch/sparse-copy.qcow2" |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("allocated-clusters", 0))')
[ "$alloc" = 16 ] || fail "convert allocated $alloc clusters for 1 MiB of data"
must "$SENDENSE_IMG" convert -O raw "$sparse" "$scratch/sparse.raw"
used=$(du -k "$scratch/sparse.raw" | cut -f1)
[ "$used" -lt 4096 ] || fail "convert -O raw wrote zeros ($used KiB used)"
same_content "$sparse" "$scratch/sparse.raw"

# Zeros that are stored as data (a fully allocated raw file) are found
# too: only the clusters holding the two non-zero bytes are allocated.
dd if=/dev/zero of="$scratch/full.raw" bs=1M count=32 status=none ||
    fail "dd"
printf 'A' | dd of="$scratch/full.raw" bs=1 seek=5000000 conv=notrunc \
    status=none && printf 'B' | dd of="$scratch/full.raw" bs=1 \
    seek=20000000 conv=notrunc status=none || fail "dd"
must "$SENDENSE_IMG" convert -f raw -O qcow2 "$scratch/full.raw" \
    "$scratch/full.qcow2"
same_content "$scratch/full.raw" "$scratch/full.qcow2"
alloc=$(qemu-img check --output=json "$scratch/full.qcow2" |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("allocated-clusters", 0))')
[ "$alloc" = 2 ] || fail "convert allocated $alloc clusters for 2 bytes"

# -B: a copy of the top layer over an equivalent backing file.
dst=$scratch/conv-b.qcow2
must "$SENDENSE_IMG" convert -O qcow2 -B "$src_mid" -F qcow2 "$src_top" "$dst"
same_content "$src_top" "$dst"
qemu_check_clean "$dst"
qemu-img info --output=json "$dst" >"$scratch/q.json"
json_fields "$scratch/q.json" backing-filename >"$scratch/a"
echo "backing-filename \"$src_mid\"" >"$scratch/b"
diff "$scratch/a" "$scratch/b" >&2 || fail "convert -B: backing file name"

# ---- commit -------------------------------------------------------------------
# build_chain DIR: base (qcow2, data everywhere) <- mid <- top, each layer
# with data and zeros over the layers below.
build_chain() {
    mkdir -p "$1"
    must qemu-img create -f qcow2 "$1/base.qcow2" 8M
    qio "$1/base.qcow2" "write -P 0x01 0 8M"
    must qemu-img create -f qcow2 -b base.qcow2 -F qcow2 "$1/mid.qcow2"
    qio "$1/mid.qcow2" "write -P 0x02 1M 1M" "write -z 3M 256k"
    must qemu-img create -f qcow2 -b mid.qcow2 -F qcow2 "$1/top.qcow2"
    qio "$1/top.qcow2" "write -P 0x03 1536k 1M" "write -z 0 128k" \
        "write -P 0x04 3200k 4k" "write -z 7M 1M"
}

# same_chains A B [layers]: every image of chain A reads as its peer in
# chain B, qemu-img check is clean on all, and qemu-img maps the tops
# alike (with "layers": the same bytes allocated in the same layers, as
# data or zeros: rebase may pin zeros as zero clusters where qemu-img
# 7.2 writes zeroed data).
same_chains() {
    local i
    for i in base mid top; do
        same_content "$1/$i.qcow2" "$2/$i.qcow2"
        qemu_check_clean "$1/$i.qcow2"
        qemu_check_clean "$2/$i.qcow2"
    done
    qemu-img map --output=json "$1/top.qcow2" >"$scratch/m1.json"
    qemu-img map --output=json "$2/top.qcow2" >"$scratch/m2.json"
    compare_maps "$scratch/m1.json" "$scratch/m2.json" "${3:-all}" ||
        fail "top images are mapped differently"
}

build_chain "$scratch/c-ours"
build_chain "$scratch/c-theirs"
must qemu-img convert -O raw "$scratch/c-ours/top.qcow2" "$scratch/top-before.raw"
must "$SENDENSE_IMG" commit -q "$scratch/c-ours/top.qcow2"
must qemu-img commit "$scratch/c-theirs/top.qcow2"
same_chains "$scratch/c-ours" "$scratch/c-theirs"
same_content "$scratch/c-ours/top.qcow2" "$scratch/top-before.raw"

# commit -d keeps the top as it was.
rm -rf "$scratch/c-ours" "$scratch/c-theirs"
build_chain "$scratch/c-ours"
build_chain "$scratch/c-theirs"
must "$SENDENSE_IMG" commit -q -d "$scratch/c-ours/top.qcow2"
must qemu-img commit -d "$scratch/c-theirs/top.qcow2"
same_chains "$scratch/c-ours" "$scratch/c-theirs"

# ---- rebase -------------------------------------------------------------------
# new.qcow2 differs from the old chain in some places and not in others,
# and is shorter than the images it will back.
make_new_backing() {
    must qemu-img create -f qcow2 "$1/new.qcow2" 6M
    qio "$1/new.qcow2" "write -P 0x01 0 1M" "write -P 0x09 2M 2M"
}

for mode in safe unsafe none; do
    rm -rf "$scratch/c-ours" "$scratch/c-theirs"
    for side in ours theirs; do
        build_chain "$scratch/c-$side"
        make_new_backing "$scratch/c-$side"
    done
    case $mode in
    safe)
        must "$SENDENSE_IMG" rebase -b new.qcow2 -F qcow2 "$scratch/c-ours/top.qcow2"
        must qemu-img rebase -b new.qcow2 -F qcow2 "$scratch/c-theirs/top.qcow2"
        same_content "$scratch/c-ours/top.qcow2" "$scratch/top-before.raw" ;;
    unsafe)
        must "$SENDENSE_IMG" rebase -u -b new.qcow2 -F qcow2 "$scratch/c-ours/top.qcow2"
        must qemu-img rebase -u -b new.qcow2 -F qcow2 "$scratch/c-theirs/top.qcow2" ;;
    none)
        must "$SENDENSE_IMG" rebase -b "" "$scratch/c-ours/top.qcow2"
        must qemu-img rebase -b "" "$scratch/c-theirs/top.qcow2"
        same_content "$scratch/c-ours/top.qcow2" "$scratch/top-before.raw" ;;
    esac
    for side in ours theirs; do
        qemu-img info --output=json "$scratch/c-$side/top.qcow2" \
            >"$scratch/q-$side.json"
        json_fields "$scratch/q-$side.json" backing-filename \
            backing-filename-format virtual-size >"$scratch/h-$side"
    done
    diff "$scratch/h-ours" "$scratch/h-theirs" >&2 ||
        fail "rebase ($mode): the headers differ"
    same_chains "$scratch/c-ours" "$scratch/c-theirs" layers
done

echo "qemu-img agrees with what sendense-img wrote"
