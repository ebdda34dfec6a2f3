#!/bin/bash
# Raw block devices: a loop device read, written and used as the backing
# file of a qcow2 overlay, and checked against the file behind it.
. "${srcdir:-.}/functions.sh"
requires losetup qemu-img qemu-io

[ "$(id -u)" = 0 ] || { echo "$0: SKIP: loop devices need root"; exit 77; }
img=$SENDENSE_IMG

# qemu-io ARGS...: every read must succeed and match its pattern.
reads_match() {
    local out
    out=$(qemu-io "$@" 2>&1) || return 1
    ! grep -q 'Pattern verification failed' <<<"$out" && grep -q '^read ' <<<"$out"
}
file=$scratch/disk.raw
truncate -s 64M "$file"
qemu-io -f raw -c 'write -P 0x31 0 8M' -c 'write -P 0x32 32M 4M' "$file" >/dev/null
dev=$(losetup --find --show "$file" 2>/dev/null) ||
    { echo "$0: SKIP: this kernel gives no loop device"; exit 77; }
cleanup_fn "losetup -d '$dev'"

# The size comes from the device, not from a file size.
size=$("$img" info --json "$dev" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
[ "$size" = 67108864 ] || fail "virtual size of $dev is $size"

# Read it whole: convert to qcow2 and compare with the file.
"$img" convert -f raw -O qcow2 "$dev" "$scratch/copy.qcow2" || fail "convert from $dev"
qemu-img compare -q -f raw -F qcow2 "$file" "$scratch/copy.qcow2" || fail "copy of $dev differs"

# Write through the device, then see it in the file.
"$img" bench -q -f raw -w -c 16 -s 64k -o 16M --pattern=51 "$dev" >/dev/null ||
    fail "writing to $dev"
sync
reads_match -f raw -c 'read -P 0x33 16M 1M' "$file" ||
    fail "the device write did not reach the file"

# A qcow2 overlay over the device as its raw backing file.
"$img" create -q -f qcow2 -b "$dev" -F raw "$scratch/top.qcow2" || fail "create over $dev"
"$img" bench -q -w -c 4 -s 4k -o 4096 --pattern=52 "$scratch/top.qcow2" >/dev/null ||
    fail "writing the overlay"
qemu-img check -q "$scratch/top.qcow2" || fail "overlay over $dev is not clean"
reads_match -c 'read -P 0x31 0 4096' -c 'read -P 0x34 4096 16384' \
    -c 'read -P 0x31 20480 8368128' "$scratch/top.qcow2" ||
    fail "overlay over $dev reads wrong data"
echo "$0: PASS"
