# Shared by test-model.sh, test-crash-sigkill.sh and test-power-loss.sh.
# Sourced, not run. Sets up a scratch folder, finds the tools, and wraps
# qemu-img (the format oracle) so a failure shows its output.
#
# Knobs (environment):
#   SD_SOAK=N        multiply the amount of work (ops, rounds, cuts) by N
#   SD_KEEP=1        keep the scratch folder even when the test passes
#   SD_TOOLS=DIR     where img-model, img-writer, wlog-replay are
#                    (default: tools/ beside the running test, i.e. the
#                    build tree's tests/tools)
#   SD_TMPDIR=DIR    where scratch folders go (default: $TMPDIR or /tmp)

set -u

SD_SOAK=${SD_SOAK:-1}
case $SD_SOAK in
    ''|*[!0-9]*|0) echo "SD_SOAK must be a positive integer" >&2; exit 99 ;;
esac

SD_TOOLS=${SD_TOOLS:-$(pwd)/tools}
IMG_MODEL=$SD_TOOLS/img-model
IMG_WRITER=$SD_TOOLS/img-writer
WLOG_REPLAY=$SD_TOOLS/wlog-replay

# Exit 77 (skip) only for a missing external oracle, never for our own
# tools: those are built by `make check` and must be there.
requires() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "SKIP: $1 is not installed"
        exit 77
    fi
}

requires qemu-img
requires qemu-io
for t in "$IMG_MODEL" "$IMG_WRITER" "$WLOG_REPLAY"; do
    if [ ! -x "$t" ]; then
        echo "FAIL: $t was not built" >&2
        exit 99
    fi
done

scratch=$(mktemp -d "${SD_TMPDIR:-${TMPDIR:-/tmp}}/sd-heavy.XXXXXX")
test_failed=1
cleanup_scratch() {
    if [ "$test_failed" = 0 ] && [ "${SD_KEEP:-0}" = 0 ]; then
        rm -rf "$scratch"
    else
        echo "scratch files kept in $scratch" >&2
    fi
}
trap cleanup_scratch EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Call at the very end of a test that passed.
pass() {
    test_failed=0
    echo "PASS"
    exit 0
}

# qemu-img check; the allowed exit codes follow the image ("0" or "0 3").
# 0 = clean, 3 = leaked clusters only, 2 = corruption, 1 = could not check.
# Prints qemu-img's report and returns 1 when the exit code is not allowed.
check_image() {
    local img=$1 allowed=$2 out rc ok tries=0
    # A process killed with I/O in flight on its io_uring lets go of its
    # files (and of the lock bytes on them) only when the kernel has torn
    # the ring down, which it does in the background after the exit: a
    # check right after the kill may still find the image locked.
    while :; do
        out=$(qemu-img check "$img" 2>&1)
        rc=$?
        case $out in *'Failed to get shared "write" lock'*) ;; *) break ;; esac
        [ $((tries += 1)) -le 100 ] || break
        sleep 0.1
    done
    for ok in $allowed; do
        [ "$rc" = "$ok" ] && return 0
    done
    echo "$out" >&2
    echo "qemu-img check $img exited $rc (allowed: $allowed)" >&2
    return 1
}

# The virtual content of an image (its whole chain) as a raw file.
to_raw() {
    qemu-img convert -O raw "$1" "$2" || fail "qemu-img convert $1"
}

# Fill an image with a fixed mix of data, zeros and holes, so that a
# backing file has something to show through: qemu-io writes, patterned
# per region, at offsets derived from a small seed.
fill_with_qemu_io() {
    local img=$1 size_mb=$2 seed=$3 i=0 off len pat
    set --
    while [ $i -lt 24 ]; do
        len=$(( 1 + (seed * 31 + i * 17) % 700 ))
        off=$(( (seed * 7919 + i * 104729) % (size_mb * 1024 - len) ))k
        len=${len}k
        pat=$(( (seed + i * 37) % 255 + 1 ))
        if [ $((i % 5)) = 4 ]; then
            set -- "$@" -c "write -z $off $len"
        else
            set -- "$@" -c "write -P $pat $off $len"
        fi
        i=$((i + 1))
    done
    qemu-io -f qcow2 "$@" "$img" >/dev/null || fail "qemu-io fill $img"
}
