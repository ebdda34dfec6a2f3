#!/bin/bash
# The whole product end to end, in a new scratch folder (or the empty one
# given): a small VM disk (GPT, ext4 with files), sendense-nbd
# and sendensed on unix sockets, a full backup by sendense-capture, files
# changed in the guest, an incremental holding only what changed, the
# chain, a changed file restored from the incremental, and a clean stop.
# Usage: scripts/demo.sh [DIR]   (binaries from $SENDENSE_BUILD, else ./build)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${SENDENSE_BUILD:-$top/build}
[ ! -d "$build" ] || build=$(cd "$build" && pwd)
for b in server/sendense-nbd catalog/sendensed ctl/sendense-ctl capture/sendense-capture; do
    [ -x "$build/$b" ] || { echo "demo: no $build/$b: build first (./scripts/setup.sh)" >&2; exit 1; }
done
PATH=$build/server:$build/catalog:$build/ctl:$build/capture:$PATH
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/sendense-demo.XXXXXX")}
mkdir -p "$work"
[ -z "$(ls -A "$work")" ] || { echo "demo: $work is not empty" >&2; exit 1; }
work=$(cd "$work" && pwd)
cd "$work"
mkdir -p run exports.d repo restore files out
export SENDENSE_SOCKET=$work/run/sendensed.sock   # where sendense-ctl finds sendensed
VM=demo-vm
step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }   # print a command, then run it
json() { /usr/bin/python3 -c 'import json, sys; r = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# The daemons run in the background; on any exit they get SIGTERM by PID
# (sendensed's also releases its restore mounts) and are waited for.
nbd_pid='' sdd_pid=''
stop() {
    local rc=0
    if [ -n "$sdd_pid" ]; then kill -TERM "$sdd_pid" 2>/dev/null || :; wait "$sdd_pid" || rc=$?; fi
    sdd_pid=
    if [ -n "$nbd_pid" ]; then kill -TERM "$nbd_pid" 2>/dev/null || :; wait "$nbd_pid" || rc=$?; fi
    nbd_pid=
    return $rc
}
trap 'rc=$?; stop || :; [ $rc = 0 ] || echo "demo: FAILED; logs in $work/run" >&2' EXIT
# wait_up SOCKET PID LOG: until the daemon's socket exists.
wait_up() {
    for _ in $(seq 200); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    cat "$3" >&2
    return 1
}

# e2fsprogs read and write the guest's file system in place, at the
# partition's offset inside the disk file: nothing is mounted.
guest_ls() {
    debugfs -R 'ls -p /' "$part" 2>/dev/null |
        awk -F/ '$6 !~ /^(\.|\.\.|lost\+found|)$/ { printf "  %-10s %8d bytes\n", $6, $7 }'
}

step "A 256 MiB VM disk: GPT, one partition, ext4 with files (disk.raw)"
printf 'demo-vm\n' > files/hostname
printf 'todo: back up this VM\n' > files/todo.txt
seq -f 'log line %g' 2000 > files/old.log
head -c 8M /dev/urandom > files/data.bin
truncate -s 256M disk.raw
printf 'label: gpt\nstart=1MiB, type=linux, name=root\n' | sfdisk -q disk.raw
read -r start sectors < <(partx --show --noheadings -o START,SECTORS --nr 1 disk.raw)
part="disk.raw?offset=$((start * 512))"
mkfs.ext4 -q -F -b 4096 -L root -d files -E offset=$((start * 512)) disk.raw $((sectors / 8))
partx --show -o NR,START,SECTORS,SIZE,NAME disk.raw
guest_ls

step "Start sendense-nbd and sendensed (configuration and sockets in run/)"
cat > run/sendense-nbd.yaml <<EOF
listen: [{unix: $work/run/nbd.sock}]
export_dir: $work/exports.d
control_socket: $work/run/control.sock
EOF
cat > run/sendensed.yaml <<EOF
control_socket: $work/run/sendensed.sock
nbd_control_socket: $work/run/control.sock
nbd_uri_base: "nbd+unix:///{name}?socket=$work/run/nbd.sock"
repositories: [{name: main, path: $work/repo}]
restore_runtime_dir: $work/restore
EOF
sendense-nbd --foreground -c run/sendense-nbd.yaml >run/sendense-nbd.log 2>&1 &
nbd_pid=$!
wait_up run/control.sock $nbd_pid run/sendense-nbd.log
sendensed --foreground -c run/sendensed.yaml >run/sendensed.log 2>&1 &
sdd_pid=$!
wait_up run/sendensed.sock $sdd_pid run/sendensed.log
echo "sendense-nbd pid $nbd_pid, sendensed pid $sdd_pid:" run/*.sock

# sendense-capture backup: backup.start (sendensed makes the image and
# its NBD export), the copy into that export, then backup.complete with
# the change id the hypervisor gave this point (or backup.fail).
step "Full backup with sendense-capture"
show sendense-capture backup --quiet --type full --change-id disk0=demo-cid-1 $VM disk0=disk.raw
cp --sparse=always disk.raw disk-at-full.raw   # for the change list below

step "The guest changes files: todo.txt rewritten, new.bin added, old.log deleted"
printf 'todo: restore a file from the incremental\n' > out/todo.txt.written
head -c 1M /dev/urandom > out/new.bin.written
debugfs -w -f - "$part" >/dev/null 2>&1 <<EOF
rm todo.txt
write out/todo.txt.written todo.txt
write out/new.bin.written new.bin
rm old.log
EOF
guest_ls
# What the hypervisor's changed-block tracking would report.
/usr/bin/python3 "$top/scripts/demo-changed-areas.py" disk-at-full.raw disk.raw demo-cid-1 > changes.json
json '"changes.json: %d areas, %d KiB of 256 MiB changed" % (len(r["changedArea"]),
    sum(a["length"] for a in r["changedArea"]) // 1024)' < changes.json

step "Incremental backup with sendense-capture --changes"
show sendense-capture backup --quiet --type incremental --changes disk0=changes.json \
    --change-id disk0=demo-cid-2 $VM disk0=disk.raw

step "The chain: the incremental holds only what changed"
show sendense-ctl backup chain $VM disk0
show du -h repo/$VM/disk0/*.qcow2

step "File-level restore from the incremental"
incr=$(sendense-ctl --json backup chain $VM disk0 | json 'r["id"]')
out=$(show sendense-ctl restore mount $VM disk0 "$incr")
printf '%s\n' "$out"
mnt=$(printf '%s\n' "$out" | sed -n 's/^mount  *//p')
show sendense-ctl restore ls "$mnt" p1 /
for f in todo.txt new.bin data.bin; do
    show sendense-ctl restore extract "$mnt" p1 $f "$work/out/$f"
done
cmp out/todo.txt out/todo.txt.written
cmp out/new.bin out/new.bin.written
cmp out/data.bin files/data.bin
echo "todo.txt, new.bin: as the guest wrote them; data.bin: as in the full backup"
if err=$(sendense-ctl restore stat "$mnt" p1 old.log 2>&1); then
    echo "demo: old.log is still in the incremental" >&2; exit 1
fi
case $err in *"No such file"*) echo "old.log: gone, as in the guest" ;; *) echo "$err" >&2; exit 1 ;; esac
show sendense-ctl restore umount "$mnt"

step "Stop sendensed and sendense-nbd (SIGTERM, wait)"
stop
left=$(grep -F "$work/" /proc/self/mountinfo; losetup -a | grep -F "$work/") || :
[ -z "$left" ] || { echo "demo: left behind: $left" >&2; exit 1; }
echo "both exited 0; nothing left mounted"
printf '\ndemo: done, files in %s\n' "$work"
