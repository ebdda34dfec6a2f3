#!/bin/bash
# Reloads never drop a client. Four writers (raw and qcow2, over TCP and
# the unix socket) write blocks whose bytes derive from (export, offset,
# generation) and read them back for the whole test, while exports are
# added, removed and changed a hundred times: through files in export_dir
# (written atomically, then SIGHUP or server.reload) and through the
# control socket (export.add, export.add with replace, export.remove).
# Changes that need the image reopened are made on throw-away exports;
# the writers' own exports only get changes that do not (description,
# allow). Also: a broken file is reported with file:line and leaves
# everything else in force (its own export included); reloads in a row
# are harmless; a removed export takes no new clients but keeps its old
# ones; and a change that would open an image in an incompatible way
# (read-only -> writable with a reader connected) waits, reported as
# pending, refusing new clients, until the reader goes. The server grows
# its descriptor table before it starts threads.
# At the end every writer exited 0 after verifying every read, and every
# byte of every export is what its writer last wrote, through the server
# and in the files after it stopped (qemu-img reads the qcow2 ones).
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
. "$top_srcdir/tests/tools/reload-lib.sh"
requires nbdinfo qemu-img

srv_start
mkdir -p "$scratch/img"

# The descriptor table is grown at start, before there are threads: grown
# later, each doubling waits for an RCU grace period, and a reload opening
# a thousand images slept through five of them.
fd_size=$(sed -n 's/^FDSize:[[:space:]]*//p' "/proc/$SRV_PID/status")
fd_want=$(ulimit -Hn); [ "$fd_want" = unlimited ] || [ "$fd_want" -gt 16384 ] && fd_want=16384
[ "$fd_size" -ge "$fd_want" ] ||
    fail "descriptor table of $fd_size at start, expected at least $fd_want"

# --- the writers' exports: two from files, two from export.add ---

truncate -s 4M "$scratch/img/w0.raw"
must "$SENDENSE_IMG" create -f qcow2 "$scratch/img/w1.qcow2" 4M
truncate -s 4M "$scratch/img/w2.raw"
must "$SENDENSE_IMG" create -f qcow2 "$scratch/img/w3.qcow2" 4M

write_export_file w0 "path: $scratch/img/w0.raw" 'description: "w0 v0"'
write_export_file w1 "path: $scratch/img/w1.qcow2" "format: qcow2" \
    'description: "w1 v0"'
out=$(srv_rpc server.reload)
[ "$(echo "$out" | jget 'r["added"]')" = 2 ] || fail "reload: $out"

# w2 and w3 are redefined with export.add replace:true; every call gives
# the same path and format, so only description and allow change.
rpc_writer_def() {       # NAME VERSION ALLOW-JSON-OR-EMPTY
    local name=$1 path fmt allow=""
    case $name in
    w2) path=$scratch/img/w2.raw fmt=raw ;;
    w3) path=$scratch/img/w3.qcow2 fmt=qcow2 ;;
    esac
    [ -z "$3" ] || allow=", \"allow\": $3"
    echo "{\"name\": \"$name\", \"path\": \"$path\", \"format\": \"$fmt\"," \
         "\"description\": \"$name v$2\"$allow, \"replace\": true}"
}
for w in w2 w3; do
    out=$(srv_rpc export.add "$(rpc_writer_def $w 0 '')")
    [ "$(echo "$out" | jget 'r["state"]')" = serving ] || fail "add $w: $out"
done

client_start w0 writer "$(srv_uri w0)" w0
client_start w1 writer "$(srv_unix_uri w1)" w1
client_start w2 writer "$(srv_uri w2)" w2
client_start w3 writer "$(srv_unix_uri w3)" w3
for w in w0 w1 w2 w3; do client_wait_past $w 0; done

# Every writer makes progress again (it is still connected and served).
writers_progress() {
    local w n
    for w in w0 w1 w2 w3; do
        n=$(client_count $w)
        client_wait_past $w "$n"
    done
}

