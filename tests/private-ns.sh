# Sourced first by the tests that mount file systems (restore): re-runs
# the test in a mount namespace of its own, so whatever it leaves mounted
# goes with it; skips without root.
if [ "${SD_RESTORE_TEST_IN_NS:-}" != 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "$0: SKIP: mounts and loop devices need root"; exit 77; }
    export SD_RESTORE_TEST_IN_NS=1
    exec unshare --mount --propagation private "$BASH" "$0" "$@"
fi
