#!/bin/bash
# sendense-capture copy from qcow2 files (read through our image library)
# and --verify (docs/SENDENSE-CAPTURE.md), into sendense-nbd exports.
#
#  1. A qcow2 v3 chain as the source: a base made by qemu-img convert -c
#     (compressed clusters, and random data qemu stores uncompressed) and
#     an overlay with data, zero clusters over the base's data and over
#     unallocated ranges (qemu-io write -z). Into a fresh export with
#     --target-is-zero: the export reads as the chain (qemu-img compare);
#     the bytes read, and the server's bytes written, are exactly the
#     chain's data per qemu-img map: zero clusters and unallocated ranges
#     are never read. Into a raw export of garbage with --verify: the zeros
#     are sent as WRITE ZEROES and everything written and zeroed verifies.
#     An image qemu-nbd has open for writing is refused (reader locks).
#  2. The same with a v2 (compat=0.10) chain.
#  3. Corrupt qcow2 sources: a bad header (refused at open), an L2 entry
#     past the end of the file (found by the map), a compressed cluster
#     whose stream is garbage (found by a worker's read): exit 1, one
#     line, no summary. --bitmap with a qcow2 file is refused.
#  4. --verify against a lying target: an nbdkit sh plugin that keeps its
#     disk in a file. Honest, the copy verifies and the file equals the
#     source. Then it flips one byte of one write, or drops one WRITE
#     ZEROES, and acknowledges as usual: --verify exits 1 naming the first
#     differing offset (the one the plugin logged), with no summary.
# qemu-img, qemu-io, qemu-nbd and nbdkit are oracles and fixtures only.

srcdir=${srcdir:-$(dirname "$0")}
. "$srcdir/functions.sh"
. "$srcdir/server-lib.sh"

requires qemu-img qemu-io qemu-nbd nbdkit od
. "$top_srcdir/tests/capture-lib.sh"
nbdkit sh --version > /dev/null 2>&1 || { echo "$0: SKIP: nbdkit has no sh plugin"; exit 77; }

M=$((1 << 20))
K=1024
SIZE=$((64 * M))

# capture_fails ARGS...: exit 1, one "sendense-capture: ..." line on
# stderr (left in $scratch/fail.err), no summary.
capture_fails() {
    local rc=0
    "$SENDENSE_CAPTURE" copy --json "$@" > "$scratch/fail.out" 2> "$scratch/fail.raw" || rc=$?
    our_stderr "$scratch/fail.raw" > "$scratch/fail.err"
    [ "$rc" = 1 ] || { cat "$scratch/fail.raw" >&2; fail "expected exit 1, got $rc: copy $*"; }
    if [ "$(wc -l < "$scratch/fail.err")" != 1 ] || ! grep -q '^sendense-capture: .' "$scratch/fail.err"; then
        cat "$scratch/fail.raw" >&2
        fail "expected one 'sendense-capture: ...' line: copy $*"
    fi
    ! grep -q '"summary"' "$scratch/fail.out" || fail "a failed copy printed a summary: $*"
    echo "   $(cat "$scratch/fail.err")"
}

fail_says() {           # TEXT: the last failure's line contains it
    grep -qF -- "$1" "$scratch/fail.err" || fail "expected '$1' in: $(cat "$scratch/fail.err")"
}

# data_bytes IMG: bytes of the chain that read as data (qemu-img map).
data_bytes() {
    qemu-img map --output=json "$1" | "$PYTHON" -c '
import json, sys
print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))'
}

# compressed_bytes IMG: bytes of compressed clusters (our map marks them).
compressed_bytes() {
    "$SENDENSE_IMG" map --json "$1" | "$PYTHON" -c '
import json, sys
print(sum(e["length"] for e in json.load(sys.stdin) if e.get("compressed")))'
}

same() {                # A B: qemu-img compare, byte for byte
    local out
    out=$(qemu-img compare "$1" "$2" 2>&1) || { echo "$out" >&2; fail "$1 differs from $2"; }
}

garbage() {             # FILE: SIZE bytes of 0xff (no byte reads as zero)
    head -c $SIZE /dev/zero | tr '\0' '\377' > "$1" || fail "cannot make $1"
}

img=$scratch/img
mkdir -p "$img"

