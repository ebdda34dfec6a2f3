#!/bin/bash
# A client that never sends FLUSH loses nothing: when a connection that
# wrote goes (DISC, an abrupt close, connection.close, export.remove),
# the server flushes the image. Seen in the library's write log (the
# power-loss test mode, SENDENSE_WRITE_LOG): after the client's last
# write, a FLUSH record must follow.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"

wlog=$scratch/wlog
export SENDENSE_WRITE_LOG=$wlog
srv_start
unset SENDENSE_WRITE_LOG
truncate -s 64M "$scratch/disk.raw"
must "$SENDENSE_IMG" create -q -f qcow2 "$scratch/disk.qcow2" 64M

# Every flush so far covers every write: the state before each case.
covered() { "$PYTHON" "$top_srcdir/tests/tools/wlog-tail.py" "$wlog"; }
eventually_covered() {
    local i
    for i in $(seq 1 600); do covered > /dev/null && return 0; sleep 0.05; done
    covered
    return 1
}
write_then() {  # write_then URI HOW: write 1 MiB without FLUSH, then HOW
    "$PYTHON" - "$1" "$2" <<'PY'
import os, socket, sys, nbd
uri, how = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.connect_uri(uri)
for i in range(16):
    h.pwrite(os.urandom(65536), i * 65536)
if how == "disc":
    h.shutdown()
elif how == "abrupt":
    os._exit(0)          # the socket closes with the process, no DISC
elif how == "hold":
    import time
    sys.stdout.write("written\n"); sys.stdout.flush()
    time.sleep(600)      # held open until the test kills us
PY
}

for kind in raw qcow2; do
    srv_export $kind "$scratch/disk.$kind"
    for how in disc abrupt; do
        write_then "$(srv_uri $kind)" $how || fail "$kind/$how: client failed"
        eventually_covered || fail "$kind/$how: no flush after the last write"
        echo "$kind/$how: $(covered)"
    done
done

# connection.close and export.remove (drain: false) of a writer.
for how in close remove; do
    write_then "$(srv_unix_uri raw)" hold > "$scratch/hold.out" &
    holder=$!
    waited_from=$(date +%T.%N) why=timeout
    # Generous: a loaded machine running the sanitizer build is slow.
    for _ in $(seq 1 2400); do
        grep -q written "$scratch/hold.out" && break
        kill -0 "$holder" 2>/dev/null || { why="writer gone"; break; }
        sleep 0.05
    done
    if ! grep -q written "$scratch/hold.out"; then
        alive=no
        kill -0 "$holder" 2>/dev/null && alive=yes
        # Seen once more by hand (2026-12-07, a CPU hog beside it): three
        # runs took 13 s in all, so this wait ended early. connection.list
        # was empty, and the log, read after it, had the writer connected
        # and served (perhaps only by then). The times below order the two.
        echo "waited from $waited_from to $(date +%T.%N), ended by: $why;" \
             "the writer printed: $(cat "$scratch/hold.out")" >&2
        srv_rpc connection.list >&2 || :
        # Seen once in CI and once in 4 loaded -j2 runs by hand: the server
        # had read all 16 writes and the client waited for a reply.
        # Where the server's threads and rings stand, for next time.
        for f in /proc/"$SRV_PID"/fdinfo/*; do
            grep -q CqMask "$f" 2>/dev/null && { echo "== $f"; cat "$f"; } >&2
        done
        ps -L -o tid,comm,stat,wchan:30 -p "$SRV_PID" >&2 || :
        cat /proc/"$SRV_PID"/task/*/stack >&2 2>/dev/null || :
        tail -20 "$SRV_LOG" >&2
        kill "$holder" 2>/dev/null
        fail "$how: the writer did not write (still running: $alive)"
    fi
    id=$(srv_rpc connection.list | "$PYTHON" -c '
import json, sys
print([c["id"] for c in json.load(sys.stdin)["connections"] if c.get("export") == "raw"][0])')
    if [ $how = close ]; then
        srv_rpc connection.close "{\"id\": $id}" > /dev/null
    else
        srv_rpc export.remove '{"name": "raw", "drain": false}' > /dev/null
    fi
    eventually_covered || fail "$how: no flush after the last write"
    echo "raw/$how: $(covered)"
    kill "$holder" 2>/dev/null
    wait "$holder" 2>/dev/null || :
    [ $how = close ] || srv_export raw "$scratch/disk.raw"
done
srv_stop
covered > /dev/null || fail "writes not flushed at stop"
