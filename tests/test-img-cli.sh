#!/usr/bin/env bash
# The sendense-img command line: every command answers --help; failures
# exit non-zero with exactly one "sendense-img: ..." line on stderr; sizes
# and -o options are parsed as documented. No external oracle needed.

. "${srcdir:-.}/functions.sh"

commands="create info check map convert commit rebase"

# --help: exit 0, the usage on stdout, nothing on stderr.
out=$("$SENDENSE_IMG" --help 2>"$scratch/err") || fail "--help failed"
[ -z "$(our_stderr "$scratch/err")" ] || fail "--help wrote to stderr"
for c in $commands; do
    echo "$out" | grep -q "^  $c " || fail "--help does not list $c"
    out_c=$("$SENDENSE_IMG" $c --help 2>"$scratch/err") ||
        fail "$c --help failed"
    [ -z "$(our_stderr "$scratch/err")" ] || fail "$c --help wrote to stderr"
    echo "$out_c" | grep -q "^Usage: sendense-img $c" ||
        fail "$c --help does not show its usage"
done

# Errors: one line, non-zero.
missing=$scratch/does-not-exist.qcow2
expect_error "$SENDENSE_IMG"
expect_error "$SENDENSE_IMG" frobnicate
for c in info check map commit; do
    expect_error "$SENDENSE_IMG" $c "$missing"
    expect_error "$SENDENSE_IMG" $c --no-such-option "$missing"
    expect_error "$SENDENSE_IMG" $c -Z "$missing"
    expect_error "$SENDENSE_IMG" $c
done
expect_error "$SENDENSE_IMG" rebase -b x "$missing"
expect_error "$SENDENSE_IMG" rebase "$missing"
expect_error "$SENDENSE_IMG" convert -O raw "$missing" "$scratch/out.raw"
expect_error "$SENDENSE_IMG" convert -O vmdk "$missing" "$scratch/out.raw"
expect_error "$SENDENSE_IMG" convert -O raw "$missing"
expect_error "$SENDENSE_IMG" create "$scratch/nosize.qcow2"
expect_error "$SENDENSE_IMG" create "$scratch/a.qcow2" 12Q
expect_error "$SENDENSE_IMG" create -f vmdk "$scratch/a.qcow2" 1M
expect_error "$SENDENSE_IMG" create -o cluster_size "$scratch/a.qcow2" 1M
expect_error "$SENDENSE_IMG" create -o no_such_key=1 "$scratch/a.qcow2" 1M
expect_error "$SENDENSE_IMG" create -o compat=0.9 "$scratch/a.qcow2" 1M
expect_error "$SENDENSE_IMG" create -o cluster_size=3000 "$scratch/a.qcow2" 1M
expect_error "$SENDENSE_IMG" create -f raw -b x "$scratch/a.raw" 1M
expect_error "$SENDENSE_IMG" create "$scratch/no/such/dir/a.qcow2" 1M
expect_error "$SENDENSE_IMG" info --output=yaml "$missing"
expect_error "$SENDENSE_IMG" check -r everything "$missing"

# Sizes: suffixes are powers of 1024; fractions need a unit.
for spec in "1536:1536" "64k:65536" "1.5M:1572864" "2G:2147483648" \
    "1T:1099511627776"; do
    "$SENDENSE_IMG" create -q -f raw "$scratch/s.raw" "${spec%%:*}" ||
        fail "create -f raw ${spec%%:*}"
    got=$(stat -c %s "$scratch/s.raw")
    [ "$got" = "${spec#*:}" ] ||
        fail "size ${spec%%:*}: got $got, want ${spec#*:}"
    rm -f "$scratch/s.raw"
done

# A raw image: info in both styles, and check refuses it (qemu-img's 63).
must "$SENDENSE_IMG" create -q -f raw "$scratch/r.raw" 1M
"$SENDENSE_IMG" info "$scratch/r.raw" | grep -q '^file format: raw$' ||
    fail "info: raw image not shown as raw"
"$SENDENSE_IMG" info --output json "$scratch/r.raw" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["format"] == "raw" and j["virtual-size"] == 1048576, j
' || fail "info --output json on a raw image"
rc=0
"$SENDENSE_IMG" check "$scratch/r.raw" 2>"$scratch/err" >/dev/null || rc=$?
[ "$rc" = 63 ] || fail "check of a raw image: exit $rc, want 63"
[ "$(our_stderr "$scratch/err" | wc -l)" = 1 ] ||
    fail "check of a raw image: stderr"

# commit needs a backing file; rebase -u of a raw image is refused.
must "$SENDENSE_IMG" create -q "$scratch/alone.qcow2" 1M
expect_error "$SENDENSE_IMG" commit "$scratch/alone.qcow2"
expect_error "$SENDENSE_IMG" rebase -u -b x "$scratch/r.raw"

# Round trip through our own engine: raw -> qcow2 -> raw keeps the bytes.
python3 -c '
import os, sys
with open(sys.argv[1], "r+b") as f:
    for off in (0, 70000, 524288, 1048000):
        f.seek(off)
        f.write(os.urandom(512))
' "$scratch/r.raw"
must "$SENDENSE_IMG" convert -O qcow2 -o cluster_size=4k "$scratch/r.raw" \
    "$scratch/r.qcow2"
must "$SENDENSE_IMG" convert -O raw "$scratch/r.qcow2" "$scratch/back.raw"
cmp "$scratch/r.raw" "$scratch/back.raw" ||
    fail "raw -> qcow2 -> raw changed the bytes"
echo "sendense-img command line: ok"
