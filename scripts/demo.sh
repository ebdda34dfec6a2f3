#!/bin/bash
# The main job on built-in defaults. First the image library: make a VM
# disk, back it up as a full QCOW2 image and a 4 KiB-granular incremental
# over it, check and map the chain, consolidate it with commit. Then the
# server: sendense-nbd on its built-in defaults (127.0.0.1:10809, a unix
# socket and ./var/exports.d under the demo folder), a backup export
# added by dropping a file and sending SIGHUP, a client (libnbd's
# nbdcopy) writing a disk into it over NBD and reading it back, the
# export's counters from the control socket, and a clean stop.
# Everything happens in a scratch folder (or the one given).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
img=$top/build/qcow2/sendense-img
nbd=$top/build/server/sendense-nbd
[ -x "$img" ] && [ -x "$nbd" ] || { echo "demo: build first: ./scripts/setup.sh" >&2; exit 1; }
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/sendense-demo.XXXXXX")}
mkdir -p "$work"
cd "$work"
step() { printf '\n== %s\n' "$*"; }

step "A 256 MiB VM disk with 24 MiB of data in three places (disk.raw)"
truncate -s 256M disk.raw
for at in 0 100 200; do
    dd if=/dev/urandom of=disk.raw bs=1M seek=$at count=8 conv=notrunc status=none
done
du -h --apparent-size disk.raw; du -h disk.raw

step "Full backup: convert to QCOW2, zeros skipped (full.qcow2)"
"$img" convert -O qcow2 disk.raw full.qcow2
"$img" info full.qcow2

step "Incremental over it with extended L2 entries (incr.qcow2)"
"$img" create -q -b full.qcow2 -F qcow2 -o extended_l2=on incr.qcow2
# 64 changed 4 KiB blocks, 3 MiB apart, as a Capture Agent would write them.
"$img" bench -q -w -c 64 -d 8 -s 4k -S 3M --pattern=90 incr.qcow2

step "The chain"
"$img" info --backing-chain incr.qcow2

step "What the incremental holds (depth 0) and what it reads through"
"$img" map incr.qcow2 >map.txt
head -12 map.txt
echo "incremental on the host: $(du -k incr.qcow2 | cut -f1) KiB for 256 KiB changed"

step "Check both images"
"$img" check full.qcow2
"$img" check incr.qcow2

step "Consolidate: commit the incremental into the full backup"
"$img" commit incr.qcow2
"$img" check full.qcow2
"$img" map full.qcow2 >map.txt
head -8 map.txt

step "The server on built-in defaults (run from $work)"
"$nbd" --foreground >server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || :' EXIT
for _ in $(seq 100); do [ -S var/run/control.sock ] && break; sleep 0.05; done
rpc() { /usr/bin/python3 "$top/tests/tools/nbd-rpc.py" var/run/control.sock "$@"; }
rpc server.info

step "A backup target: a new QCOW2 image exported writable (file + SIGHUP)"
name=backup-demo-disk0-full-$(date -u +%Y%m%dT%H%M%S)
"$img" create -q -f qcow2 target.qcow2 256M
printf 'name: %s\npath: %s\n' "$name" "$work/target.qcow2" >var/exports.d/.tmp
mv var/exports.d/.tmp "var/exports.d/$name.yaml"
kill -HUP $server
for _ in $(seq 100); do rpc export.get "{\"name\":\"$name\"}" >/dev/null 2>&1 && break; sleep 0.05; done
nbdinfo --list nbd://127.0.0.1 | sed -n '1,8p'

step "A client writes the disk into it over NBD, then reads it back"
nbdcopy --progress=0 disk.raw "nbd://127.0.0.1/$name" 2>/dev/null || nbdcopy disk.raw "nbd://127.0.0.1/$name"
nbdcopy "nbd+unix:///$name?socket=$work/var/run/nbd.sock" back.raw
sha256sum disk.raw back.raw
cmp disk.raw back.raw && echo "read back over the unix socket: identical"
nbdinfo --map "nbd://127.0.0.1/$name" | head -6

step "Progress counters (export.stats on the control socket)"
rpc export.stats "{\"name\":\"$name\"}"

step "Stop (SIGTERM: drain, flush, close), then check the written image"
kill -TERM $server
wait $server
trap - EXIT
tail -4 server.log
"$img" check target.qcow2
printf '\ndemo: done, files in %s\n' "$work"
printf 'Run the server yourself: cd %s && %s --foreground\n' "$work" "$nbd"
