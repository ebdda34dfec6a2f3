# Sourced (after functions.sh and server-lib.sh) by tests that drive a
# running sendensed next to a sendense-nbd started by srv_start.
#
# sdd_config [YAML...]   write the config of the next sdd_start (sockets
#                        of the running sendense-nbd, the repositories
#                        $SDD_REPOSITORIES or else "main" at $REPO,
#                        restore_runtime_dir $SDD_RT) and the
#                        YAML lines given
# sdd_start / sdd_stop / sdd_kill   start and wait for its socket;
#                        SIGTERM (exit 0, no sanitizer report); SIGKILL
# sdd_rpc METHOD [JSON]  the result (fails the test on an error)
# sdd_error METHOD JSON  the call must fail: prints its error object
# jget EXPR / jcheck EXPR   read the JSON on stdin with a python
#                        expression over r (jcheck: exit status)
# write_blocks URI FILE BLOCK...   write those 64 KiB blocks of FILE at
#                        the same offsets through NBD (python3-libnbd)
# sdd_call_paused PAUSE OUT METHOD JSON   the call in the background
#                        (BG_PID, its answer in OUT) until the daemon,
#                        started with SENDENSED_TEST_PAUSE_AT, creates
#                        the file PAUSE
# remember_loops / assert_nothing_left WHAT   restore tests: note the
#                        loop devices of the mounts now up; fail unless
#                        no mount, loop device, nbdfuse, restore export
#                        or runtime folder of restore is left
#
# Sets SDD_DIR SDD_SOCK SDD_LOG REPO SDD_PID SDD_RT and SENDENSED.

SENDENSED=${SENDENSED:-$(cd "$top_builddir/catalog" 2>/dev/null && pwd)/sendensed}
if [ ! -x "$SENDENSED" ]; then
    echo "$0: ERROR: $SENDENSED was not built" >&2
    exit 99
fi

SDD_DIR=$scratch/sdd
SDD_SOCK=$SDD_DIR/sendensed.sock
SDD_LOG=$SDD_DIR/sendensed.log
SDD_RT=$SDD_DIR/restore         # restore_runtime_dir
REPO=$scratch/repo
SDD_PID=
mkdir -p "$SDD_DIR"

jget() {
    "$PYTHON" -c '
import json, sys
r = json.load(sys.stdin)
v = eval(sys.argv[1])
print(v if isinstance(v, str) else json.dumps(v))' "$1"
}

jcheck() {
    "$PYTHON" -c '
import json, os, sys
r = json.load(sys.stdin)
sys.exit(0 if eval(sys.argv[1], {"r": r, "env": os.environ}) else 1)' "$1"
}

sdd_config() {
    local line repos=${SDD_REPOSITORIES:-}
    [ -n "$repos" ] || repos="[{name: main, path: $REPO}]"
    {
        echo "control_socket: $SDD_SOCK"
        echo "nbd_control_socket: $SRV_CTL"
        echo "nbd_uri_base: \"nbd+unix:///{name}?socket=$SRV_SOCK\""
        echo "repositories: $repos"
        echo "restore_runtime_dir: $SDD_RT"
        for line in "$@"; do echo "$line"; done
    } > "$SDD_DIR/sendensed.yaml"
}

sdd_start() {
    local i
    "$SENDENSED" --foreground -c "$SDD_DIR/sendensed.yaml" >> "$SDD_LOG" 2>&1 &
    SDD_PID=$!
    for i in $(seq 1 600); do
        if [ -S "$SDD_SOCK" ] && $NBD_RPC "$SDD_SOCK" daemon.info >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$SDD_PID" 2>/dev/null || { cat "$SDD_LOG" >&2; fail "sendensed exited at start"; }
        sleep 0.05
    done
    cat "$SDD_LOG" >&2
    fail "sendensed did not come up"
}

sdd_kill() {
    if [ -n "$SDD_PID" ] && kill -0 "$SDD_PID" 2>/dev/null; then
        kill -KILL "$SDD_PID"
        wait "$SDD_PID" 2>/dev/null
    fi
    SDD_PID=
}
cleanup_fn sdd_kill

sdd_check_log() {
    if grep -E "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$SDD_LOG" >/dev/null; then
        cat "$SDD_LOG" >&2
        fail "sanitizer report in the sendensed log"
    fi
}

sdd_stop() {
    local rc=0
    kill -TERM "$SDD_PID"
    wait "$SDD_PID" || rc=$?
    SDD_PID=
    sdd_check_log
    [ "$rc" = 0 ] || { tail -20 "$SDD_LOG" >&2; fail "sendensed exited with status $rc after SIGTERM"; }
    [ ! -e "$SDD_SOCK" ] || fail "sendensed left its socket behind"
}

