#!/bin/bash
# SPDX-License-Identifier: MIT
# Make the seed corpus of fuzz-qcow2-image with qemu-img and qemu-io:
# small images (512 B to 4 KiB clusters keep each file under 64 KiB) of
# every kind the engine reads. The fuzz target provides a valid qcow2
# image named "base" and a raw file "base.raw" next to the input, so the
# seeds with a backing file name those.
#
# usage: fuzz/make-corpus.sh [OUTDIR]   (default: fuzz/corpus/qcow2-image)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/corpus/qcow2-image}
max_seed=$((64 * 1024))

for tool in qemu-img qemu-io; do
    command -v "$tool" >/dev/null || { echo "$0: needs $tool" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# create NAME SIZE OPTIONS [qemu-img create args...]
create() {
    local name=$1 size=$2 opts=$3
    shift 3
    qemu-img create -q -f qcow2 -o "$opts" "$@" "$work/$name" "$size"
}

# io NAME COMMAND...: run qemu-io commands on an image
io() {
    local name=$1
    shift
    local args=()
    for c in "$@"; do args+=(-c "$c"); done
    qemu-io -f qcow2 "${args[@]}" "$work/$name" >/dev/null ||
        { echo "$0: qemu-io failed on $name" >&2; exit 1; }
}

create v2 1M compat=0.10,cluster_size=4k
io v2 'write -P 0x11 0 8k' 'write -P 0x22 600k 5k'

create v2-small 256k compat=0.10,cluster_size=512
io v2-small 'write -P 0x33 1000 3000' 'write -P 0x44 200k 1k'

create v3 1M cluster_size=4k
io v3 'write -P 0x55 4k 12k' 'write -z 64k 8k' 'write -P 0x66 1020k 4k'

create v3-zero-alloc 512k cluster_size=4k
io v3-zero-alloc 'write -P 0x77 0 16k' 'write -z 4k 4k' 'discard 8k 4k'

create v3-refcount1 256k cluster_size=1k,refcount_bits=1
io v3-refcount1 'write -P 0x12 0 6k'

create v3-refcount64 256k cluster_size=1k,refcount_bits=64
io v3-refcount64 'write -P 0x13 3k 6k'

create v3-lazy 512k cluster_size=4k,lazy_refcounts=on
io v3-lazy 'write -P 0x14 0 8k'

create extl2 1M cluster_size=16k,extended_l2=on
io extl2 'write -P 0x21 0 512' 'write -P 0x22 2k 1k' 'write -z 8k 1k' \
    'write -z 512k 16k'

create zlib 512k cluster_size=4k,compression_type=zlib
io zlib 'write -c -P 0x5a 0 4k' 'write -c -P 0x5b 8k 4k' 'write -P 0x5c 16k 4k'

create zstd 512k cluster_size=4k,compression_type=zstd
io zstd 'write -c -P 0x6a 0 4k' 'write -c -P 0x6b 12k 4k'

qemu-img create -q -f qcow2 -o cluster_size=4k "$work/base" 1M
create backing-qcow2 1M cluster_size=4k -u -b base -F qcow2
io backing-qcow2 'write -P 0x31 4k 4k'

create backing-raw 256k cluster_size=4k -u -b base.raw -F raw
create backing-extl2 1M cluster_size=16k,extended_l2=on -u -b base -F qcow2
io backing-extl2 'write -P 0x32 5k 1k' 'write -z 9k 1k'

create snapshot 256k cluster_size=4k
io snapshot 'write -P 0x41 0 4k'
qemu-img snapshot -c snap1 "$work/snapshot"
io snapshot 'write -P 0x42 0 4k'

create bitmap 256k cluster_size=4k
qemu-img bitmap --add "$work/bitmap" bm0
io bitmap 'write -P 0x43 0 4k'

create header-only 64M cluster_size=512

truncate -s 20k "$work/raw"

# Extended L2 entries need clusters of at least 16 KiB, so the header,
# refcount table and block, L1 and L2 alone take 80 KiB: those seeds may
# be a little larger (and write only subclusters of one data cluster).
extl2_max_seed=$((96 * 1024))

rm -f "$work/base"
for f in "$work"/*; do
    size=$(stat -c %s "$f")
    limit=$max_seed
    case $(basename "$f") in *extl2*) limit=$extl2_max_seed ;; esac
    if [ "$size" -gt "$limit" ]; then
        echo "$0: $(basename "$f") is $size bytes, over $limit" >&2
        exit 1
    fi
    cp "$f" "$out/$(basename "$f")"
done
echo "$0: $(ls "$work" | wc -l) seeds in $out"
