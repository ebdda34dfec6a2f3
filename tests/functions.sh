# Sourced by tests/test-img-*.sh and tests/test-interop-*.sh (bash).
#
# Gives a test: $SENDENSE_IMG (the built tool), $scratch (a private folder
# removed at exit), fail MSG, requires CMD..., cleanup_fn CMD..., and the
# helpers below for comparing our results with qemu-img's.
#
# Environment: top_builddir and top_srcdir (set by `make check`; default:
# the build tree around the running test), SENDENSE_IMG to test another
# binary, SD_KEEP=1 to keep $scratch, TMPDIR for where $scratch goes.

set -u

: "${top_builddir:=..}"
: "${top_srcdir:=${srcdir:-.}/..}"

# Exit 77 (skip) when an external tool is missing. Only for tools that are
# not ours: a missing sendense-img is a hard error below.
requires() {
    local cmd
    for cmd in "$@"; do
        if ! command -v "$cmd" >/dev/null 2>&1; then
            echo "$0: SKIP: $cmd is not installed"
            exit 77
        fi
    done
}

fail() {
    echo "$0: FAIL: $*" >&2
    exit 1
}

# Commands run at exit, last registered first.
_cleanup_cmds=()
cleanup_fn() {
    _cleanup_cmds=("$*" "${_cleanup_cmds[@]}")
}
_run_cleanup() {
    local rc=$? c
    for c in "${_cleanup_cmds[@]}"; do
        eval "$c" || :
    done
    exit $rc
}
trap _run_cleanup EXIT
trap 'exit 130' INT TERM

SENDENSE_IMG=${SENDENSE_IMG:-$(cd "$top_builddir/qcow2" 2>/dev/null && pwd)/sendense-img}
if [ ! -x "$SENDENSE_IMG" ]; then
    echo "$0: ERROR: $SENDENSE_IMG was not built" >&2
    exit 99
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/sendense-test.XXXXXX") || exit 99
if [ "${SD_KEEP:-0}" = 1 ]; then
    cleanup_fn "echo 'scratch kept in $scratch' >&2"
else
    cleanup_fn "rm -rf '$scratch'"
fi

# Run a command that must succeed; on failure show its output and fail.
must() {
    local out
    if ! out=$("$@" 2>&1); then
        echo "$out" >&2
        fail "command failed: $*"
    fi
}

# our_stderr FILE: FILE without the one warning ASan prints about
# swapcontext (coroutines) in --enable-sanitizers builds; it is the
# sanitizer runtime's, not ours.
our_stderr() {
    grep -v "^==[0-9]*==WARNING: ASan doesn't fully support makecontext/swapcontext" "$1" || :
}

# expect_error CMD...: the command must exit non-zero and print exactly
# one line on stderr, of the form "sendense-img: ...".
expect_error() {
    local err=$scratch/expect-error.stderr rc=0 lines
    "$@" >/dev/null 2>"$err.raw" || rc=$?
    our_stderr "$err.raw" >"$err"
    [ "$rc" != 0 ] || fail "expected failure, got exit 0: $*"
    lines=$(wc -l <"$err")
    if [ "$lines" != 1 ] || ! grep -q '^sendense-img: .' "$err"; then
        cat "$err" >&2
        fail "expected one 'sendense-img: ...' line on stderr ($lines lines): $*"
    fi
}

# same_content IMG_A IMG_B: both read as the same bytes (qemu-img compare).
same_content() {
    local out
    out=$(qemu-img compare "$1" "$2" 2>&1) ||
        { echo "$out" >&2; fail "content differs: $1 vs $2"; }
}

# qemu_check_clean IMG: qemu-img check finds no corruption and no leak.
qemu_check_clean() {
    local out
    out=$(qemu-img check "$1" 2>&1) ||
        { echo "$out" >&2; fail "qemu-img check $1 is not clean"; }
}

# compare_maps OURS.json THEIRS.json: sendense-img map --json and qemu-img
# map --output=json agree on every byte: which layer decides it (depth),
# whether some layer allocates it (present) and whether it reads as data
# or as zeros. qemu-img splits and merges differently in places (it asks
# the host file system whether a data cluster's tail is a hole, and marks
# such bytes "zero" too), so both maps are reduced to canonical runs of
# (depth, present, data-or-zero) before comparing. With a third argument
# "layers", only depth and present are compared: which layer allocates
# each byte, whether as data or as zeros.
compare_maps() {
    python3 - "$1" "$2" "${3:-all}" <<'EOF'
import json, sys
layers_only = sys.argv[3] == "layers"

def runs(path):
    with open(path) as f:
        entries = json.load(f)
    out, pos = [], None
    for e in entries:
        if pos is not None and e["start"] != pos:
            sys.exit("%s: gap or overlap at %d" % (path, e["start"]))
        kind = "data" if e["data"] else ("zero" if e["zero"] else "none")
        key = (e["depth"], e["present"]) + (() if layers_only else (kind,))
        if out and out[-1][2] == key and out[-1][0] + out[-1][1] == e["start"]:
            out[-1][1] += e["length"]
        else:
            out.append([e["start"], e["length"], key])
        pos = e["start"] + e["length"]
    return out

ours, theirs = runs(sys.argv[1]), runs(sys.argv[2])
if ours != theirs:
    print("maps differ (start, length, (depth, present[, kind])):",
          file=sys.stderr)
    print("  ours:   %s" % ours, file=sys.stderr)
    print("  theirs: %s" % theirs, file=sys.stderr)
    sys.exit(1)
EOF
}
