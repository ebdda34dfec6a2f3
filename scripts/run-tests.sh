#!/bin/bash
# Build (setting up first if needed) and run the whole test suite.
# --sanitizers runs it in a second build with ASan and UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

run_suite() {
    local dir=$1
    if ! make -s -C "$dir" check -j"$(nproc)"; then
        find "$dir/tests" -name '*.log' -newer "$dir/config.status" \
            -exec grep -l -E '^(FAIL|ERROR)|^not ok' {} + 2>/dev/null |
            while read -r log; do echo "==== $log"; tail -40 "$log"; done
        return 1
    fi
}

run_suite build
if [ "${1:-}" = --sanitizers ]; then
    mkdir -p build-san
    (cd build-san && { [ -f config.status ] || ../configure -q --enable-sanitizers; } &&
        make -s -j"$(nproc)")
    run_suite build-san
fi
