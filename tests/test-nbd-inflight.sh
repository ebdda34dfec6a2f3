#!/bin/bash
# One connection keeps at least 32 requests in flight in the server, and
# replies come back out of order; overlapping writes still apply in the
# order they arrived. The server's test hook delays each
# request by a varied amount (SENDENSE_NBD_TEST_DELAY_US), standing in
# for a slow backend.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires nbdsh

export SENDENSE_NBD_TEST_DELAY_US=20000
srv_start
unset SENDENSE_NBD_TEST_DELAY_US

truncate -s 64M "$scratch/disk.raw"
must "$SENDENSE_IMG" create -f qcow2 "$scratch/disk.qcow2" 64M
srv_export raw "$scratch/disk.raw"
srv_export qcow2 "$scratch/disk.qcow2"

for name in raw qcow2; do
    for uri in "$(srv_uri $name)" "$(srv_unix_uri $name)"; do
        out=$($PYTHON "$top_srcdir/tests/tools/inflight-check.py" "$uri" \
              "$SRV_CTL" 64) || fail "$uri: $out"
        echo "$uri: $out"
    done
done
for name in raw qcow2; do
    out=$($PYTHON "$top_srcdir/tests/tools/order-check.py" "$(srv_uri $name)" 200) ||
        fail "$name: overlapping writes out of order: $out"
    echo "$name: $out"
done
srv_stop