# nbd_refused URI: a new client of URI gets no export.
nbd_refused() {
    if nbdinfo "$1" >/dev/null 2>&1; then
        fail "a new client of $1 was served"
    fi
}

# nbd_description URI: the description a new client is given.
nbd_description() {
    nbdinfo --json "$1" | jget 'r["exports"][0].get("description", "")'
}

# --- a hundred changes while the writers run ---

changes=0
file_tmp=()            # throw-away exports defined by files
rpc_tmp=()             # throw-away exports defined by export.add
declare -A tmp_ro      # their readonly setting
allow_a='["127.0.0.1/32", "10.9.0.0/16"]'
allow_b='["127.0.0.0/8"]'

new_image() {          # NAME: a fresh raw or qcow2 image for it
    if [ $((changes / 8 % 2)) = 0 ]; then
        truncate -s 1M "$scratch/img/$1.raw"
        echo "$scratch/img/$1.raw"
    else
        must "$SENDENSE_IMG" create -f qcow2 "$scratch/img/$1.qcow2" 1M
        echo "$scratch/img/$1.qcow2"
    fi
}

# Reload after a file change: SIGHUP or server.reload, in turn.
reload_turn=0
reload_any() {
    reload_turn=$((reload_turn + 1))
    if [ $((reload_turn % 2)) = 0 ]; then
        kill -HUP "$SRV_PID"
    else
        srv_rpc server.reload > /dev/null
    fi
}

file_add() {
    local name=tf-$changes path
    path=$(new_image "$name")
    write_export_file "$name" "path: $path" "readonly: false"
    tmp_ro[$name]=false
    file_tmp+=("$name")
    reload_any
    expect_export "$name" state=serving readonly=false "path=$path"
}

file_remove() {
    local name=${file_tmp[0]}
    file_tmp=("${file_tmp[@]:1}")
    rm "$SRV_EXPORTS/$name.yaml"
    reload_any
    expect_export "$name" --absent
}

file_reopen() {        # toggle readonly: the image must be reopened
    local name=${file_tmp[-1]} ro path
    [ "${tmp_ro[$name]}" = true ] && ro=false || ro=true
    path=$(sed -n 's/^path: //p' "$SRV_EXPORTS/$name.yaml")
    write_export_file "$name" "path: $path" "readonly: $ro"
    tmp_ro[$name]=$ro
    reload_any
    expect_export "$name" state=serving "readonly=$ro"
}

file_writer_change() { # w0 or w1: description and allow, no reopen
    local w=w$((changes / 8 % 2)) fmt=() allow
    [ $w = w1 ] && fmt=("format: qcow2")
    [ $((changes / 16 % 2)) = 0 ] && allow="allow: $allow_a" || allow="allow: $allow_b"
    write_export_file $w "path: $(sed -n 's/^path: //p' "$SRV_EXPORTS/$w.yaml")" \
        "${fmt[@]}" "description: \"$w v$changes\"" "$allow"
    reload_any
    expect_export $w state=serving "description=$w v$changes"
}

rpc_add() {
    local name=tr-$changes path out
    path=$(new_image "$name")
    out=$(srv_rpc export.add "{\"name\": \"$name\", \"path\": \"$path\"}")
    [ "$(echo "$out" | jget 'r["state"]')" = serving ] || fail "add $name: $out"
    [ -e "$SRV_EXPORTS/$name.yaml" ] || fail "export.add $name wrote no file"
    tmp_ro[$name]=false
    rpc_tmp+=("$name")
}

rpc_remove() {
    local name=${rpc_tmp[0]} out
    rpc_tmp=("${rpc_tmp[@]:1}")
    out=$(srv_rpc export.remove "{\"name\": \"$name\", \"drain\": false}")
    [ "$(echo "$out" | jget 'r["done"]')" = removed ] || fail "remove $name: $out"
    [ ! -e "$SRV_EXPORTS/$name.yaml" ] || fail "export.remove left $name.yaml"
    expect_export "$name" --absent
}

