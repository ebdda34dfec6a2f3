# Sourced (after functions.sh) by tests that drive a running sendense-nbd.
#
# srv_start [YAML...]   start a server in $scratch/srv (config written
#                       there; extra main-file YAML lines may be given),
#                       wait until its control socket answers; sets
#                       SRV_PID SRV_PORT SRV_SOCK SRV_CTL SRV_DIR
#                       SRV_EXPORTS SRV_LOG
# srv_rpc METHOD [JSON] print the result of a control call (fails the
#                       test on a JSON-RPC error); srv_rpc_may_fail
#                       returns the exit status instead
# srv_export NAME PATH [YAML...]  write an export file, reload, and
#                       require the export to be serving
# srv_stop              SIGTERM, wait, require exit status 0 and no
#                       sanitizer report in the log
# srv_uri NAME / srv_unix_uri NAME   nbd:// and nbd+unix:// URIs
#
# SENDENSE_NBD may name another binary. Python helpers that import nbd
# must run with $PYTHON.

SENDENSE_NBD=${SENDENSE_NBD:-$(cd "$top_builddir/server" 2>/dev/null && pwd)/sendense-nbd}
if [ ! -x "$SENDENSE_NBD" ]; then
    echo "$0: ERROR: $SENDENSE_NBD was not built" >&2
    exit 99
fi
# Debian's python3 has the libnbd module (python3-libnbd); a python3
# earlier in PATH (pyenv, venv) may not.
PYTHON=${PYTHON:-/usr/bin/python3}
NBD_RPC="$PYTHON $top_srcdir/tests/tools/nbd-rpc.py"

free_tcp_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

srv_start() {
    local line i
    SRV_DIR=$scratch/srv
    SRV_EXPORTS=$SRV_DIR/exports.d
    SRV_SOCK=$SRV_DIR/nbd.sock
    SRV_CTL=$SRV_DIR/control.sock
    SRV_LOG=$SRV_DIR/server.log
    SRV_PORT=$(free_tcp_port)
    mkdir -p "$SRV_EXPORTS"
    {
        echo "listen:"
        echo "  - tcp: 127.0.0.1:$SRV_PORT"
        echo "  - unix: $SRV_SOCK"
        echo "export_dir: $SRV_EXPORTS"
        echo "control_socket: $SRV_CTL"
        for line in "$@"; do echo "$line"; done
    } > "$SRV_DIR/sendense-nbd.yaml"
    "$SENDENSE_NBD" --foreground -c "$SRV_DIR/sendense-nbd.yaml" \
        >> "$SRV_LOG" 2>&1 &
    SRV_PID=$!
    cleanup_fn "srv_kill"
    for i in $(seq 1 200); do
        if [ -S "$SRV_CTL" ] && $NBD_RPC "$SRV_CTL" server.info >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$SRV_PID" 2>/dev/null || { cat "$SRV_LOG" >&2; fail "server exited at start"; }
        sleep 0.05
    done
    cat "$SRV_LOG" >&2
    fail "server did not come up"
}

srv_kill() {
    if [ -n "${SRV_PID:-}" ] && kill -0 "$SRV_PID" 2>/dev/null; then
        kill -KILL "$SRV_PID" 2>/dev/null
        wait "$SRV_PID" 2>/dev/null
    fi
    SRV_PID=
}

srv_rpc_may_fail() {
    $NBD_RPC "$SRV_CTL" "$@"
}

srv_rpc() {
    local out
    out=$($NBD_RPC "$SRV_CTL" "$@") || fail "control call $* failed"
    printf '%s\n' "$out"
}

# srv_export_unchecked: the same, whatever state the export ends in.
srv_export_unchecked() {
    local name=$1 path=$2 line
    shift 2
    {
        echo "name: $name"
        echo "path: $path"
        for line in "$@"; do echo "$line"; done
    } > "$SRV_EXPORTS/.$name.yaml.tmp"
    mv "$SRV_EXPORTS/.$name.yaml.tmp" "$SRV_EXPORTS/$name.yaml"
    srv_rpc server.reload > /dev/null
}

# srv_export: the export must be serving afterwards (a typo in a test's
# YAML fails here, with the server's reason, not later).
srv_export() {
    local state
    srv_export_unchecked "$@"
    state=$(srv_rpc export.get "{\"name\": \"$1\"}" | "$PYTHON" -c '
import json, sys
e = json.load(sys.stdin)
print(e["state"], e.get("problem", ""))') || fail "export $1 is not defined"
    case $state in
    serving*) ;;
    *) fail "export $1: $state" ;;
    esac
}

srv_uri() { echo "nbd://127.0.0.1:$SRV_PORT/$1"; }
srv_unix_uri() { echo "nbd+unix:///$1?socket=$SRV_SOCK"; }

# The server log without the sanitizer runtime's coroutine warning.
srv_check_log() {
    if grep -E "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$SRV_LOG" >/dev/null; then
        cat "$SRV_LOG" >&2
        fail "sanitizer report in the server log"
    fi
    # Every reference to an image is gone before the server closes its
    # images at exit; one left is a leak or a race in the stop.
    if grep -q "still referenced at exit" "$SRV_LOG"; then
        cat "$SRV_LOG" >&2
        fail "an image was still referenced at exit"
    fi
}

srv_stop() {
    local rc=0
    [ -n "${SRV_PID:-}" ] || return 0
    kill -TERM "$SRV_PID"
    wait "$SRV_PID" || rc=$?
    SRV_PID=
    srv_check_log
    [ "$rc" = 0 ] || { tail -20 "$SRV_LOG" >&2; fail "server exited with status $rc after SIGTERM"; }
}