# make_chain DIR COMPAT: base.qcow2 (convert -c) and top.qcow2 over it.
make_chain() {
    local d=$1 compat=$2
    mkdir -p "$d"
    must truncate -s $SIZE "$d/base.raw"
    # Random (stored uncompressed by convert -c), then patterns (compressed),
    # and the last MiB.
    must dd if=/dev/urandom of="$d/base.raw" bs=1M count=4 conv=notrunc status=none
    must qemu-io -f raw -c "write -P 0x5a 4M 4M" -c "write -P 0x6b 16M 4M" "$d/base.raw"
    must dd if=/dev/urandom of="$d/base.raw" bs=1M seek=63 count=1 conv=notrunc status=none
    must qemu-img convert -c -f raw -O qcow2 -o compat=$compat "$d/base.raw" "$d/base.qcow2"
    must qemu-img create -f qcow2 -o compat=$compat -b base.qcow2 -F qcow2 "$d/top.qcow2" $SIZE
    # Data over random data and over a hole; zeros over compressed data,
    # over a hole and over random data (v2 has no zero clusters: qemu
    # writes zeros there, which is data).
    must qemu-io -f qcow2 -c "write -P 0x77 2M 1M" -c "write -P 0x88 40M 2M" \
        -c "write -z 5M 1M" -c "write -z 30M 1M" -c "write -z 1M 64k" "$d/top.qcow2"
}

# copy_chain NAME TOP ZEROS_IN_DATA: the copies of section 1, for the
# chain whose top image is TOP. ZEROS_IN_DATA: yes when some data
# clusters hold zeros (v2 has no zero clusters: qemu-io write -z writes
# zeros as data), which the copy may send as zeros, or not at all on a
# target that reads as zeros, instead of as data.
copy_chain() {
    local name=$1 top=$2 zeros_in_data=$3 data
    data=$(data_bytes "$top")
    [ "$(compressed_bytes "$top")" -gt 0 ] || fail "$top has no compressed cluster"

    must "$SENDENSE_IMG" create -f qcow2 "$img/$name.qcow2" $SIZE
    srv_export "$name" "$img/$name.qcow2" "format: qcow2"
    capture --target-is-zero "$top" "$(srv_unix_uri "$name")"
    must_equal "$name: bytes read" "$(summary read)" "$data"
    if [ "$zeros_in_data" = no ]; then
        must_equal "$name: bytes written" "$(summary written)" "$data"
        must_equal "$name: bytes skipped" "$(summary skipped)" $((SIZE - data))
    else
        [ "$(summary written)" -le "$data" ] ||
            fail "$name: wrote $(summary written) bytes, more than the $data of data"
    fi
    must_equal "$name: bytes handled" \
        $(($(summary written) + $(summary zeroed) + $(summary skipped))) $SIZE
    must_equal "$name: bytes verified (no --verify)" "$(summary verified)" 0
    must_equal "$name: server bytes.write" "$(stat_of "$name" bytes write)" \
        "$(summary written)"
    same "$top" "$(srv_unix_uri "$name")"

    garbage "$img/$name-garbage.raw"
    srv_export "$name-garbage" "$img/$name-garbage.raw" "format: raw"
    capture --verify --connections 2 --request-size 1M "$top" "$(srv_uri "$name-garbage")"
    must_equal "$name-garbage: bytes read" "$(summary read)" "$data"
    if [ "$zeros_in_data" = no ]; then
        must_equal "$name-garbage: bytes zeroed" "$(summary zeroed)" $((SIZE - data))
    fi
    # Nothing skipped on a target of garbage: all of it is verified.
    must_equal "$name-garbage: bytes written and zeroed" \
        $(($(summary written) + $(summary zeroed))) $SIZE
    must_equal "$name-garbage: bytes verified" "$(summary verified)" $SIZE
    must_equal "$name-garbage: server bytes.zero" "$(stat_of "$name-garbage" bytes zero)" \
        "$(summary zeroed)"
    same "$top" "$(srv_unix_uri "$name-garbage")"
}

srv_start

# --- 1. a qcow2 v3 chain ---

echo "1. qcow2 v3 chain as the source"
make_chain "$img/v3" 1.1
copy_chain v3 "$img/v3/top.qcow2" no
echo "   read $(summary read) of $SIZE bytes, verified $(summary verified)"