rpc_reopen() {         # export.add replace:true with a change that
                       # reopens: readonly toggled, or the format named
                       # (raw/qcow2) instead of found by magic, and back
    local name=${rpc_tmp[-1]} ro fmt out cur
    ro=${tmp_ro[$name]}
    cur=$(srv_rpc export.get "{\"name\": \"$name\"}")
    fmt=$(echo "$cur" | jget 'r["format"]')
    if [ $((changes / 8 % 2)) = 0 ]; then
        [ "$ro" = true ] && ro=false || ro=true
    elif [ "$fmt" = auto ]; then
        fmt=$(echo "$cur" | jget 'r["image_format"]')
    else
        fmt=auto
    fi
    out=$(srv_rpc export.add "{\"name\": \"$name\",
        \"path\": \"$(echo "$cur" | jget 'r["path"]')\",
        \"format\": \"$fmt\", \"readonly\": $ro, \"replace\": true}")
    [ "$(echo "$out" | jget 'r["readonly"]')" = "$ro" ] &&
        [ "$(echo "$out" | jget 'r["format"]')" = "$fmt" ] &&
        [ "$(echo "$out" | jget 'r["state"]')" = serving ] ||
        fail "replace $name readonly=$ro format=$fmt: $out"
    tmp_ro[$name]=$ro
}

rpc_writer_change() { # w2 or w3: description and allow, no reopen
    local w=w$((2 + changes / 8 % 2)) allow out
    [ $((changes / 16 % 2)) = 0 ] && allow=$allow_a || allow=$allow_b
    out=$(srv_rpc export.add "$(rpc_writer_def $w $changes "$allow")")
    [ "$(echo "$out" | jget 'r["description"]')" = "$w v$changes" ] &&
        [ "$(echo "$out" | jget 'r["state"]')" = serving ] ||
        fail "replace $w: $out"
    grep -q "$w v$changes" "$SRV_EXPORTS/$w.yaml" ||
        fail "export.add replace did not rewrite $w.yaml"
}

