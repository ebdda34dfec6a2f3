#!/usr/bin/env bash
# sendense-img check answers like qemu-img check: the same exit status
# (0 clean, 2 corruptions, 3 leaks) and the same counts in the JSON, on a
# clean image, one with a leaked cluster and one with a corruption; and
# -r leaks repairs what qemu-img then finds clean.

. "${srcdir:-.}/functions.sh"
requires qemu-img qemu-io python3

damage="python3 ${srcdir:-.}/tools/qcow2-damage.py"

# Exit status and the JSON counts that matter, as "STATUS LEAKS CORRUPTIONS".
summary() {
    local rc=0 json
    json=$("$@" 2>/dev/null) || rc=$?
    echo "$json" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print(sys.argv[1], j.get("leaks", 0), j.get("corruptions", 0),
      j.get("check-errors"))
' "$rc" || echo "$rc unparsable"
}

same_check() {
    local img=$1 want=$2 ours theirs
    ours=$(summary "$SENDENSE_IMG" check --output=json "$img")
    theirs=$(summary qemu-img check --output=json "$img")
    [ "$ours" = "$theirs" ] ||
        fail "$(basename "$img"): sendense-img check says '$ours', qemu-img '$theirs'"
    [ "${ours%% *}" = "$want" ] ||
        fail "$(basename "$img"): exit status ${ours%% *}, want $want"
}

make_image() {
    must qemu-img create -f qcow2 "$1" 4M
    must qemu-io -c "write -P 1 0 64k" -c "write -P 2 64k 64k" \
        -c "write -P 3 1M 64k" "$1"
}

clean=$scratch/clean.qcow2
make_image "$clean"
same_check "$clean" 0
"$SENDENSE_IMG" check "$clean" | grep -q '^No errors were found on the image.$' ||
    fail "text output of a clean check"

# A leak: forget the L2 entry of a data cluster; its refcount stays 1.
leak=$scratch/leak.qcow2
make_image "$leak"
$damage l2 "$leak" 65536 0 || fail "damage"
same_check "$leak" 3
"$SENDENSE_IMG" check "$leak" 2>/dev/null |
    grep -q '^1 leaked clusters were found on the image.$' ||
    fail "text output of a check with a leak"
rc=0
"$SENDENSE_IMG" check -r leaks "$leak" >/dev/null 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "check -r leaks: exit $rc"
qemu_check_clean "$leak"

# A corruption: an L2 entry pointing at a cluster past the end of the
# file, whose refcount is 0.
bad=$scratch/corrupt.qcow2
make_image "$bad"
$damage l2 "$bad" 1048576 eof+0x100000 || fail "damage"
same_check "$bad" 2
echo "sendense-img check agrees with qemu-img check"