# Another process writing the image: our reader locks refuse it.
qsock=$scratch/qemu-nbd.sock
qemu-nbd -f qcow2 -k "$qsock" -t "$img/v3/top.qcow2" > "$scratch/qemu-nbd.log" 2>&1 &
QNBD_PID=$!
cleanup_fn 'kill $QNBD_PID 2>/dev/null; wait $QNBD_PID 2>/dev/null'
for i in $(seq 1 200); do [ -S "$qsock" ] && break; sleep 0.05; done
[ -S "$qsock" ] || { cat "$scratch/qemu-nbd.log" >&2; fail "qemu-nbd did not start"; }
capture_fails "$img/v3/top.qcow2" "$(srv_unix_uri v3)"
fail_says "top.qcow2"
kill $QNBD_PID; wait $QNBD_PID 2>/dev/null

# --- 2. a qcow2 v2 chain ---

echo "2. qcow2 v2 (compat=0.10) chain as the source"
make_chain "$img/v2" 0.10
qemu-img info "$img/v2/top.qcow2" | grep -q "compat: 0.10" || fail "v2/top.qcow2 is not v2"
copy_chain v2 "$img/v2/top.qcow2" yes

# --- 3. corrupt qcow2 sources ---

echo "3. corrupt qcow2 sources"
# patch_qcow2 IMG WHAT: damage IMG with Python (big-endian header fields).
patch_qcow2() {
    "$PYTHON" - "$1" "$2" <<'EOF' || fail "cannot patch $1"
import struct, sys
path, what = sys.argv[1], sys.argv[2]
with open(path, "r+b") as f:
    def u64(off):
        f.seek(off)
        return struct.unpack(">Q", f.read(8))[0]
    if what == "cluster_bits":
        f.seek(20)
        f.write(struct.pack(">I", 40))
        sys.exit(0)
    cluster_bits = struct.unpack(">I", (f.seek(20), f.read(4))[1])[0]
    l2 = u64(u64(40)) & ((1 << 56) - 1) & ~511
    if what == "l2_past_eof":
        # The third cluster's L2 entry: data far past the end.
        f.seek(l2 + 8 * 2)
        f.write(struct.pack(">Q", (1 << 63) | (1 << 40)))
    elif what == "compressed_garbage":
        # The first compressed cluster of the first L2 table: garbage stream.
        for i in range(1 << (cluster_bits - 3)):
            e = u64(l2 + 8 * i)
            if e & (1 << 62):
                f.seek(e & ((1 << (62 - (cluster_bits - 8))) - 1))
                f.write(b"\xff" * 512)
                sys.exit(0)
        sys.exit("no compressed cluster")
EOF
}
must "$SENDENSE_IMG" create -f qcow2 "$img/bad.qcow2" $SIZE
srv_export bad "$img/bad.qcow2" "format: qcow2"
# Beside the chain's base (top.qcow2 names it relative to its folder).
cp "$img/v3/top.qcow2" "$img/v3/hdr.qcow2" && patch_qcow2 "$img/v3/hdr.qcow2" cluster_bits
capture_fails "$img/v3/hdr.qcow2" "$(srv_unix_uri bad)"
fail_says "hdr.qcow2"
fail_says "cluster_bits"
cp "$img/v3/top.qcow2" "$img/v3/l2.qcow2" && patch_qcow2 "$img/v3/l2.qcow2" l2_past_eof
capture_fails "$img/v3/l2.qcow2" "$(srv_unix_uri bad)"
fail_says "l2.qcow2"
fail_says "corrupt"
# The base is read by the copy's workers; its garbage stream fails there.
mkdir -p "$img/cg"
cp "$img/v3/base.qcow2" "$img/cg/base.qcow2" && cp "$img/v3/top.qcow2" "$img/cg/top.qcow2"
patch_qcow2 "$img/cg/base.qcow2" compressed_garbage
capture_fails "$img/cg/top.qcow2" "$(srv_unix_uri bad)"
fail_says "read at"
capture_fails --bitmap b0 "$img/v3/top.qcow2" "$(srv_unix_uri bad)"
fail_says "--bitmap needs an NBD source"
srv_stop

# --- 4. --verify against a lying target ---