one_change() {
    case $((changes % 8)) in
    0) file_add ;;
    1) rpc_add ;;
    2) file_writer_change ;;
    3) if [ ${#file_tmp[@]} -gt 0 ]; then file_reopen; else file_add; fi ;;
    4) rpc_writer_change ;;
    5) if [ ${#rpc_tmp[@]} -gt 0 ]; then rpc_reopen; else rpc_add; fi ;;
    6) if [ ${#file_tmp[@]} -gt 1 ]; then file_remove; else file_add; fi ;;
    7) if [ ${#rpc_tmp[@]} -gt 1 ]; then rpc_remove; else rpc_add; fi ;;
    esac
    changes=$((changes + 1))
}

# The names export.list must show now.
expected_names() {
    printf '%s\n' w0 w1 w2 w3 "${file_tmp[@]}" "${rpc_tmp[@]}" "$@" | sort
}
listed_names() {
    srv_rpc export.list | jget '"\n".join(sorted(e["name"] for e in r["exports"]))'
}
check_listed() {
    [ "$(listed_names)" = "$(expected_names "$@")" ] ||
        fail "export.list shows $(listed_names | tr '\n' ' '), expected $(expected_names "$@" | tr '\n' ' ')"
}

while [ $changes -lt 40 ]; do one_change; done
writers_progress
check_listed

# --- a broken file is reported and leaves everything in force ---

printf 'name: broken\npath: [unterminated\n' > "$SRV_EXPORTS/.broken.tmp"
mv "$SRV_EXPORTS/.broken.tmp" "$SRV_EXPORTS/broken.yaml"
# w0's own file breaks too: its current definition must stay.
w0_desc=$(srv_rpc export.get '{"name": "w0"}' | jget 'r["description"]')
cp "$SRV_EXPORTS/w0.yaml" "$scratch/w0.yaml.good"
printf 'name: w0\npath: %s\ndescription: "w0 broken\n  readonly: [\n' \
    "$scratch/img/w0.raw" > "$SRV_EXPORTS/.w0.tmp"
mv "$SRV_EXPORTS/.w0.tmp" "$SRV_EXPORTS/w0.yaml"
reloads_before=$(srv_rpc server.info | jget 'r["reloads"]')
for round in 1 2 3 4; do
    out=$(srv_rpc server.reload)
    echo "$out" | "$NBD_PY" -c '
import json, re, sys
r = json.load(sys.stdin)
files = sorted(e["file"].rsplit("/", 1)[-1] for e in r["errors"])
if files != ["broken.yaml", "w0.yaml"]:
    sys.exit("errors name %s, expected broken.yaml and w0.yaml" % files)
for e in r["errors"]:
    base = e["file"].rsplit("/", 1)[-1]
    if not re.search(re.escape(base) + r":[0-9]+", e["error"]):
        sys.exit("error without file:line: %s" % e)
for k in ("added", "changed", "removed", "pending"):
    if r[k] != 0:
        sys.exit("%s is %d" % (k, r[k]))
' || fail "reload with broken files: $out"
    check_listed
done
reloads_after=$(srv_rpc server.info | jget 'r["reloads"]')
[ "$reloads_after" = $((reloads_before + 4)) ] ||
    fail "server.info reloads went from $reloads_before to $reloads_after after 4 reloads"
expect_export w0 state=serving "description=$w0_desc"
[ "$(nbd_description "$(srv_uri w0)")" = "$w0_desc" ] ||
    fail "a new client of w0 does not get its last good definition"
writers_progress
rm "$SRV_EXPORTS/broken.yaml"
mv "$scratch/w0.yaml.good" "$SRV_EXPORTS/w0.yaml"
out=$(srv_rpc server.reload)
[ "$(echo "$out" | jget 'len(r["errors"])')" = 0 ] || fail "reload: $out"

# --- allow: new clients follow it, the writer stays ---

write_export_file w0 "path: $scratch/img/w0.raw" "description: \"w0 closed\"" \
    'allow: ["10.9.0.0/16"]'
kill -HUP "$SRV_PID"
expect_export w0 "description=w0 closed" 'allow=["10.9.0.0/16"]'
nbd_refused "$(srv_uri w0)"
writers_progress
write_export_file w0 "path: $scratch/img/w0.raw" "description: \"w0 open\""
kill -HUP "$SRV_PID"
expect_export w0 "description=w0 open" allow=-
[ "$(nbd_description "$(srv_uri w0)")" = "w0 open" ] ||
    fail "a new client of w0 does not see its new description"

while [ $changes -lt 70 ]; do one_change; done
writers_progress
check_listed

# --- a removed export keeps its clients and takes no new ones ---

truncate -s 1M "$scratch/img/keep.raw"
write_export_file keep "path: $scratch/img/keep.raw"
kill -HUP "$SRV_PID"
expect_export keep state=serving
client_start keep hold "$(srv_uri keep)"
wait_for_file "${CLIENT_DIR[keep]}/ready"
rm "$SRV_EXPORTS/keep.yaml"
kill -HUP "$SRV_PID"
expect_export keep --absent
nbdinfo --list --json "$(srv_uri "")" |
    jget '[e["export-name"] for e in r["exports"]]' > "$scratch/listed" ||
    fail "nbdinfo --list failed"
grep -q '"w0"' "$scratch/listed" || fail "nbdinfo --list: $(cat "$scratch/listed")"
if grep -q '"keep"' "$scratch/listed"; then
    fail "nbdinfo --list still shows removed export keep"
fi
nbd_refused "$(srv_uri keep)"
client_wait_past keep "$(client_count keep)"
# A throw-away removed through the control socket refuses new clients too.
gone=${rpc_tmp[0]}
rpc_remove
changes=$((changes + 1))
nbd_refused "$(srv_uri "$gone")"

# --- an incompatible reopen waits for the old clients ---

head -c 1M /dev/urandom > "$scratch/img/rox.raw"
write_export_file rox "path: $scratch/img/rox.raw" "readonly: true"
kill -HUP "$SRV_PID"
expect_export rox state=serving readonly=true
client_start rox hold "$(srv_unix_uri rox)"
wait_for_file "${CLIENT_DIR[rox]}/ready"
write_export_file rox "path: $scratch/img/rox.raw" "readonly: false"
out=$(srv_rpc server.reload)
[ "$(echo "$out" | jget 'r["pending"]')" = 1 ] ||
    fail "reload of rox (read-only -> writable, reader connected): $out"
out=$(srv_rpc export.get '{"name": "rox"}')
[ "$(echo "$out" | jget 'r["state"]')" = pending ] &&
    [ -n "$(echo "$out" | jget 'r.get("problem", "")')" ] ||
    fail "rox should be pending with a problem: $out"
nbd_refused "$(srv_uri rox)"
if nbd_client rw "$(srv_unix_uri rox)" rox 2>/dev/null; then
    fail "a writer was served rox while it is pending"
fi
client_wait_past rox "$(client_count rox)"
# Reloading again while it waits changes nothing.
out=$(srv_rpc server.reload)
[ "$(echo "$out" | jget 'r["added"] + r["changed"] + r["removed"]')" = 0 ] ||
    fail "repeated reload: $out"
expect_export rox state=pending readonly=false
client_wait_past rox "$(client_count rox)"
client_stop rox || fail "the reader of rox failed: $(cat "${CLIENT_DIR[rox]}/out")"
expect_export rox state=serving readonly=false problem=-
nbd_client rw "$(srv_uri rox)" rox || fail "cannot write rox once it is writable"

while [ $changes -lt 100 ]; do one_change; done
check_listed rox

# --- the end: every writer clean, every byte as last written ---

client_stop keep || fail "client of removed export keep: $(cat "${CLIENT_DIR[keep]}/out")"
for w in w0 w1 w2 w3; do
    client_stop $w || fail "writer $w: $(cat "${CLIENT_DIR[$w]}/out")"
    n=$(sed -n 's/^verified //p' "${CLIENT_DIR[$w]}/out")
    [ -n "$n" ] && [ "$n" -gt 0 ] ||
        fail "writer $w verified nothing: $(cat "${CLIENT_DIR[$w]}/out")"
    echo "writer $w: verified $n blocks"
done
[ "$(nbd_description "$(srv_uri w2)")" = "$(srv_rpc export.get '{"name": "w2"}' | jget 'r["description"]')" ] ||
    fail "a new client of w2 does not see its last description"
for w in w0 w1 w2 w3; do
    out=$(nbd_client verify "$(srv_uri $w)" $w "${CLIENT_DIR[$w]}/map.json" 2>&1) ||
        fail "$w through the server: $out"
done
echo "$changes changes made"
srv_stop

nbd_client verify "$scratch/img/w0.raw" w0 "${CLIENT_DIR[w0]}/map.json" >/dev/null ||
    fail "w0.raw on disk"
nbd_client verify "$scratch/img/w2.raw" w2 "${CLIENT_DIR[w2]}/map.json" >/dev/null ||
    fail "w2.raw on disk"
for w in w1 w3; do
    qemu_check_clean "$scratch/img/$w.qcow2"
    must qemu-img convert -O raw "$scratch/img/$w.qcow2" "$scratch/img/$w.out.raw"
    nbd_client verify "$scratch/img/$w.out.raw" $w "${CLIENT_DIR[$w]}/map.json" >/dev/null ||
        fail "$w.qcow2 as qemu-img reads it"
done
