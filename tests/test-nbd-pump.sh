#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The benchmark's NBD ceiling (bench/nbd-pump) speaks the protocol its
# clients negotiate: in both of its loops, with and without structured
# replies, libnbd reads back what the file holds and what it wrote, and
# a failed read is an error reply after which the connection still
# serves; and nbdcopy's window of 64 reads of 256 KiB, twice what the
# plain loop holds of replies, is read whole (it used to wait forever).
# A ceiling that answered wrongly would measure nothing.
. "${top_srcdir:-..}/tests/functions.sh"

# libnbd's binding is for the system's python.
PYTHON=${PYTHON:-/usr/bin/python3}

"$PYTHON" -c 'import nbd' 2>/dev/null || requires python3-libnbd
pump=$top_builddir/bench/nbd-pump
[ -x "$pump" ] || fail "no $pump (build first)"

head -c $((32 << 20)) /dev/urandom > "$scratch/disk.raw" || fail "no test file"
pump_pid=
cleanup_fn 'kill $pump_pid 2>/dev/null; wait $pump_pid 2>/dev/null'

check_mode() {  # check_mode EXPECT_STRUCTURED PUMP_FLAGS...
    local expect=$1 sock=$scratch/pump.sock
    shift
    rm -f "$sock"
    "$pump" "$@" "unix:$sock" "$scratch/disk.raw" > "$scratch/pump.log" 2>&1 &
    pump_pid=$!
    for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.02; done
    [ -S "$sock" ] || fail "nbd-pump $* did not listen: $(cat "$scratch/pump.log")"
    "$PYTHON" - "$sock" "$scratch/disk.raw" "$expect" <<'EOF' ||
import random, sys
import nbd

sock, path, expect = sys.argv[1], sys.argv[2], sys.argv[3] == "yes"
h = nbd.NBD()
h.connect_unix(sock)
assert h.get_structured_replies_negotiated() == expect, "structured replies"
size = h.get_size()
with open(path, "rb") as f:
    disk = f.read()
rnd = random.Random(7)
for _ in range(200):
    n = rnd.choice([512, 4096, 65536, 262144])
    off = rnd.randrange(0, size - n)
    assert h.pread(n, off) == disk[off:off + n], "read at %d+%d" % (off, n)
data = bytes(rnd.getrandbits(8) for _ in range(8192))
h.pwrite(data, 12288)
h.flush()
assert h.pread(8192, 12288) == data, "read after write"
h.set_strict_mode(0)          # let the read past the end reach the server
try:
    h.pread(4096, size - 100)
    raise SystemExit("a read past the end succeeded")
except nbd.Error as e:
    assert e.errno == "EIO", "read past the end: %s" % e
assert h.pread(512, 12288) == data[:512], "read after the error"
h.shutdown()
EOF
        fail "nbd-pump $* answered wrongly"
    timeout 60 nbdcopy -C 1 --requests=64 --request-size=262144 \
        "nbd+unix:///?socket=$sock" "$scratch/copy.raw" ||
        fail "nbd-pump $*: nbdcopy's 64 x 256 KiB window did not read back"
    cmp "$scratch/disk.raw" "$scratch/copy.raw" ||
        fail "nbd-pump $*: nbdcopy read other bytes than the file holds"
    rm -f "$scratch/copy.raw"
    kill "$pump_pid"
    wait "$pump_pid" 2>/dev/null
    pump_pid=
}

check_mode no
check_mode yes --structured
check_mode no --ring
check_mode yes --ring --structured
echo "nbd-pump: 4 modes served libnbd correctly"
