#!/bin/bash
# sendense-nbd as independent NBD clients see it: libnbd's nbdinfo, nbdcopy
# and nbdsh, qemu-io and qemu-img's NBD driver, and fio's nbd engine, over
# TCP and the unix socket.
#
# Exports: a raw file, a new qcow2 image (sendense-img create), an
# extended-L2 incremental over a qcow2 backing file with known data, a
# read-only raw file, and a 256 MiB raw file for one large WRITE_ZEROES.
#
#  1. Listing and flags (nbdinfo --list), base:allocation and
#     qemu:allocation-depth maps of the incremental (nbdinfo --map).
#  2. qemu-io: patterns, zeroes (with and without unmap), FUA, flush,
#     many aio writes in flight, discard, unaligned writes; the same
#     commands run on a local raw "model" file, and the export must read
#     exactly as the model (qemu-img compare, and qemu-img convert of the
#     export to qcow2). Then the server stops and qemu-img checks the
#     qcow2 images and compares them (the incremental as a chain) with
#     the models.
#  3. nbdcopy of random data in and out, one and four connections, TCP
#     and unix; sha256 both ways; after a stop, qemu-img check/compare.
#     Four connections to one image are all served by its worker.
#  4. fio's nbd engine, random 4k and sequential 1M writes verified by
#     crc32c.
#  5. The read-only export: reads work, writes are refused with EPERM.
#  6. WRITE_ZEROES of 200 MiB in one request zeroes all of it.
# After each group export.stats must count at least what was sent.

srcdir=${srcdir:-$(dirname "$0")}
. "$srcdir/functions.sh"
. "$srcdir/server-lib.sh"

requires nbdinfo nbdcopy nbdsh qemu-io qemu-img fio sha256sum
fio --enghelp=nbd >/dev/null 2>&1 || { echo "$0: SKIP: fio has no nbd engine"; exit 77; }


# nbdsh runs "python3 -m nbd": give it a python3 that has the libnbd
# module (a python3 earlier in PATH, e.g. pyenv's, may not).
for py in python3 /usr/bin/python3; do
    if "$py" -c 'import nbd' 2>/dev/null; then
        mkdir -p "$scratch/bin"
        ln -sf "$(command -v "$py")" "$scratch/bin/python3"
        break
    fi
done
[ -e "$scratch/bin/python3" ] || { echo "$0: SKIP: python3-libnbd is not installed"; exit 77; }
NBDSH="env PATH=$scratch/bin:$PATH nbdsh"
# That python3 for our helpers too: pyenv's shim takes longer to start.
PY=$scratch/bin/python3
CHECK="$PY $top_srcdir/tests/tools/clients-check.py"
NBD_RPC="$PY $top_srcdir/tests/tools/nbd-rpc.py"

M=$((1 << 20))
SIZE=$((64 * M))
img=$scratch/img
mkdir -p "$img"

# --- images ---

must truncate -s $SIZE "$img/raw.img"
must "$SENDENSE_IMG" create -f qcow2 "$img/new.qcow2" $SIZE
must "$SENDENSE_IMG" create -f qcow2 "$img/full.qcow2" $SIZE
# The backing file has data in [0, 16M) and [32M, 40M) only.
must qemu-io -f qcow2 -c "write -P 0xaa 0 16M" -c "write -P 0xbb 32M 8M" "$img/full.qcow2"
must "$SENDENSE_IMG" create -f qcow2 -b "$img/full.qcow2" -F qcow2 \
    -o extended_l2=on "$img/incr.qcow2" $SIZE
head -c $((32 * M)) /dev/urandom > "$img/ro.img" || fail "cannot make ro.img"
must truncate -s $((256 * M)) "$img/big.img"
head -c $SIZE /dev/urandom > "$scratch/src1.bin" || fail "cannot make src1.bin"
head -c $SIZE /dev/urandom > "$scratch/src2.bin" || fail "cannot make src2.bin"

