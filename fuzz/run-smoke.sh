#!/bin/bash
# SPDX-License-Identifier: MIT
# Run every fuzz target briefly: with a libFuzzer build, a bounded number
# of mutations on top of the seed corpus; with a replay build (no
# libFuzzer), each seed once. Exits non-zero on the first target that
# crashes, leaks or trips a sanitizer.
#
# usage: fuzz/run-smoke.sh [-runs=N] [other libFuzzer options...]
#   FUZZ_BUILDDIR  folder with the fuzz-* programs (default: this folder)
#   FUZZ_SRCDIR    folder with corpus/ (default: this script's folder)
set -euo pipefail

srcdir=${FUZZ_SRCDIR:-$(cd "$(dirname "$0")" && pwd)}
builddir=${FUZZ_BUILDDIR:-$srcdir}
runs=-runs=500
extra=()
for a in "$@"; do
    case $a in
    -runs=*) runs=$a ;;
    *) extra+=("$a") ;;
    esac
done

targets=(qcow2-image jsonrpc config-yaml config-ini nbd-request nbd-session
         sidecar changes)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

is_libfuzzer() {
    # libFuzzer's main answers -help=1 with its option list.
    local help
    help=$("$1" -help=1 2>&1 || :)
    [[ $help == *" runs "*"test runs"* ]]
}

for t in "${targets[@]}"; do
    bin=$builddir/fuzz-$t
    seeds=$srcdir/corpus/$t
    if [ ! -x "$bin" ]; then
        echo "$0: $bin is not built" >&2
        exit 1
    fi
    if is_libfuzzer "$bin"; then
        # New inputs go to a scratch corpus; the seeds stay as they are.
        mkdir -p "$work/$t"
        echo "$0: fuzz-$t $runs"
        "$bin" "$runs" -malloc_limit_mb=512 -rss_limit_mb=2048 \
            -artifact_prefix="$work/" "${extra[@]}" "$work/$t" "$seeds" \
            >"$work/$t.log" 2>&1 || {
            tail -n 60 "$work/$t.log" >&2
            # Keep the reproducer where the build can be written to.
            mkdir -p "$builddir/artifacts-$t"
            cp "$work"/crash-* "$work"/leak-* "$work"/oom-* \
                "$work"/timeout-* "$builddir/artifacts-$t/" 2>/dev/null || :
            echo "$0: fuzz-$t failed; reproducer in $builddir/artifacts-$t" >&2
            exit 1
        }
        tail -n 2 "$work/$t.log"
    else
        echo "$0: replaying $(ls "$seeds" | wc -l) seeds through fuzz-$t"
        # Files, not the folder: a libFuzzer build would fuzz into it.
        "$bin" "$seeds"/*
    fi
done
echo "$0: ${#targets[@]} passed, 0 failed"
