#!/bin/bash
# The main job on built-in defaults, until the server exists: make a VM
# disk, back it up as a full QCOW2 image and a 4 KiB-granular incremental
# over it, check and map the chain, then consolidate it with commit.
# Everything happens in a scratch folder (or the one given), with the
# library's own tool only.
set -euo pipefail
cd "$(dirname "$0")/.."
img=$(pwd)/build/qcow2/sendense-img
[ -x "$img" ] || { echo "demo: build first: ./scripts/setup.sh" >&2; exit 1; }
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
printf '\ndemo: done, files in %s\n' "$work"