# Models: what each export must read as, kept up to date by running every
# qemu-io command on them too. qemu-img (the oracle) reads the images
# before the server has them open.
must qemu-img convert -O raw "$img/raw.img" "$scratch/model-raw.bin"
for e in new incr; do
    must qemu-img convert -O raw "$img/$e.qcow2" "$scratch/model-$e.bin"
done
RO_SUM=$(sha256sum < "$img/ro.img")

start_server() {
    srv_start "workers: 2"
    # Export files survive a restart in $SRV_EXPORTS; write them once.
    if [ ! -e "$SRV_EXPORTS/raw.yaml" ]; then
        srv_export raw "$img/raw.img" "format: raw"
        srv_export new "$img/new.qcow2" "format: qcow2"
        srv_export incr "$img/incr.qcow2"
        srv_export ro "$img/ro.img" "readonly: true"
        srv_export big "$img/big.img"
    fi
}

stats_mark() {          # EXPORT: remember its counters now
    srv_rpc export.stats "{\"name\":\"$1\"}" > "$scratch/stats-$1.json"
}

# stats_grew EXPORT GROUP.KEY=MIN...: since stats_mark, each counter
# grew by at least MIN.
stats_grew() {
    local e=$1 spec
    shift
    spec=$(IFS=,; echo "$*")
    srv_rpc export.stats "{\"name\":\"$e\"}" > "$scratch/stats-now.json"
    $CHECK grew "$scratch/stats-$e.json" "$scratch/stats-now.json" "$spec" ||
        fail "export.stats of $e"
}

# qemu_io URI CMD...: run qemu-io -f raw; any failed command fails the test.
qemu_io() {
    local target=$1 out
    shift
    local args=() c
    for c in "$@"; do args+=(-c "$c"); done
    out=$(qemu-io -f raw "${args[@]}" "$target" 2>&1) ||
        { echo "$out" >&2; fail "qemu-io on $target failed"; }
    if grep -Eiq "failed|error|not permitted" <<<"$out"; then
        echo "$out" >&2
        fail "qemu-io on $target reported a failure"
    fi
}

# bytes_of REGEX CMD...: the lengths (last word: N, Nk or NM) of the
# qemu-io commands that match REGEX, added up.
bytes_of() {
    local re=$1 c len total=0
    shift
    for c in "$@"; do
        [[ $c =~ $re ]] || continue
        len=${c##* }
        case $len in
            *k) len=$((${len%k} * 1024)) ;;
            *M) len=$((${len%M} * M)) ;;
        esac
        total=$((total + len))
    done
    echo $total
}

same_as_model() {       # TARGET MODEL: qemu-img compare, byte for byte
    local out
    out=$(qemu-img compare -f raw -F raw "$1" "$2" 2>&1) ||
        { echo "$out" >&2; fail "$1 differs from $2"; }
    grep -q "Images are identical" <<<"$out" || fail "qemu-img compare $1: $out"
}

# Stop the server, then qemu-img check each qcow2 image (no error, no
# leak) and compare it with what it must hold; start the server again.
stop_and_check() {      # EXPECT_new EXPECT_incr
    srv_stop
    qemu_check_clean "$img/new.qcow2"
    qemu_check_clean "$img/incr.qcow2"
    same_content "$img/new.qcow2" "$1"
    # Opening the incremental opens its chain: the backing file serves
    # what the incremental does not hold.
    same_content "$img/incr.qcow2" "$2"
    start_server
}

start_server

# --- 1. listing, flags and maps ---

echo "1. nbdinfo --list and --map"
for uri in "$(srv_uri '')" "$(srv_unix_uri '')"; do
    nbdinfo --list --json "$uri" > "$scratch/list.json" 2>&1 ||
        { cat "$scratch/list.json" >&2; fail "nbdinfo --list $uri"; }
    for e in raw new incr; do
        $CHECK list "$scratch/list.json" $e $SIZE rw || fail "listing of $e ($uri)"
    done
    $CHECK list "$scratch/list.json" ro 32M ro || fail "listing of ro ($uri)"
    $CHECK list "$scratch/list.json" big 256M rw || fail "listing of big ($uri)"
done

