# Sourced (after functions.sh and server-lib.sh) by test-nbd-reload.sh and
# test-nbd-control.sh: NBD clients that run beside the test, and waiting
# for the server to show a state.
#
# NBD_PY                 a python3 that imports libnbd's binding (skip 77
#                        when there is none: python3-libnbd is not ours);
#                        NBD_RPC (server-lib.sh) is made to use it too
# nbd_client ARGS...     tools/reload-nbd.py (writer, hold, verify, rw, ops)
# expect_export NAME [--timeout S] KEY=VALUE... | --absent
#                        wait for export.get to show it, else fail
# jget EXPR              print EXPR evaluated on the JSON read from stdin
#                        (bound to r); strings bare, the rest as JSON
# jcheck CODE            exit 0 when CODE, python statements ending in an
#                        expression, finds that expression true of the
#                        JSON (r; the environment is env)
# write_export_file NAME LINE...   write NAME.yaml atomically, no reload
# wait_for_file FILE     wait (generous bound) until FILE exists
# client_start ID MODE ARGS...     run nbd_client MODE ARGS... DIR in the
#                        background, DIR=$scratch/client-ID; sets
#                        CLIENT_PID[ID] and CLIENT_DIR[ID]
# client_stop ID         create DIR/stop, wait; returns its exit status

NBD_PY=
for _py in python3 /usr/bin/python3; do
    if command -v "$_py" >/dev/null 2>&1 &&
        NBD_PY=$("$_py" -c 'import nbd, sys; print(sys.executable)' 2>/dev/null); then
        break
    fi
    NBD_PY=
done
if [ -z "$NBD_PY" ]; then
    echo "$0: SKIP: no python3 with libnbd's binding (python3-libnbd)"
    exit 77
fi

RELOAD_TOOLS=$top_srcdir/tests/tools
# The same interpreter for every helper: it is known to work, and it is
# the interpreter itself rather than a wrapper (some python3 on PATH are
# shell shims that take most of a second to start).
NBD_RPC="$NBD_PY $RELOAD_TOOLS/nbd-rpc.py"

nbd_client() {
    "$NBD_PY" "$RELOAD_TOOLS/reload-nbd.py" "$@"
}

expect_export() {
    "$NBD_PY" "$RELOAD_TOOLS/reload-expect.py" "$SRV_CTL" "$@" ||
        fail "export $1 did not come to: ${*:2}"
}

jget() {
    "$NBD_PY" -c '
import json, sys
r = json.load(sys.stdin)
v = eval(sys.argv[1])
print(v if isinstance(v, str) else json.dumps(v))' "$1"
}

jcheck() {
    "$NBD_PY" -c '
import ast, json, os, sys
tree = ast.parse(sys.argv[1].strip())
last = tree.body.pop()
ns = {"r": json.load(sys.stdin), "env": os.environ, "json": json}
exec(compile(tree, "jcheck", "exec"), ns)
sys.exit(0 if eval(compile(ast.Expression(last.value), "jcheck", "eval"), ns) else 1)' "$1"
}

write_export_file() {
    local name=$1 line
    shift
    {
        echo "name: $name"
        for line in "$@"; do echo "$line"; done
    } > "$SRV_EXPORTS/.$name.yaml.tmp"
    mv "$SRV_EXPORTS/.$name.yaml.tmp" "$SRV_EXPORTS/$name.yaml"
}

wait_for_file() {
    local i
    for i in $(seq 1 1200); do
        [ -e "$1" ] && return 0
        sleep 0.05
    done
    fail "$1 did not appear"
}

declare -A CLIENT_PID CLIENT_DIR

client_start() {
    local id=$1 mode=$2
    shift 2
    CLIENT_DIR[$id]=$scratch/client-$id
    rm -rf "${CLIENT_DIR[$id]}"
    mkdir -p "${CLIENT_DIR[$id]}"
    nbd_client "$mode" "$@" "${CLIENT_DIR[$id]}" \
        > "${CLIENT_DIR[$id]}/out" 2>&1 &
    CLIENT_PID[$id]=$!
    cleanup_fn "kill ${CLIENT_PID[$id]} 2>/dev/null"
}

client_stop() {
    local id=$1 rc=0
    touch "${CLIENT_DIR[$id]}/stop"
    wait "${CLIENT_PID[$id]}" || rc=$?
    return $rc
}

# client_count ID: the number in the client's status file (0 if none yet).
client_count() {
    local f=${CLIENT_DIR[$1]}/status
    if [ -e "$f" ]; then
        awk '{print $2}' "$f"
    else
        echo 0
    fi
}

# client_wait_past ID N: wait (generous bound) until the client's count
# passes N, i.e. it made progress since N was read. Fails if it exits.
client_wait_past() {
    local id=$1 n=$2 i
    for i in $(seq 1 1200); do
        [ "$(client_count "$id")" -gt "$n" ] && return 0
        kill -0 "${CLIENT_PID[$id]}" 2>/dev/null ||
            { cat "${CLIENT_DIR[$id]}/out" >&2; fail "client $id exited"; }
        sleep 0.05
    done
    fail "client $id made no progress past $n"
}
