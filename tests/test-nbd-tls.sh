#!/bin/bash
# TLS with real GnuTLS clients (libnbd's nbdinfo/nbdcopy, qemu-img and
# qemu-io): X.509 with client certificates, PSK, modes optional and
# required, and per-export `tls: required`.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires nbdinfo nbdcopy qemu-img qemu-io openssl

creds=$scratch/creds
bash "$top_srcdir/tests/tls-creds.sh" "$creds" || fail "making credentials"

head -c 16M /dev/urandom > "$scratch/data.bin"
truncate -s 16M "$scratch/disk.raw"
must "$SENDENSE_IMG" create -q -f qcow2 "$scratch/disk.qcow2" 16M
truncate -s 1M "$scratch/secret.raw"

x509_uri() { echo "nbds://127.0.0.1:$SRV_PORT/$1?tls-certificates=$creds/client"; }
psk_uri() { echo "nbds://alice@127.0.0.1:$SRV_PORT/$1?tls-psk-file=$creds/keys.psk"; }
qemu_x509() {
    echo "--object tls-creds-x509,id=tls0,dir=$creds/$2,endpoint=client" \
         "--image-opts driver=nbd,host=127.0.0.1,port=$SRV_PORT,export=$1,tls-creds=tls0"
}
qemu_psk() {
    echo "--object tls-creds-psk,id=tls0,dir=$creds/psk,username=alice,endpoint=client" \
         "--image-opts driver=nbd,host=127.0.0.1,port=$SRV_PORT,export=$1,tls-creds=tls0"
}

# --- mode required, X.509 with client certificates, and PSK ---------------
srv_start "workers: 2" "tls:" "  mode: required" "  cert: $creds/server-cert.pem" \
    "  key: $creds/server-key.pem" "  ca: $creds/ca-cert.pem" \
    "  psk_file: $creds/keys.psk"
srv_export raw "$scratch/disk.raw"
srv_export qcow2 "$scratch/disk.qcow2"

for name in raw qcow2; do
    must nbdcopy "$scratch/data.bin" "$(x509_uri $name)"
    nbdcopy "$(psk_uri $name)" "$scratch/back.bin" || fail "$name: PSK read"
    cmp "$scratch/data.bin" "$scratch/back.bin" || fail "$name: X.509 write, PSK read differ"
    # shellcheck disable=SC2046
    out=$(qemu-io $(qemu_x509 $name client) -c 'write -P 0x3c 1M 64k' \
          -c 'read -P 0x3c 1M 64k' 2>&1) || fail "$name: qemu-io x509: $out"
    # shellcheck disable=SC2046
    out=$(qemu-io $(qemu_psk $name) -c 'read -P 0x3c 1M 64k' 2>&1) ||
        fail "$name: qemu-io psk: $out"
    # shellcheck disable=SC2046
    qemu-img info $(qemu_x509 $name client) > "$scratch/info.txt" 2>&1 ||
        { cat "$scratch/info.txt" >&2; fail "$name: qemu-img info over TLS"; }
    grep -q "virtual size: 16 MiB" "$scratch/info.txt" || fail "$name: qemu-img info size"
done

# Four TLS connections to one image spread evenly over both workers:
# their encryption is the work (server/conn.c), and the image's I/O is
# handed to its owner and back. The check opens them one after another,
# each serving before the next, so the count is exact; a connection
# counted against the worker it made its handshake on gave "1 3".
out=$(PYTHONPATH=$top_srcdir/tests/tools "$PYTHON" \
      "$top_srcdir/tests/tools/placement-check.py" "$(x509_uri raw)" "$SRV_CTL" 4) ||
    fail "placement check: $out"
[ "$out" = "2 2" ] ||
    fail "four TLS connections of one image not spread evenly over both workers: $out"
echo "TLS connections per worker: $out"

# Many reads in flight at once, of every size around a record's (16 KiB)
# and spanning a hole: the server gathers reply headers and small reads
# into shared records, and splits large ones; every byte must come back.
PYTHONPATH=$top_srcdir/tests/tools \
"$PYTHON" - "$(x509_uri raw)" "$scratch/data.bin" <<'PY' || fail "reads in flight over TLS"
import random, sys, nbd
from reads_in_flight import read_and_check
uri, path = sys.argv[1], sys.argv[2]
exp = bytearray(open(path, "rb").read())
exp[1 << 20:(1 << 20) + 65536] = b"\x3c" * 65536
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(uri)
h.zero(1 << 20, 4 << 20)                  # may unmap: a hole on raw
exp[4 << 20:5 << 20] = bytes(1 << 20)
rng = random.Random(7)
sizes = [1, 16, 512, 4096, 4097, 16368, 16384, 16400, 65536, 200000, 300000]
ranges = []
for i in range(400):
    n = rng.choice(sizes)
    off = rng.randrange(0, len(exp) - n)
    if i % 4 == 0:                          # across the hole's start
        off = (4 << 20) - rng.randrange(0, n)
    ranges.append((off, n))
read_and_check(h, exp, ranges, 64, "TLS")
h.shutdown()
PY