echo "4. --verify against a lying target"
# The plugin's disk is $LIE_FILE. LIE_WRITE_AT: the write covering that
# offset has that byte flipped; LIE_ZERO_AT: the WRITE ZEROES covering it
# is not done. Either is acknowledged and logged in $LIE_LOG.
cat > "$scratch/liar.sh" <<'EOF'
#!/bin/bash
covers() { [ -n "$1" ] && [ "$3" -le "$1" ] && [ "$1" -lt $(($3 + $2)) ]; }
case "$1" in
get_size) stat -c %s "$LIE_FILE" ;;
can_write|can_flush|can_zero) exit 0 ;;
can_multi_conn) exit 3 ;;
flush) exit 0 ;;
pread)
    dd if="$LIE_FILE" bs=64K skip="$4" count="$3" iflag=skip_bytes,count_bytes,fullblock \
        status=none ;;
pwrite)
    dd of="$LIE_FILE" bs=64K seek="$4" oflag=seek_bytes iflag=fullblock conv=notrunc \
        status=none || exit 1
    if covers "${LIE_WRITE_AT:-}" "$3" "$4"; then
        b=$(dd if="$LIE_FILE" bs=1 skip="$LIE_WRITE_AT" count=1 status=none | od -An -tu1)
        printf "\\$(printf %03o $((b ^ 255)))" |
            dd of="$LIE_FILE" bs=1 seek="$LIE_WRITE_AT" conv=notrunc status=none
        echo "flipped $LIE_WRITE_AT" >> "$LIE_LOG"
    fi ;;
zero)
    if covers "${LIE_ZERO_AT:-}" "$3" "$4"; then
        echo "dropped $4" >> "$LIE_LOG"
        exit 0
    fi
    dd if=/dev/zero of="$LIE_FILE" bs=64K seek="$4" count="$3" oflag=seek_bytes \
        iflag=count_bytes conv=notrunc status=none ;;
*) exit 2 ;;
esac
EOF
chmod +x "$scratch/liar.sh"
lsock=$scratch/liar.sock
export LIE_FILE=$img/liar.raw LIE_LOG=$scratch/liar.log LIE_WRITE_AT LIE_ZERO_AT

# liar WRITE_AT ZERO_AT: a fresh garbage disk behind the plugin.
liar() {
    [ -z "${LIAR_PID:-}" ] || { kill $LIAR_PID; wait $LIAR_PID 2>/dev/null; }
    LIE_WRITE_AT=$1 LIE_ZERO_AT=$2
    garbage "$LIE_FILE"
    : > "$LIE_LOG"
    rm -f "$lsock"
    nbdkit -f -U "$lsock" sh "$scratch/liar.sh" > "$scratch/nbdkit.log" 2>&1 &
    LIAR_PID=$!
    for i in $(seq 1 200); do [ -S "$lsock" ] && break; sleep 0.05; done
    [ -S "$lsock" ] || { cat "$scratch/nbdkit.log" >&2; fail "nbdkit did not start"; }
}
cleanup_fn 'kill $LIAR_PID 2>/dev/null; wait $LIAR_PID 2>/dev/null'
luri="nbd+unix:///?socket=$lsock"
top=$img/v3/top.qcow2

liar "" ""
capture --verify "$top" "$luri"
must_equal "honest: bytes verified" "$(summary verified)" $((SIZE))
[ ! -s "$LIE_LOG" ] || fail "the honest plugin lied: $(cat "$LIE_LOG")"
same "$top" "$LIE_FILE"

# A byte of the 0x5a pattern at 4 MiB (a compressed cluster of the base).
liar $((4 * M + 12345)) ""
capture_fails --verify "$top" "$luri"
must_equal "the plugin's lie" "$(cat "$LIE_LOG")" "flipped $((4 * M + 12345))"
fail_says "differs from the source at byte $((4 * M + 12345))"

# The zero cluster at 30 MiB lies in one zero request: dropped, its first
# byte is the first difference (the garbage is 0xff).
liar "" $((30 * M + 100))
capture_fails --verify "$top" "$luri"
grep -q '^dropped [0-9]*$' "$LIE_LOG" || fail "the plugin did not lie: $(cat "$LIE_LOG")"
fail_says "differs from the source at byte $(sed 's/dropped //' "$LIE_LOG")"
fail_says "should read as zeros"
echo "PASS"