sdd_rpc() {
    local out
    out=$($NBD_RPC "$SDD_SOCK" "$@") || { tail -5 "$SDD_LOG" >&2; fail "sendensed call $* failed"; }
    printf '%s\n' "$out"
}

sdd_error() {
    local err
    if err=$($NBD_RPC "$SDD_SOCK" "$1" "$2" 2>&1 >/dev/null); then
        fail "sendensed $1 $2 succeeded"
    fi
    printf '%s\n' "$err"
}

sdd_call_paused() {
    local i
    $NBD_RPC "$SDD_SOCK" "$3" "$4" > "$2" 2>&1 &
    BG_PID=$!
    for i in $(seq 1 1200); do
        [ -e "$1" ] && return 0
        kill -0 "$BG_PID" 2>/dev/null || fail "$3 ended before its pause: $(cat "$2")"
        sleep 0.05
    done
    fail "$3 never reached its pause"
}

write_blocks() {
    "$PYTHON" - "$@" <<'EOF' || fail "writing blocks through NBD"
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
with open(sys.argv[2], "rb") as f:
    for b in sys.argv[3:]:
        f.seek(int(b) * 65536)
        h.pwrite(f.read(65536), int(b) * 65536)
h.flush()
h.shutdown()
EOF
}

# --- restore: checks that nothing is left ----------------------------------

# Loop devices backed by a file under $SDD_RT, as sysfs names them; every
# one ever seen is remembered, to check later that it was detached
# (sysfs shows "/disk" for nbdfuse's file once its namespace is gone).
# nbdfuse's file is in sendensed's namespace, out of our root's reach, so
# the kernel names it from the global root: when the suite runs in a
# chroot, the chroot's own folder comes first, hence *"$SDD_RT"/*.
SEEN_LOOPS=
our_loops() {
    local f b
    for f in /sys/block/loop*/loop/backing_file; do
        [ -e "$f" ] || continue
        b=$(cat "$f" 2>/dev/null) || continue
        case $b in *"$SDD_RT"/*) echo "${f%/loop/backing_file}" ;; esac
    done
}
# A device is remembered with its diskseq, which the kernel bumps at
# each attach: a loop device released by us and reused by someone else
# (another test run on the machine) is not ours any more.
remember_loops() {
    local l now=
    for l in $(our_loops); do
        now="$now $l:$(cat "$l/diskseq" 2>/dev/null || echo 0)"
    done
    SEEN_LOOPS="${SEEN_LOOPS:+$SEEN_LOOPS }${now# }"
}
loops_left() {
    local entry l seq b
    for entry in $SEEN_LOOPS; do
        l=${entry%:*}
        seq=${entry##*:}
        b=$(cat "$l/loop/backing_file" 2>/dev/null) || continue
        [ "$(cat "$l/diskseq" 2>/dev/null || echo 0)" = "$seq" ] || continue
        case $b in *"$SDD_RT"/* | /disk) echo "$l $b" ;; esac
    done
    losetup -a | grep -F "$SDD_RT/" || :
}
daemon_mounts() {
    [ -n "$SDD_PID" ] || return 0
    grep -F " $SDD_RT/" "/proc/$SDD_PID/mountinfo" || :
}
our_nbdfuse() { pgrep -a -f "^nbdfuse .*$SDD_RT/" || :; }
restore_exports() {
    srv_rpc export.list | jget '" ".join(sorted(e["name"] for e in r["exports"] if e["name"].startswith("restore-")))'
}

assert_nothing_left() {
    local what=$1 left
    left=$(daemon_mounts)
    [ -z "$left" ] || fail "$what: mounts left in sendensed's namespace: $left"
    left=$(grep -F " $SDD_RT/" /proc/self/mountinfo || :)
    [ -z "$left" ] || fail "$what: mounts left in the test's namespace: $left"
    left=$(loops_left)
    [ -z "$left" ] || fail "$what: loop devices left: $left"
    left=$(our_nbdfuse)
    [ -z "$left" ] || fail "$what: nbdfuse left: $left"
    left=$(restore_exports)
    [ -z "$left" ] || fail "$what: restore exports left in sendense-nbd: $left"
    if [ -d "$SDD_RT" ]; then
        left=$(ls -A "$SDD_RT")
        [ -z "$left" ] || fail "$what: folders left in $SDD_RT: $left"
    fi
}