# Written into the incremental: one cluster over backing data, a 4k
# subcluster where the backing has nothing, 2k over backing data.
stats_mark incr
qemu_io "$(srv_uri incr)" "write -P 0xcc 4M 64k" "write -P 0xdd 20M 4k" \
    "write -P 0xee 36M 2k" "read -P 0xcc 4M 64k" "read -P 0xaa 0 4M" \
    "read -P 0xdd 20M 4k" "read -P 0 $((20 * M - 4096)) 4k" \
    "read -P 0xbb $((36 * M - 2048)) 2k"
qemu_io "$scratch/model-incr.bin" "write -P 0xcc 4M 64k" "write -P 0xdd 20M 4k" \
    "write -P 0xee 36M 2k"

# Data (type 0) where either layer has data, hole+zero (3) elsewhere.
nbdinfo --map --json "$(srv_uri incr)" > "$scratch/map.json" || fail "nbdinfo --map"
$CHECK map "$scratch/map.json" \
    "0:16M:0,16M:4M:3,20M:4K:0,$((20 * M + 4096)):$((12 * M - 4096)):3,32M:8M:0,40M:24M:3" ||
    fail "base:allocation map of incr"
# Depth 1: the incremental; 2: only the backing file; 0: neither.
nbdinfo --map=qemu:allocation-depth --json "$(srv_unix_uri incr)" > "$scratch/depth.json" ||
    fail "nbdinfo --map=qemu:allocation-depth"
$CHECK map "$scratch/depth.json" \
    "0:4M:2,4M:64K:1,$((4 * M + 65536)):$((12 * M - 65536)):2,16M:4M:0,20M:4K:1,$((20 * M + 4096)):$((12 * M - 4096)):0,32M:4M:2,36M:2K:1,$((36 * M + 2048)):$((4 * M - 2048)):2,40M:24M:0" ||
    fail "qemu:allocation-depth map of incr"
stats_grew incr bytes.write=$((64 * 1024 + 4096 + 2048)) \
    bytes.read=$((4 * M + 64 * 1024 + 8192 + 2048)) ops.block_status=2
# The raw file is sparse, all holes; after a write, data there.
qemu_io "$(srv_unix_uri raw)" "write -P 0x77 8M 1M"
qemu_io "$scratch/model-raw.bin" "write -P 0x77 8M 1M"
nbdinfo --map --json "$(srv_unix_uri raw)" > "$scratch/map.json" || fail "nbdinfo --map raw"
$CHECK map "$scratch/map.json" "0:8M:3,8M:1M:0,9M:55M:3" || fail "base:allocation map of raw"

# --- 2. qemu-io ---

echo "2. qemu-io and qemu-img"
# Over TCP: patterns, an unaligned write, zeroes with and without unmap
# over data, FUA, flush, and 32 aio writes in flight at once.
tcp_cmds=("write -P 0x11 0 1M" "write -P 0x12 1M 4k" "write -P 0x13 3146240 1536"
          "write -P 0x21 2M 1M" "write -z 2M 1M" "write -P 0x22 5M 1M" "write -z -u 5M 1M"
          "write -f -P 0x14 6M 64k" "write -P 0x15 10485859 4001" "flush")
aio_cmds=() aio_reads=()
for i in $(seq 0 31); do
    aio_cmds+=("aio_write -P $((0x40 + i)) $((12 * M + i * 131072)) 64k")
    aio_reads+=("read -P $((0x40 + i)) $((12 * M + i * 131072)) 64k")
done
tcp_cmds+=("${aio_cmds[@]}" "aio_flush")
tcp_reads=("read -P 0x11 0 1M" "read -P 0x12 1M 4k" "read -P 0x13 3146240 1536"
           "read -P 0 2M 1M" "read -P 0 5M 1M" "read -P 0x14 6M 64k"
           "read -P 0x15 10485859 4001" "${aio_reads[@]}")
# Over the unix socket: a discard between data that must stay, then the
# discarded range written again (after TRIM its content is unspecified);
# an unaligned zero inside data.
unix_cmds=("write -P 0x31 24M 3M" "discard 25M 1M" "write -P 0x32 25M 1M"
           "write -z 27787265 777")
