#!/bin/bash
# Build (setting up first if needed) and run the whole test suite twice:
# in the normal build (./build) and in a build with AddressSanitizer and
# UndefinedBehaviorSanitizer (./build-san), then fuzzes every parser for
# a bounded number of runs with libFuzzer (clang, ./build-fuzz). --quick
# does only the first.
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit 1

passed=0 failed=0 skipped=0

# Run `make check` in a build folder and add its counts to the totals.
run_suite() {
    local dir=$1 rc=0
    echo "run-tests: make check in $dir"
    make -s -C "$dir" check -j"$(nproc)" >"$dir/check.out" 2>&1 || rc=1
    grep -E '^(PASS|FAIL|XPASS|ERROR): [^ ]+(\.sh)?$' "$dir/check.out" || true
    local log="$dir/tests/test-suite.log"
    if [ -f "$log" ]; then
        local p f e s
        p=$(sed -n 's/^# PASS: *//p' "$log"); f=$(sed -n 's/^# FAIL: *//p' "$log")
        e=$(sed -n 's/^# ERROR: *//p' "$log"); s=$(sed -n 's/^# SKIP: *//p' "$log")
        passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0} + ${e:-0}))
        skipped=$((skipped + ${s:-0}))
    fi
    if [ $rc -ne 0 ]; then
        [ -f "$log" ] && sed -n '/^FAIL\|^ERROR/,/^FAIL .*exit status/p' "$log" | tail -80
        tail -20 "$dir/check.out"
        [ -f "$log" ] || failed=$((failed + 1))
    fi
    return $rc
}

status=0
run_suite build || status=1
if [ "${1:-}" != --quick ]; then
    mkdir -p build-san
    if (cd build-san && { [ -f config.status ] || ../configure -q --enable-sanitizers; } &&
        make -s -j"$(nproc)"); then
        run_suite build-san || status=1
    else
        echo "run-tests: the sanitizer build failed"
        failed=$((failed + 1)); status=1
    fi
fi
if [ "${1:-}" != --quick ]; then
    echo "run-tests: libFuzzer smoke run in build-fuzz"
    mkdir -p build-fuzz
    if (cd build-fuzz && { [ -f config.status ] ||
            CC=clang ../configure -q --enable-fuzzing --enable-sanitizers; } &&
        make -s -j"$(nproc)" >/dev/null) &&
        FUZZ_BUILDDIR="$(pwd)/build-fuzz/fuzz" \
            ./fuzz/run-smoke.sh -runs=20000 -max_total_time=90 \
            >build-fuzz/smoke.log 2>&1; then
        tail -n 5 build-fuzz/smoke.log
        passed=$((passed + 1))
    else
        # The whole failing report: the crash's stack and the input's
        # bytes are what a reader needs when only CI saw it.
        tail -n 120 build-fuzz/smoke.log
        echo "run-tests: fuzzing failed"
        failed=$((failed + 1)); status=1
    fi
fi
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
