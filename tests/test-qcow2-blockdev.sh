#!/bin/bash
# A qcow2 image made by qemu-img directly on a block device (a loop
# device over a 96 MiB file, virtual size 1 GiB): the device ends far past
# the image, so new clusters must go after the image's last cluster in
# use, not after the device, and a new cluster's unwritten part must be
# written with zeros (it holds old bytes). Writes through the server
# give the same image as qemu-io writing into a qcow2 file; a write
# that does not fit on the device gets ENOSPC while the export keeps
# serving; `qemu-img check` finds no corruption on the device.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires losetup qemu-img qemu-io

[ "$(id -u)" = 0 ] || { echo "$0: SKIP: loop devices need root"; exit 77; }
file=$scratch/device.raw
# Old bytes on the device (0xff): they must never show through where the
# guest did not write.
head -c 96M /dev/zero | tr '\0' '\377' > "$file"
dev=$(losetup --find --show "$file" 2>/dev/null) ||
    { echo "$0: SKIP: this kernel gives no loop device"; exit 77; }
cleanup_fn "losetup -d '$dev'"
must qemu-img create -q -f qcow2 "$dev" 1G

# The same writes into a qcow2 file by qemu itself: the expected content.
writes=(-c "write -P 0x33 0 40M" -c "write -P 0x44 500M 20M"
        -c "write -P 0x55 1020M 4M" -c "write -P 0x77 734007296 8192")
must qemu-img create -q -f qcow2 "$scratch/expected.qcow2" 1G
must qemu-io -f qcow2 "${writes[@]}" "$scratch/expected.qcow2"

srv_start
srv_export dev "$dev" "format: qcow2"
uri=$(srv_unix_uri dev)
out=$(qemu-io -f raw "${writes[@]}" "$uri" 2>&1) || fail "writes: $out"
grep -q "failed" <<< "$out" && fail "writes into $dev failed: $out"
srv_stop
out=$(qemu-img check "$dev" 2>&1) || fail "qemu-img check $dev: $out"
must qemu-img compare -f qcow2 -F qcow2 "$scratch/expected.qcow2" "$dev"

# 40 MiB more does not fit in what is left of 96 MiB: refused, and the
# connection and the data already written stay.
srv_start
srv_export dev "$dev" "format: qcow2"
out=$(qemu-io -f raw -c "write -P 0x66 600M 40M" -c "read -P 0x33 0 40M" \
      -c "read -P 0x55 1020M 4M" "$(srv_unix_uri dev)" 2>&1)
grep -q "No space left on device" <<< "$out" || fail "a write past the device's end: $out"
grep -q "read 41943040/41943040" <<< "$out" || fail "read after ENOSPC: $out"
grep -q "read 4194304/4194304" <<< "$out" || fail "read after ENOSPC: $out"
srv_stop

# A refused write may leave leaked clusters, never corruption (exit 2).
rc=0; out=$(qemu-img check "$dev" 2>&1) || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "qemu-img check $dev (exit $rc): $out"
exit 0