unix_reads=("read -P 0x31 24M 1M" "read -P 0x32 25M 1M" "read -P 0x31 26M 1024"
            "read -P 0 27787265 777" "read -P 0x31 27788042 $((27 * M - 27788042))")

for e in raw new incr; do
    stats_mark $e
    qemu_io "$(srv_uri $e)" "${tcp_cmds[@]}" "${tcp_reads[@]}"
    qemu_io "$(srv_unix_uri $e)" "${unix_cmds[@]}" "${unix_reads[@]}"
    qemu_io "$scratch/model-$e.bin" "${tcp_cmds[@]}" "${unix_cmds[@]}"
    stats_grew $e \
        bytes.write="$(bytes_of '^(aio_)?write -[fP]' "${tcp_cmds[@]}" "${unix_cmds[@]}")" \
        bytes.zero="$(bytes_of '^write -z' "${tcp_cmds[@]}" "${unix_cmds[@]}")" \
        bytes.trim="$(bytes_of '^discard' "${unix_cmds[@]}")" \
        bytes.read="$(bytes_of '^read' "${tcp_reads[@]}" "${unix_reads[@]}")" \
        ops.flush=2
    same_as_model "$(srv_uri $e)" "$scratch/model-$e.bin"
    same_as_model "$(srv_unix_uri $e)" "$scratch/model-$e.bin"
    rm -f "$scratch/conv.qcow2"
    must qemu-img convert -f raw -O qcow2 "$(srv_uri $e)" "$scratch/conv.qcow2"
    same_content "$scratch/conv.qcow2" "$scratch/model-$e.bin"
done
same_as_model "$img/raw.img" "$scratch/model-raw.bin"
same_as_model "$(srv_unix_uri raw)" "$img/raw.img"
stop_and_check "$scratch/model-new.bin" "$scratch/model-incr.bin"

# --- 3. nbdcopy ---

echo "3. nbdcopy"
want1=$(sha256sum < "$scratch/src1.bin")
want2=$(sha256sum < "$scratch/src2.bin")
for e in raw new incr; do
    stats_mark $e
    must nbdcopy --connections=4 "$scratch/src1.bin" "$(srv_uri $e)"
    must nbdcopy --connections=1 "$(srv_unix_uri $e)" "$scratch/out.bin"
    [ "$(sha256sum < "$scratch/out.bin")" = "$want1" ] || fail "$e: nbdcopy round trip 1 differs"
    must nbdcopy --connections=1 "$scratch/src2.bin" "$(srv_unix_uri $e)"
    must nbdcopy --connections=4 "$(srv_uri $e)" "$scratch/out.bin"
    [ "$(sha256sum < "$scratch/out.bin")" = "$want2" ] || fail "$e: nbdcopy round trip 2 differs"
    stats_grew $e bytes.write=$((2 * SIZE)) bytes.read=$((2 * SIZE))
done
# Four plain connections to one image all stay on the worker that owns
# it: images, not connections, spread the load (server/conn.c).
out=$($PY "$top_srcdir/tests/tools/placement-check.py" "$(srv_unix_uri raw)" "$SRV_CTL" 4) ||
    fail "placement check: $out"
[ "$out" = "0 4" ] ||
    fail "four plain connections of one image on more than one worker: $out"
echo "plain connections per worker: $out"
cmp -s "$img/raw.img" "$scratch/src2.bin" || fail "raw.img does not hold what nbdcopy wrote"
stop_and_check "$scratch/src2.bin" "$scratch/src2.bin"

# --- 4. fio ---

echo "4. fio"
run_fio() {             # EXPORT URI ARGS...: fio with verify must pass
    local e=$1 uri=$2 out=$scratch/fio.out
    shift 2
    fio --name="$e" --ioengine=nbd --uri="$uri" --size=32M \
        --verify=crc32c --do_verify=1 --verify_fatal=1 "$@" --output="$out" ||
        { cat "$out" >&2; fail "fio on $e failed ($*)"; }
    grep -q "err= 0" "$out" || { cat "$out" >&2; fail "fio on $e: an error ($*)"; }
    if grep -Eiq "verify.*(bad|fail)|bad magic|crc32c" "$out"; then
        cat "$out" >&2
        fail "fio on $e: verify errors ($*)"
    fi
}
for e in raw new incr; do
    stats_mark $e
    run_fio $e "$(srv_uri $e)" --rw=randwrite --bs=4k --iodepth=32
    run_fio $e "$(srv_unix_uri $e)" --rw=write --bs=1M --iodepth=8 --offset=32M
    stats_grew $e bytes.write=64M bytes.read=64M
