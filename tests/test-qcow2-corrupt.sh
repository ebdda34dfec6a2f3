#!/bin/bash
# SPDX-License-Identifier: MIT
# Damaged and hostile qcow2 images. Each is made at test time with
# qemu-img, then patched with tests/tools/qcow2-damage.py. For each,
# `sendense-img info` and `sendense-img convert -O raw` must fail with an
# exit status below 128 (no signal, no sanitizer abort) and exactly one
# line on stderr that names the problem (a keyword, matched
# case-insensitively). Run it under an --enable-sanitizers build too: a
# sanitizer report is more than one line and fails the case.
#
# One exception to "info fails": a data cluster pointer past the end of
# the file (l2-entry-past-eof) lives in an L2 table, which info does not
# read; there info must merely not crash, and convert must fail.
set -eo pipefail

srcdir=${srcdir:-$(cd "$(dirname "$0")" && pwd)}
# shellcheck source=functions.sh
source "$srcdir/functions.sh"
requires qemu-img qemu-io python3

img=$SENDENSE_IMG
damage="python3 $srcdir/tools/qcow2-damage.py"
tmp=$scratch
passed=0
failed=0

bad() {
    echo "FAIL: $*" >&2
    failed=$((failed + 1))
}

# run_cmd: run "$@" with stdout and stderr captured; sets rc. ASan's
# start-up notes about swapcontext (the coroutines) are not errors and
# are dropped; any real sanitizer report stays and fails the case.
run_cmd() {
    set +e
    "$@" >"$tmp/stdout" 2>"$tmp/stderr.raw"
    rc=$?
    set -e
    grep -v -e "^==[0-9]*==WARNING: ASan doesn't fully support makecontext" \
        -e '^==[0-9]*==WARNING: ASan is ignoring requested __asan_handle_no_return' \
        -e '^False positive error reports may follow' \
        -e '^For details see https://github.com/google/sanitizers/issues/189' \
        "$tmp/stderr.raw" >"$tmp/stderr" || :
}

# A failure must be one clear line, never a crash.
check_one_line() {
    local what=$1 lines
    lines=$(wc -l <"$tmp/stderr")
    if [ "$lines" -ne 1 ] || ! grep -q '^sendense-img: .' "$tmp/stderr"; then
        bad "$what: stderr has $lines lines, want one 'sendense-img: ...':"
        sed 's/^/    | /' "$tmp/stderr" | head -n 20 >&2
        return 1
    fi
}

# expect_fail CASE REGEX CMD...: CMD exits 1..127 with one matching line.
expect_fail() {
    local name=$1 regex=$2
    shift 2
    run_cmd "$@"
    if [ "$rc" -eq 0 ]; then
        bad "$name: '$*' succeeded"
        return
    fi
    if [ "$rc" -ge 128 ]; then
        bad "$name: '$*' died with status $rc"
        sed 's/^/    | /' "$tmp/stderr" | head -n 20 >&2
        return
    fi
    check_one_line "$name: $*" || return 0
    # Match the words of the message, not the (random) scratch path.
    local msg
    msg=$(sed "s|$tmp||g" "$tmp/stderr")
    if ! grep -Eiq -- "$regex" <<<"$msg"; then
        bad "$name: message does not match /$regex/: $msg"
        return
    fi
    echo "ok: $name: $(basename "$1") $2: $msg"
    passed=$((passed + 1))
}

# expect_no_crash CASE CMD...: CMD may succeed or fail cleanly.
expect_no_crash() {
    local name=$1
    shift
    run_cmd "$@"
    if [ "$rc" -ge 128 ]; then
        bad "$name: '$*' died with status $rc"
        return
    fi
    if [ "$rc" -ne 0 ]; then
        check_one_line "$name: $*" || return 0
    fi
    passed=$((passed + 1))
}

# corrupt CASE FILE REGEX [-f FMT]: info and convert must both fail.
corrupt() {
    local name=$1 file=$2 regex=$3
    shift 3
    expect_fail "$name" "$regex" "$img" info "$@" "$file"
    expect_fail "$name" "$regex" "$img" convert "$@" -O raw "$file" \
        "$tmp/out.raw"
    rm -f "$tmp/out.raw"
}

