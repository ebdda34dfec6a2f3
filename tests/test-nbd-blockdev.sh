#!/bin/bash
# A raw block device exported with O_DIRECT (`direct: true`): the block
# size constraints say 4096, aligned I/O goes through the page cache
# nowhere, data round-trips, and a misaligned request gets EINVAL while
# the connection stays up.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires losetup nbdinfo nbdcopy

[ "$(id -u)" = 0 ] || { echo "$0: SKIP: loop devices need root"; exit 77; }
file=$scratch/disk.raw
truncate -s 64M "$file"
dev=$(losetup --find --show "$file" 2>/dev/null) ||
    { echo "$0: SKIP: this kernel gives no loop device"; exit 77; }
cleanup_fn "losetup -d '$dev'"

srv_start
srv_export dev "$dev" "direct: true" "format: raw"
info=$(nbdinfo --json "$(srv_uri dev)")
"$PYTHON" -c '
import json, sys
e = json.loads(sys.argv[1])["exports"][0]
assert e["export-size"] == 64 << 20, e
assert e["block_size_minimum"] == 4096, e
' "$info" || fail "block device export: $info"

head -c 64M /dev/urandom > "$scratch/data.bin"
must nbdcopy "$scratch/data.bin" "$(srv_uri dev)"
must nbdcopy "$(srv_unix_uri dev)" "$scratch/back.bin"
cmp "$scratch/data.bin" "$scratch/back.bin" || fail "round trip through $dev"
cmp "$scratch/data.bin" "$file" || fail "the file behind $dev differs"

# Misaligned: EINVAL, and the same connection still reads.
"$PYTHON" - "$(srv_uri dev)" <<'PY' || fail "misaligned request handling"
import sys, nbd
h = nbd.NBD()
h.set_strict_mode(0)
h.connect_uri(sys.argv[1])
try:
    h.pread(100, 1)
    sys.exit("a misaligned read succeeded")
except nbd.Error as e:
    assert "EINVAL" in str(e), e
assert len(h.pread(4096, 4096)) == 4096
h.shutdown()
PY
srv_stop