done

# --- 5. the read-only export ---

echo "5. read-only export"
stats_mark ro
must nbdcopy --connections=4 "$(srv_uri ro)" "$scratch/out.bin"
cmp -s "$scratch/out.bin" "$img/ro.img" || fail "ro: nbdcopy read differs"
same_as_model "$(srv_unix_uri ro)" "$img/ro.img"
out=$(qemu-io -r -f raw -c "read 0 64k" "$(srv_uri ro)" 2>&1) ||
    { echo "$out" >&2; fail "ro: qemu-io read failed"; }
# qemu-io (and libnbd) honour the read-only flag themselves and refuse to
# write; to see that the server refuses too, nbdsh turns libnbd's own
# checks off and sends WRITE, WRITE_ZEROES and TRIM anyway.
out=$(qemu-io -f raw -c "write -P 0x11 0 4k" "$(srv_uri ro)" 2>&1) &&
    fail "ro: qemu-io opened the read-only export for writing"
out=$($NBDSH -u "$(srv_unix_uri ro)" -c '
h.set_strict_mode(0)
for name, op in (("write", lambda: h.pwrite(b"\x11" * 4096, 0)),
                 ("zero", lambda: h.zero(4096, 8192)),
                 ("trim", lambda: h.trim(4096, 16384))):
    try:
        op()
        print(name, "accepted")
    except nbd.Error as e:
        print(name, e.errno, e.string)
' 2>&1) || { echo "$out" >&2; fail "ro: nbdsh failed"; }
for op in write zero trim; do
    grep -q "^$op EPERM .*Operation not permitted" <<<"$out" ||
        { echo "$out" >&2; fail "ro: $op was not refused with EPERM"; }
done
[ "$(sha256sum < "$img/ro.img")" = "$RO_SUM" ] || fail "ro.img changed"
stats_grew ro bytes.read=$((32 * M + 32 * M + 65536))
srv_rpc export.stats '{"name":"ro"}' > "$scratch/stats-now.json"
[ "$($CHECK stat "$scratch/stats-now.json" bytes write)" = 0 ] ||
    fail "ro: export.stats counts written bytes"

# --- 6. one WRITE_ZEROES of 200 MiB ---

echo "6. WRITE_ZEROES of 200 MiB"
head -c $((256 * M)) /dev/zero | tr '\0' '\377' > "$scratch/ff.bin" || fail "cannot make ff.bin"
must nbdcopy "$scratch/ff.bin" "$(srv_uri big)"
rm -f "$scratch/ff.bin"
stats_mark big
must $NBDSH -u "$(srv_uri big)" -c 'h.zero(200 * 1024 * 1024, 0)'
stats_grew big bytes.zero=200M
must nbdcopy "$(srv_unix_uri big)" "$scratch/out.bin"
$CHECK fill "$scratch/out.bin" 0 200M 0 || fail "big: not all of the 200 MiB reads as zero"
$CHECK fill "$scratch/out.bin" 200M 56M 0xff || fail "big: data after the zeroed range changed"
$CHECK fill "$img/big.img" 0 200M 0 || fail "big.img: not all of the 200 MiB is zero"
rm -f "$scratch/out.bin"

# --- the end: what the exports read now is what the images hold ---

for e in new incr; do
    must nbdcopy "$(srv_uri $e)" "$scratch/final-$e.bin"
done
srv_stop
for e in new incr; do
    qemu_check_clean "$img/$e.qcow2"
    same_content "$img/$e.qcow2" "$scratch/final-$e.bin"
done
echo "all client checks passed"