# new [qemu-img create options...]: set f to a new 64 KiB-cluster image
# of 16 MiB with data in its first two clusters and at 8 MiB. Files are
# numbered, not named after the damage, so a name never matches a keyword.
nimg=0
new() {
    nimg=$((nimg + 1))
    f=$tmp/img$nimg.qcow2
    qemu-img create -q -f qcow2 "$@" "$f" 16M
    qemu-io -f qcow2 -c 'write -P 0x61 0 128k' -c 'write -P 0x62 8M 64k' \
        "$f" >/dev/null
}

header_field() {
    $damage show "$1" | sed -n "s/^$2=//p"
}

past_end='past the end|beyond the end|truncated'

# ---- the header ------------------------------------------------------

new
$damage header "$f" magic 0x12345678
corrupt bad-magic "$f" 'magic' -f qcow2

new
truncate -s 65536 "$f"
corrupt header-only "$f" "$past_end"

new -o cluster_size=512
qemu-img resize -q "$f" 1G
l1_off=$(header_field "$f" l1_table_offset)
l1_size=$(header_field "$f" l1_size)
truncate -s $((l1_off + l1_size * 8 / 2)) "$f"
corrupt half-l1 "$f" "$past_end"

new
$damage header "$f" size 0x4000000000000000
corrupt huge-virtual-size "$f" 'virtual size|disk size|too (large|big)'

new
$damage header "$f" l1_size 0x7fffffff
corrupt huge-l1-size "$f" 'L1'

new
$damage header "$f" refcount_table_offset 0
corrupt refcount-table-on-header "$f" 'refcount table'

new
$damage header "$f" refcount_table_offset 0
$damage header "$f" refcount_table_clusters 0
corrupt refcount-table-offset-0 "$f" 'refcount table'

new
$damage or-header "$f" incompatible_features 0x80
corrupt incompatible-bit-7 "$f" 'incompatible feature.*\b7\b'

# ---- the mapping -----------------------------------------------------

new
$damage l1 "$f" 0 eof+0x1000000
corrupt l1-entry-past-eof "$f" "$past_end"

new
$damage l2 "$f" 0 eof+0x1000000
expect_no_crash l2-entry-past-eof "$img" info "$f"
expect_fail l2-entry-past-eof "$past_end" \
    "$img" convert -O raw "$f" "$tmp/out.raw"
rm -f "$tmp/out.raw"

# ---- backing chains --------------------------------------------------

qemu-img create -q -f qcow2 "$tmp/a.qcow2" 16M
qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 "$tmp/b.qcow2"
qemu-img rebase -u -b b.qcow2 -F qcow2 "$tmp/a.qcow2"
# Like qemu-img info, plain info does not open the chain; following it
# (info --backing-chain, or reading through it) must fail.
chain_corrupt() {
    local name=$1 file=$2 regex=$3
    expect_fail "$name" "$regex" "$img" info --backing-chain "$file"
    expect_fail "$name" "$regex" "$img" convert -O raw "$file" "$tmp/out.raw"
    rm -f "$tmp/out.raw"
}
chain_corrupt chain-loop "$tmp/b.qcow2" 'loop'

# c000 <- c001 <- ... <- c300: the same overlay with each name patched.
mkdir "$tmp/chain"
qemu-img create -q -f qcow2 "$tmp/chain/c000" 1M
qemu-img create -q -f qcow2 -b c000 -F qcow2 "$tmp/chain/template"
name_off=$(header_field "$tmp/chain/template" backing_file_offset)
for i in $(seq 1 300); do
    cp "$tmp/chain/template" "$tmp/chain/$(printf c%03d "$i")"
    printf 'c%03d' $((i - 1)) |
        dd of="$tmp/chain/$(printf c%03d "$i")" bs=1 seek="$name_off" \
            conv=notrunc status=none
done
chain_corrupt chain-300-deep "$tmp/chain/c300" 'deep|depth'

# ---- features we refuse --------------------------------------------

# qemu-img times its key derivation and, on a loaded machine, may fail
# with "Unable to get accurate CPU usage": then patch the method in.
f=$tmp/enc.qcow2
if ! qemu-img create -q -f qcow2 --object secret,id=sec0,data=sendense \
    -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=200 \
    "$f" 16M 2>"$tmp/enc.err"; then
    new
    $damage header "$f" crypt_method 2
fi
corrupt encrypted-luks "$f" 'encrypt'

new
$damage header "$f" crypt_method 1
corrupt encrypted-aes "$f" 'encrypt'

f=$tmp/ext.qcow2
qemu-img create -q -f qcow2 -o data_file="$tmp/ext.raw" "$f" 16M
corrupt external-data-file "$f" 'data file'

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
