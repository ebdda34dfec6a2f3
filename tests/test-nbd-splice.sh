#!/bin/bash
# Large reads of raw images in memory (tmpfs, ramfs) are spliced from
# the file to the socket (server/reply-splice.c). Every byte must come
# back as the file holds it: reads of many sizes around the splice
# threshold and the pipe's size, across holes (structured replies cut
# them into data and hole chunks) and without structured replies, many
# in flight at once, over the unix socket and TCP; the same from a copy
# on disk (not spliced: read with O_DIRECT); and again when the file
# refuses splice (the test knob SENDENSE_NBD_TEST_SPLICE_FAILS), where
# the data is read and sent the ordinary way.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires nbdcopy

mem=$scratch/mem
mkdir -p "$mem"
if ! mount -t tmpfs -o size=64m sendense-splice "$mem" 2>"$scratch/mount.err"; then
    echo "$0: SKIP: cannot mount a tmpfs: $(cat "$scratch/mount.err")"
    exit 77
fi
cleanup_fn "! mountpoint -q '$mem' || umount -l '$mem'"

# 24 MiB: random data with holes punched at 1 MiB, 5 MiB + 4 KiB and in
# the last 3 MiB, so reads start, end and straddle inside them.
img=$mem/disk.raw
head -c 24M /dev/urandom > "$img"
fallocate -p -o 1M -l 1M "$img"
fallocate -p -o $(( 5 * 1048576 + 4096 )) -l 2M "$img"
fallocate -p -o 21M -l 3M "$img"
cp --sparse=always "$img" "$scratch/disk.raw"

check_reads() {  # check_reads URI LABEL PIPES(yes|no)
    PYTHONPATH=$top_srcdir/tests/tools \
    "$PYTHON" - "$1" "$img" "$2" "$SRV_PID" "$3" <<'PY' || fail "$2: reads differ from the file"
import os, random, sys, nbd
from reads_in_flight import read_and_check
uri, path, label, pid, pipes = sys.argv[1:6]
want = open(path, "rb").read()

def server_pipes():
    fds = os.listdir(f"/proc/{pid}/fd")
    return sum(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:")
               for fd in fds if os.path.exists(f"/proc/{pid}/fd/{fd}"))

base = server_pipes()
for structured in (True, False):
    h = nbd.NBD()
    h.set_request_structured_replies(structured)
    h.connect_uri(uri)
    rng = random.Random(11)
    sizes = [65535, 65536, 65537, 200000, 262144, 1 << 20, (1 << 20) + 512,
             3 << 20, 4096]
    ranges = []
    for i in range(300):
        n = rng.choice(sizes)
        off = rng.randrange(0, len(want) - n)
        if i % 3 == 0:      # around a hole's edge
            edge = rng.choice([1 << 20, 2 << 20, 5 * 1048576 + 4096,
                               21 << 20])
            off = max(0, min(len(want) - n, edge - rng.randrange(0, n)))
        ranges.append((off, n))
    read_and_check(h, want, ranges, 16, f"{label} structured={structured}")
    # The whole image in one read, larger than the pipe.
    assert h.pread(len(want), 0) == want, f"{label}: whole image"
    # Spliced replies went through a pipe of this connection's.
    made = server_pipes() - base
    assert made == (2 if pipes == "yes" else 0), \
        f"{label}: {made} pipe ends, splicing expected: {pipes}"
    h.shutdown()
PY
}

copy_back() {  # copy_back URI LABEL: nbdcopy's many connections
    must nbdcopy -C 4 "$1" "$scratch/back.raw"
    cmp "$img" "$scratch/back.raw" || fail "$2: nbdcopy read differs"
    rm -f "$scratch/back.raw"
}

srv_start
srv_export raw "$img"
srv_export ondisk "$scratch/disk.raw"
check_reads "$(srv_unix_uri raw)" "unix" yes
check_reads "$(srv_uri raw)" "tcp" yes
check_reads "$(srv_unix_uri ondisk)" "disk" no
copy_back "$(srv_unix_uri raw)" "unix"
# The pipe's pages left no trace: the export still reads and writes.
"$PYTHON" - "$(srv_unix_uri raw)" <<'PY' || fail "write then spliced read"
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b"\x5a" * 300000, 1 << 20)       # into the first hole
assert h.pread(300000, 1 << 20) == b"\x5a" * 300000
h.pwrite(bytes(300000), 1 << 20)
h.shutdown()
PY
grep -q "splice from the image failed" "$SRV_LOG" &&
    fail "splice was refused: $(grep splice "$SRV_LOG")"
srv_stop

export SENDENSE_NBD_TEST_SPLICE_FAILS=1
srv_start
unset SENDENSE_NBD_TEST_SPLICE_FAILS
srv_export raw "$img"
check_reads "$(srv_unix_uri raw)" "fallback" yes
copy_back "$(srv_unix_uri raw)" "fallback"
grep -q "splice from the image failed" "$SRV_LOG" ||
    fail "the fallback was not taken"
srv_stop
echo "splice: all checks passed"
