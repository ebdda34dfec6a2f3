# Sourced (after functions.sh and server-lib.sh) by test-nbd-protocol.sh
# and test-nbd-hostile.sh.
#
# nbd_python              print a python3 that can `import nbd` (libnbd's
#                         binding; pyenv and friends may hide Debian's)
# srv_connection_count    how many connections connection.list shows
# eventually_connections N [SECONDS]  wait (default up to 30 s) until
#                         connection.list shows exactly N; fails (status
#                         1) if it never does

nbd_python() {
    local p
    for p in python3 /usr/bin/python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import nbd' 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

srv_connection_count() {
    srv_rpc connection.list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["connections"]))'
}

eventually_connections() {
    local want=$1 end=$((SECONDS + ${2:-30}))
    while [ "$(srv_connection_count)" != "$want" ]; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.2
    done
}
