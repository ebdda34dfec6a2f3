# Sourced (after functions.sh) by the tests of sendense-capture.
#
# capture ARGS...   a `sendense-capture copy --json ARGS` that must
#                   succeed without a word on stderr; its JSON summary
#                   is left in $scratch/summary.json
# summary KEY       a value of that summary
# must_equal WHAT GOT EXPECTED
# stat_of EXPORT GROUP KEY   a counter of sendense-nbd's export.stats
#                   (server-lib.sh sourced before)
#
# Sets SENDENSE_CAPTURE (the built tool, unless given).

SENDENSE_CAPTURE=${SENDENSE_CAPTURE:-$(cd "$top_builddir/capture" 2>/dev/null && pwd)/sendense-capture}
[ -x "$SENDENSE_CAPTURE" ] || { echo "$0: ERROR: $SENDENSE_CAPTURE was not built" >&2; exit 99; }

capture() {
    "$SENDENSE_CAPTURE" copy --json "$@" > "$scratch/capture.out" 2> "$scratch/capture.err" ||
        { cat "$scratch/capture.err" >&2; fail "sendense-capture copy $* failed"; }
    grep '"event":"summary"' "$scratch/capture.out" > "$scratch/summary.json" ||
        fail "no summary from sendense-capture copy $*"
    if [ -n "$(our_stderr "$scratch/capture.err")" ]; then
        cat "$scratch/capture.err" >&2
        fail "sendense-capture copy $* wrote to stderr"
    fi
}

summary() {
    "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
        "$scratch/summary.json" "$1"
}

must_equal() {          # WHAT GOT EXPECTED
    [ "$2" = "$3" ] || fail "$1: got $2, expected $3"
}

stat_of() {             # EXPORT GROUP KEY: a counter of export.stats
    srv_rpc export.stats "{\"name\":\"$1\"}" | "$PYTHON" -c '
import json, sys
print(json.load(sys.stdin)["stats"][sys.argv[1]][sys.argv[2]])' "$2" "$3"
}
