#!/bin/bash
# Exports as deployments use them: systemd readiness, --check-config,
# temporary overlays, locks against other processes (qemu's tools and a
# second server), and nbd-server INI configs.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
requires qemu-img qemu-io nbdinfo nbdcopy

wait_for() {  # wait_for SECONDS CMD...: until CMD succeeds (generous)
    local t=$1 i
    shift
    for i in $(seq 1 $((t * 20))); do "$@" && return 0; sleep 0.05; done
    return 1
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

# --- systemd readiness protocol -------------------------------------------
"$PYTHON" "$top_srcdir/tests/tools/notify-listen.py" "$scratch/notify.sock" \
    "$scratch/notify.txt" &
listener=$!
cleanup_fn "kill $listener 2>/dev/null"
wait_for 10 test -S "$scratch/notify.sock" || fail "notify socket missing"
export NOTIFY_SOCKET=$scratch/notify.sock
srv_start
unset NOTIFY_SOCKET
wait_for 10 grep -q '^READY=1' "$scratch/notify.txt" || fail "no READY=1"
kill -HUP "$SRV_PID"
wait_for 10 grep -q 'RELOADING=1' "$scratch/notify.txt" || fail "no RELOADING=1"
ready_twice() { [ "$(grep -c '^READY=1' "$scratch/notify.txt")" -ge 2 ]; }
wait_for 10 ready_twice || fail "no READY=1 after the reload"
srv_stop
grep -q 'STOPPING=1' "$scratch/notify.txt" || fail "no STOPPING=1"
echo "systemd notifications: $(tr '\n' ' ' < "$scratch/notify.txt")"

# --- --check-config --------------------------------------------------------
mkdir -p "$scratch/cc/exports.d"
printf 'export_dir: %s\ncontrol_socket: %s\n' "$scratch/cc/exports.d" \
    "$scratch/cc/ctl.sock" > "$scratch/cc/main.yaml"
truncate -s 1M "$scratch/cc/a.raw"
printf 'name: a\npath: %s\n' "$scratch/cc/a.raw" > "$scratch/cc/exports.d/a.yaml"
out=$("$SENDENSE_NBD" --check-config -c "$scratch/cc/main.yaml") ||
    fail "--check-config refused a good config: $out"
printf 'name: b\npath: [unclosed\n' > "$scratch/cc/exports.d/b.yaml"
if out=$("$SENDENSE_NBD" --check-config -c "$scratch/cc/main.yaml" 2>&1); then
    fail "--check-config accepted a broken export file"
fi
echo "$out" | grep -q "b.yaml:[0-9]" || fail "no file:line in: $out"
rm "$scratch/cc/exports.d/b.yaml"
printf '[generic]\nauthfile = /etc/nbd-server/allow\n' > "$scratch/cc/nbd.conf"
if out=$("$SENDENSE_NBD" --check-config -c "$scratch/cc/nbd.conf" 2>&1); then
    fail "--check-config accepted authfile"
fi
echo "$out" | grep -q authfile || fail "authfile not named in: $out"

# --- temporary overlay ------------------------------------------------------
srv_start
head -c 8M /dev/urandom > "$scratch/base.raw"
must "$SENDENSE_IMG" convert -O qcow2 "$scratch/base.raw" "$scratch/base.qcow2"
before=$(sha "$scratch/base.qcow2")
srv_export restore "$scratch/base.qcow2" "overlay: temporary"
must qemu-io -f raw -c 'write -P 0x77 1M 64k' -c 'write -z 3M 1M' "$(srv_uri restore)"
# A second connection sees the same overlay.
must qemu-io -f raw -c 'read -P 0x77 1M 64k' -c 'read -P 0 3M 1M' "$(srv_unix_uri restore)"
nbdcopy "$(srv_uri restore)" "$scratch/restored.raw"
cmp -n 1M "$scratch/base.raw" "$scratch/restored.raw" ||
    fail "overlay: unwritten data differs from the base"
[ "$(sha "$scratch/base.qcow2")" = "$before" ] || fail "the base image was written"
overlay_pid=$SRV_PID
srv_stop
[ "$(sha "$scratch/base.qcow2")" = "$before" ] || fail "the base image changed at stop"
must qemu-img check "$scratch/base.qcow2"
leftover=$(find "${TMPDIR:-/var/tmp}" -maxdepth 1 -name "overlay-$overlay_pid-*" 2>/dev/null | wc -l)
[ "$leftover" = 0 ] || fail "overlay files left behind"

# --- locks: qemu's tools and a second server --------------------------------
srv_start
must "$SENDENSE_IMG" create -q -f qcow2 "$scratch/full.qcow2" 16M
must "$SENDENSE_IMG" create -q -f qcow2 -b "$scratch/full.qcow2" -F qcow2 \
    -o extended_l2=on "$scratch/incr.qcow2"
srv_export incr "$scratch/incr.qcow2"
if out=$(qemu-io -f qcow2 -c 'write 0 4k' "$scratch/incr.qcow2" 2>&1); then
    fail "qemu-io wrote an image sendense-nbd has open for writing"
fi
echo "$out" | grep -qi "lock" || fail "qemu-io failed without a lock error: $out"
if out=$(qemu-io -f qcow2 -c 'write 0 4k' "$scratch/full.qcow2" 2>&1); then
    fail "qemu-io wrote the backing file of an exported image"
fi
echo "$out" | grep -qi "lock" || fail "backing write failed without a lock error: $out"
must qemu-img info -U "$scratch/incr.qcow2"

# A second server refuses to open it writable, with a clear reason, and
# keeps serving everything else.
first_pid=$SRV_PID
# srv_start sets up $scratch/srv again: move the first server's folder
# aside (its sockets are open; the files can move).
mv "$scratch/srv" "$scratch/srv1"
SRV_PID=
srv_start
truncate -s 1M "$scratch/other.raw"
srv_export other "$scratch/other.raw"
srv_export_unchecked incr "$scratch/incr.qcow2"
state=$(srv_rpc export.list | "$PYTHON" -c '
import json, sys
for e in json.load(sys.stdin)["exports"]:
    print(e["name"], e["state"], e.get("problem", "").replace(" ", "_"))')
echo "$state" | grep -q "^other serving" || fail "second server: other not served: $state"
echo "$state" | grep -q "^incr failed" || fail "second server opened a locked image: $state"
echo "$state" | grep "^incr" | grep -qi "lock" || fail "no lock reason: $state"
nbdinfo --size "$(srv_uri other)" >/dev/null || fail "second server stopped serving"
grep -qi "incr.*lock" "$SRV_LOG" || fail "the refusal is not in the log"
srv_stop
kill -TERM "$first_pid"; wait "$first_pid" ||
    { st=$?; tail -20 "$scratch/srv1/server.log" >&2; fail "first server exit status $st"; }

# --- nbd-server INI config ---------------------------------------------------
port=$(free_tcp_port)
truncate -s 4M "$scratch/ini.raw"
cat > "$scratch/nbd-server.conf" <<INI
[generic]
port = $port
listenaddr = 127.0.0.1
[disk1]
exportname = $scratch/ini.raw
readonly = true
INI
# From $scratch: an INI file names no control socket, so the default
# (./var/run/control.sock) is made there.
(cd "$scratch" && exec "$SENDENSE_NBD" --foreground -c "$scratch/nbd-server.conf") \
    > "$scratch/ini.log" 2>&1 &
ini_pid=$!
cleanup_fn "kill -9 $ini_pid 2>/dev/null"
wait_for 20 nbdinfo --size "nbd://127.0.0.1:$port/disk1" >/dev/null 2>&1 ||
    { cat "$scratch/ini.log" >&2; fail "INI config not served"; }
[ "$(nbdinfo --size "nbd://127.0.0.1:$port/disk1")" = 4194304 ] || fail "INI export size"
nbdinfo --json "nbd://127.0.0.1:$port/disk1" | grep -q '"is_read_only": true' ||
    fail "INI readonly not applied"
kill -TERM "$ini_pid"; wait "$ini_pid" ||
    { st=$?; cat "$scratch/ini.log" >&2; fail "INI server exit status $st"; }
echo "exports: all checks passed"