# A TLS connection ends with close_notify, after DISC and after ABORT:
# without it a client cannot tell the end from a cut connection (libnbd's
# nbd_shutdown then fails now and then with "server closed socket
# unexpectedly"). Python's ssl raises SSLEOFError on a close that has
# none, once ragged EOFs are not suppressed and OpenSSL does not ignore
# them (Debian's python sets OP_IGNORE_UNEXPECTED_EOF by default).
"$PYTHON" - "$SRV_PORT" "$creds" "$top_srcdir/tests/tools" <<'PY' ||
import importlib, ssl, sys
port, creds = int(sys.argv[1]), sys.argv[2]
sys.path.insert(0, sys.argv[3])
raw = importlib.import_module("proto-raw")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(creds + "/ca-cert.pem")
ctx.load_cert_chain(creds + "/client-cert.pem", creds + "/client-key.pem")
ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF

def tls_client():
    c = raw.RawNBD({"port": port}).start()
    raw.check(c.option(raw.OPT_STARTTLS)[-1][0] == raw.REP_ACK,
              "STARTTLS refused")
    c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost",
                             suppress_ragged_eofs=False)
    return c

def ends_with_close_notify(c, after):
    try:
        rest = c.sock.recv(4096)
    except ssl.SSLEOFError as e:
        raise raw.ProtoError("no close_notify after %s: %s" % (after, e))
    raw.check(rest == b"", "bytes after %s: %r" % (after, rest))

for _ in range(20):
    c = tls_client()
    c.go("raw")
    c.request(raw.CMD_WRITE, 0, 4096, data=b"\x5a" * 4096)
    c.request(raw.CMD_DISC)
    raw.check(c.read_reply().error == 0, "write before DISC failed")
    ends_with_close_notify(c, "DISC")
    c.close()
c = tls_client()
c.send_option(raw.OPT_ABORT)
raw.check(c.read_option_reply(raw.OPT_ABORT)[0] == raw.REP_ACK, "ABORT")
ends_with_close_notify(c, "ABORT")
PY
    fail "TLS close without close_notify"

# Plain clients are refused in mode required (the option haggling says
# TLS is required; nothing is served).
if nbdinfo --size "$(srv_uri raw)" > "$scratch/plain.txt" 2>&1; then
    fail "a plain client was served in mode required"
fi
grep -qi "tls" "$scratch/plain.txt" || fail "no TLS hint: $(cat "$scratch/plain.txt")"

# A client certificate from another CA is refused; the server keeps serving.
if nbdinfo --size "nbds://127.0.0.1:$SRV_PORT/raw?tls-certificates=$creds/other" \
       > "$scratch/other.txt" 2>&1; then
    fail "a client certificate from another CA was accepted"
fi
# A wrong PSK is refused.
printf 'alice:%s\n' "$(openssl rand -hex 32)" > "$scratch/wrong.psk"
if nbdinfo --size "nbds://alice@127.0.0.1:$SRV_PORT/raw?tls-psk-file=$scratch/wrong.psk" \
       > "$scratch/wrong.txt" 2>&1; then
    fail "a wrong PSK was accepted"
fi
[ "$(nbdinfo --size "$(x509_uri raw)")" = 16777216 ] || fail "server stopped serving"
grep -q "TLS handshake failed" "$SRV_LOG" || fail "refusals not logged"
srv_rpc connection.list > /dev/null
srv_stop

# --- mode optional and per-export tls: required ------------------------------
srv_start "tls:" "  mode: optional" "  cert: $creds/server-cert.pem" \
    "  key: $creds/server-key.pem"
srv_export open "$scratch/disk.raw"
srv_export secret "$scratch/secret.raw" "tls: required"
[ "$(nbdinfo --size "$(srv_uri open)")" = 16777216 ] || fail "optional: plain client refused"
[ "$(nbdinfo --size "nbds://127.0.0.1:$SRV_PORT/open?tls-certificates=$creds/client")" = 16777216 ] ||
    fail "optional: TLS client refused"
if nbdinfo --size "$(srv_uri secret)" > "$scratch/secret.txt" 2>&1; then
    fail "tls: required export served without TLS"
fi
[ "$(nbdinfo --size "nbds://127.0.0.1:$SRV_PORT/secret?tls-certificates=$creds/client")" = 1048576 ] ||
    fail "tls: required export refused over TLS"
# connection.list shows TLS connections as such.
"$PYTHON" - "$SRV_CTL" "nbds://127.0.0.1:$SRV_PORT/secret?tls-certificates=$creds/client" \
    "$top_srcdir/tests/tools" <<'PY' || fail "connection.list does not show TLS"
import sys
sys.path.insert(0, sys.argv[3])
import importlib, nbd
rpc = importlib.import_module("nbd-rpc")
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[2])
conns = rpc.call(sys.argv[1], "connection.list")["result"]["connections"]
mine = [c for c in conns if c.get("export") == "secret"]
assert mine and all(c["tls"] for c in mine), conns
h.shutdown()
PY
srv_stop
echo "tls: all checks passed"
