#!/bin/bash
# Randomized model test of the image library (tools/img-model.c) over the
# image shapes we must handle: qcow2 v3 and v2, extended L2 over a backing
# file, a 3-layer chain, 512-byte and 2 MiB clusters, refcount widths 1
# and 64, images made by qemu-img and by sendense-img, and a raw file.
# Each case runs fixed seeds; afterwards `qemu-img check` must find the
# image clean (no leaks either: the tool closed it cleanly) and
# `qemu-img compare` must find it identical to the model.
#
# Knobs: SD_SOAK=N runs N times the ops and N seeds per case;
# SD_MODEL_CASES="v3 v2 ..." runs only the named cases. See
# tools/heavy-lib.sh for the rest.

srcdir=${srcdir:-$(dirname "$0")}
. "$srcdir/tools/heavy-lib.sh"

SENDENSE_IMG=${SENDENSE_IMG:-$(pwd)/../qcow2/sendense-img}
OPS=$((2000 * SD_SOAK))
SIZE=$((64 * 1024 * 1024 + 7 * 512))     # not a whole number of clusters

# Run img-model on $img with the given seed; $base (optional) is the raw
# content of $img's backing chain, for the discard contract.
run_model() {
    local img=$1 seed=$2 base=${3:-} out
    local model=$scratch/model.raw
    to_raw "$img" "$model"
    echo "  seed $seed: $IMG_MODEL --seed $seed --ops $OPS $direct" \
         "${base:+--base $base} $img $model"
    "$IMG_MODEL" --seed "$seed" --ops "$OPS" $direct ${base:+--base "$base"} \
        "$img" "$model" || fail "img-model seed $seed on $img"
    check_image "$img" 0 || fail "qemu-img check after seed $seed"
    out=$(qemu-img compare -F raw "$img" "$model" 2>&1) ||
        { echo "$out" >&2; fail "qemu-img compare $img model (seed $seed)"; }
}

# Make a fresh image for case $1 at $scratch/img.qcow2 (or .raw) and set
# $img and $base (the backing chain's raw content, or empty).
make_case() {
    base=
    rm -f "$scratch"/*.qcow2 "$scratch"/*.raw
    img=$scratch/img.qcow2
    case $1 in
    v3)      qemu-img create -q -f qcow2 -o cluster_size=65536 "$img" $SIZE ;;
    v2)      qemu-img create -q -f qcow2 -o compat=0.10 "$img" $SIZE ;;
    c512)    qemu-img create -q -f qcow2 -o cluster_size=512 "$img" $SIZE ;;
    c2m)     qemu-img create -q -f qcow2 -o cluster_size=2M "$img" $SIZE ;;
    rc1)     qemu-img create -q -f qcow2 -o refcount_bits=1 "$img" $SIZE ;;
    rc64)    qemu-img create -q -f qcow2 -o refcount_bits=64 "$img" $SIZE ;;
    extl2)
        qemu-img create -q -f qcow2 "$scratch/full.qcow2" $SIZE &&
        fill_with_qemu_io "$scratch/full.qcow2" 64 3 &&
        qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=65536 \
            -b "$scratch/full.qcow2" -F qcow2 "$img"
        base=$scratch/base.raw
        to_raw "$scratch/full.qcow2" "$base" ;;
    chain3)
        qemu-img create -q -f qcow2 "$scratch/l0.qcow2" $SIZE &&
        fill_with_qemu_io "$scratch/l0.qcow2" 64 5 &&
        qemu-img create -q -f qcow2 -b "$scratch/l0.qcow2" -F qcow2 \
            "$scratch/l1.qcow2" &&
        fill_with_qemu_io "$scratch/l1.qcow2" 64 11 &&
        qemu-img create -q -f qcow2 -o extended_l2=on -b "$scratch/l1.qcow2" \
            -F qcow2 "$img"
        base=$scratch/base.raw
        to_raw "$scratch/l1.qcow2" "$base" ;;
    sd-v3)
        "$SENDENSE_IMG" create -f qcow2 "$img" $SIZE >/dev/null ;;
    sd-extl2)
        qemu-img create -q -f qcow2 "$scratch/full.qcow2" $SIZE &&
        fill_with_qemu_io "$scratch/full.qcow2" 64 7 &&
        "$SENDENSE_IMG" create -f qcow2 -o extended_l2=on \
            -b "$scratch/full.qcow2" -F qcow2 "$img" >/dev/null
        base=$scratch/base.raw
        to_raw "$scratch/full.qcow2" "$base" ;;
    raw)
        img=$scratch/img.raw
        qemu-img create -q -f raw "$img" $SIZE ;;
    *)  fail "unknown case $1" ;;
    esac || fail "could not make the image of case $1"
}

cases=${SD_MODEL_CASES:-"v3 v2 extl2 chain3 c512 c2m rc1 rc64 sd-v3 sd-extl2 raw"}
case_no=0
for c in $cases; do
    case_no=$((case_no + 1))
    echo "case $c"
    s=0
    while [ $s -lt "$SD_SOAK" ]; do
        make_case "$c"
        seed=$((case_no * 1000 + s + 1))
        # Every other run opens the image as sendense-nbd does: aligned
        # data with O_DIRECT beside buffered metadata and unaligned data.
        direct=
        [ $(((case_no + s) % 2)) = 0 ] && direct=--direct-data
        if [ "$c" = raw ]; then
            # qemu-img check has nothing to say about raw files.
            model=$scratch/model.raw
            cp "$img" "$model"
            "$IMG_MODEL" --seed "$seed" --ops "$OPS" $direct "$img" "$model" ||
                fail "img-model seed $seed on raw"
            cmp "$img" "$model" || fail "raw image differs from the model"
        else
            run_model "$img" "$seed" "$base"
        fi
        s=$((s + 1))
    done
done
pass
