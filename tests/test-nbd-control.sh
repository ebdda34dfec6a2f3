#!/bin/bash
# Every method of sendense-nbd's control socket, and the socket itself:
# server.info; export.add (idempotent, persisted atomically as
# <name>.yaml and still there after a restart, EEXIST without replace,
# bad params refused with nothing written); export.get; export.stats
# (counters after known client operations, clients, last activity;
# a write the full file system refused: write_errors and last_error);
# export.remove with and without drain; export.fence; connection.list and
# connection.close; malformed JSON and batches on one connection; peers
# that are not root refused; the socket's mode.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
. "$top_srcdir/tests/tools/reload-lib.sh"
requires nbdinfo setpriv

srv_start
img=$scratch/img
mkdir -p "$img"
for n in a d e f; do truncate -s 4M "$img/$n.raw"; done

# rpc_error METHOD JSON: run a call that must fail; print its error object.
rpc_error() {
    local err
    if err=$(srv_rpc_may_fail "$1" "$2" 2>&1 >/dev/null); then
        fail "$1 $2 succeeded"
    fi
    printf '%s\n' "$err"
}

# Every file in export_dir (inode, mtime), hidden ones and the staging
# area included.
dir_state() {
    (cd "$SRV_EXPORTS" && find . -type f -printf '%p %i %T@\n' | sort)
}

# --- server.info, the socket's mode ---

[ "$(stat -c %a "$SRV_CTL")" = 660 ] ||
    fail "control socket mode is $(stat -c %a "$SRV_CTL"), not 660"
export SRV_PID SRV_PORT SRV_SOCK SRV_DIR SRV_EXPORTS
info=$(srv_rpc server.info)
echo "$info" | jcheck '(
r["name"] == "sendense-nbd" and r["version"] != "" and
r["pid"] == int(env["SRV_PID"]) and r["uptime_ms"] >= 0 and
r["config"] == env["SRV_DIR"] + "/sendense-nbd.yaml" and
r["export_dir"] == env["SRV_EXPORTS"] and
r["listen"] == ["127.0.0.1:" + env["SRV_PORT"], env["SRV_SOCK"]] and
len(r["workers"]) >= 1 and all(w["name"] for w in r["workers"]) and
r["exports"] == 0 and r["connections"] == 0 and r["reloads"] == 0 and
r["tls"] == "off")' || fail "server.info: $info"
srv_rpc server.reload >/dev/null
export UPTIME0=$(echo "$info" | jget 'r["uptime_ms"]')
for i in $(seq 1 200); do
    info=$(srv_rpc server.info)
    echo "$info" | jcheck 'r["uptime_ms"] > int(env["UPTIME0"])' && break
    sleep 0.05
done
echo "$info" | jcheck 'r["reloads"] == 1 and r["uptime_ms"] > int(env["UPTIME0"])' ||
    fail "server.info after a reload: $info"

# --- export.add: idempotent, persisted atomically ---

add_a="{\"name\": \"a\", \"path\": \"$img/a.raw\", \"format\": \"raw\",
        \"readonly\": false, \"allow\": [\"127.0.0.1/32\"],
        \"description\": \"disk a\"}"
r1=$(srv_rpc export.add "$add_a")
export IMG=$img
echo "$r1" | jcheck '(
r["name"] == "a" and r["path"] == env["IMG"] + "/a.raw" and
r["format"] == "raw" and r["readonly"] is False and
r["allow"] == ["127.0.0.1/32"] and r["description"] == "disk a" and
r["state"] == "serving" and r["source"] == env["SRV_EXPORTS"] + "/a.yaml")' ||
    fail "export.add a: $r1"
[ -f "$SRV_EXPORTS/a.yaml" ] || fail "export.add wrote no a.yaml"
state1=$(dir_state)
echo "$state1" | grep -q '^\./a\.yaml ' || fail "export_dir holds: $state1"
[ "$(echo "$state1" | wc -l)" = 1 ] || fail "export_dir holds more than a.yaml: $state1"
r2=$(srv_rpc export.add "$add_a")
[ "$r1" = "$r2" ] || fail "export.add twice gave different results: $r1 / $r2"
[ "$(dir_state)" = "$state1" ] ||
    fail "the same export.add rewrote the file: $state1 / $(dir_state)"

# Another definition of a, without replace: EEXIST, file untouched.
err=$(rpc_error export.add "{\"name\": \"a\", \"path\": \"$img/a.raw\",
                             \"description\": \"other\"}")
echo "$err" | jcheck 'r["code"] == 1002 and r["message"]' ||
    fail "export.add of another definition: $err"
[ "$(dir_state)" = "$state1" ] || fail "a refused export.add changed export_dir"
srv_rpc export.get '{"name": "a"}' | jcheck 'r["description"] == "disk a"' ||
    fail "a refused export.add changed the export"

# --- bad params: refused with a message, nothing written ---

bad_params=(
    '{"name": "b"}'
    '{"name": "b", "path": "relative/b.raw"}'
    "{\"name\": \"x/y\", \"path\": \"$img/d.raw\"}"
    "{\"name\": \".hidden\", \"path\": \"$img/d.raw\"}"
    "{\"name\": \"b\", \"path\": \"$img/d.raw\", \"bogus\": 1}"
    "{\"name\": \"b\", \"path\": \"$img/d.raw\", \"readonly\": \"yes\"}"
    "{\"name\": \"b\", \"path\": \"$img/d.raw\", \"format\": \"vmdk\"}"
)
for p in "${bad_params[@]}"; do
    err=$(rpc_error export.add "$p")
    echo "$err" | jcheck 'r["code"] in (-32602, 1001, 1005) and len(r["message"]) > 0' ||
        fail "export.add $p: $err"
    [ "$(dir_state)" = "$state1" ] ||
        fail "export.add $p left files: $(dir_state)"
done
srv_rpc export.list | jcheck '[e["name"] for e in r["exports"]] == ["a"]' ||
    fail "bad export.add calls defined exports: $(srv_rpc export.list)"
# (An export.add whose image cannot be opened: at the end.)

err=$(rpc_error export.get '{"name": "nothere"}')
echo "$err" | jcheck 'r["code"] == 1001' || fail "export.get of unknown: $err"
err=$(rpc_error export.nothing '{}')
echo "$err" | jcheck 'r["code"] == -32601' || fail "unknown method: $err"

# --- persisted: a restart serves the same definition ---

srv_stop
srv_start
export SRV_PID SRV_PORT SRV_SOCK SRV_DIR SRV_EXPORTS
r3=$(srv_rpc export.get '{"name": "a"}')
for k in name path format readonly allow description source state; do
    [ "$(echo "$r1" | jget "r[\"$k\"]")" = "$(echo "$r3" | jget "r[\"$k\"]")" ] ||
        fail "after a restart, a's $k differs: $r1 / $r3"
done

# replace: true changes it, and the file with it.
r4=$(srv_rpc export.add "{\"name\": \"a\", \"path\": \"$img/a.raw\",
                          \"format\": \"raw\", \"description\": \"disk a v2\",
                          \"replace\": true}")
echo "$r4" | jcheck 'r["description"] == "disk a v2" and "allow" not in r' ||
    fail "export.add replace: $r4"
grep -q 'disk a v2' "$SRV_EXPORTS/a.yaml" || fail "replace did not rewrite a.yaml"
[ "$(nbdinfo --json "$(srv_uri a)" | jget 'r["exports"][0]["description"]')" = "disk a v2" ] ||
    fail "a new client does not see the new description"

# --- export.stats ---

stats() { srv_rpc export.stats '{"name": "a"}'; }
s0=$(stats)
client_start hold-a hold "$(srv_uri a)"
wait_for_file "${CLIENT_DIR[hold-a]}/ready"
expect_export a clients=1
stats | jcheck 'r["stats"]["clients"] == 1' || fail "stats while a client is connected: $(stats)"
srv_rpc export.stats | jcheck '[e["name"] for e in r["exports"]] == ["a"] and r["exports"][0]["stats"]["clients"] == 1' ||
    fail "export.stats without a name: $(srv_rpc export.stats)"
client_stop hold-a || fail "client of a: $(cat "${CLIENT_DIR[hold-a]}/out")"
expect_export a clients=0
s0=$(stats)
nbd_client ops "$(srv_uri a)" || fail "client operations on a failed"
expect_export a clients=0
s1=$(stats)
export S0=$s0
echo "$s1" | jcheck '
b = json.loads(env["S0"])["stats"]; a = r["stats"]
d = lambda kind, op: a[kind][op] - b[kind][op]
((d("ops", "write"), d("bytes", "write")) == (2, 12288) and
(d("ops", "read"), d("bytes", "read")) == (2, 20480) and
(d("ops", "zero"), d("bytes", "zero")) == (1, 4096) and
(d("ops", "trim"), d("bytes", "trim")) == (1, 65536) and
d("ops", "flush") == 1 and
a["connections_total"] - b["connections_total"] == 1 and
a["last_activity_ms"] > b["last_activity_ms"] and a["clients"] == 0 and
a["write_errors"] == 0 and a["last_error"] is None)' ||
    fail "export.stats after known operations: before $s0 after $s1"

# --- connection.list and connection.close ---

client_start c1 hold "$(srv_uri a)" --expect-drop
client_start c2 hold "$(srv_unix_uri a)"
wait_for_file "${CLIENT_DIR[c1]}/ready"
wait_for_file "${CLIENT_DIR[c2]}/ready"
conns=$(srv_rpc connection.list)
echo "$conns" | jcheck '
c = r["connections"]
tcp = [x for x in c if x["peer"].startswith("127.0.0.1:")]
unix = [x for x in c if x["peer"] == "unix"]
(len(c) == 2 and len(tcp) == 1 and len(unix) == 1 and
all(x["export"] == "a" and x["tls"] is False and x["id"] > 0 for x in c) and
tcp[0]["listener"] == "127.0.0.1:" + env["SRV_PORT"] and
unix[0]["listener"] == env["SRV_SOCK"])' || fail "connection.list: $conns"
id1=$(echo "$conns" | jget '[x["id"] for x in r["connections"] if x["peer"] != "unix"][0]')
id2=$(echo "$conns" | jget '[x["id"] for x in r["connections"] if x["peer"] == "unix"][0]')
out=$(srv_rpc connection.close "{\"id\": $id1}")
echo "$out" | jcheck "r == {'closed': $id1}" || fail "connection.close: $out"
wait "${CLIENT_PID[c1]}" || fail "the closed client was not dropped: $(cat "${CLIENT_DIR[c1]}/out")"
client_wait_past c2 "$(client_count c2)"
srv_rpc connection.list | jcheck "[x['id'] for x in r['connections']] == [$id2]" ||
    fail "after connection.close: $(srv_rpc connection.list)"
err=$(rpc_error connection.close '{"id": 999999}')
echo "$err" | jcheck 'r["code"] == 1001' || fail "connection.close of unknown: $err"
client_stop c2 || fail "the other client: $(cat "${CLIENT_DIR[c2]}/out")"

# --- export.remove, draining: the reply waits for the client ---

srv_rpc export.add "{\"name\": \"d\", \"path\": \"$img/d.raw\"}" >/dev/null
client_start hold-d hold "$(srv_uri d)"
wait_for_file "${CLIENT_DIR[hold-d]}/ready"
$NBD_RPC "$SRV_CTL" export.remove '{"name": "d"}' > "$scratch/remove-d.out" 2>&1 &
remove_pid=$!
cleanup_fn "kill $remove_pid 2>/dev/null"
expect_export d --absent
[ ! -e "$SRV_EXPORTS/d.yaml" ] || fail "export.remove left d.yaml"
nbdinfo "$(srv_uri d)" >/dev/null 2>&1 && fail "removed export d takes new clients"
client_wait_past hold-d "$(client_count hold-d)"
kill -0 $remove_pid 2>/dev/null ||
    fail "export.remove (drain) replied while a client is connected: $(cat "$scratch/remove-d.out")"
[ ! -s "$scratch/remove-d.out" ] || fail "early reply: $(cat "$scratch/remove-d.out")"
client_stop hold-d || fail "the draining client was dropped: $(cat "${CLIENT_DIR[hold-d]}/out")"
wait $remove_pid || fail "export.remove d: $(cat "$scratch/remove-d.out")"
jcheck 'r["export"] == "d" and r["done"] == "removed" and r["connections_closed"] == 0' \
    < "$scratch/remove-d.out" || fail "export.remove d: $(cat "$scratch/remove-d.out")"

# --- export.remove without draining closes the clients ---

srv_rpc export.add "{\"name\": \"e\", \"path\": \"$img/e.raw\"}" >/dev/null
client_start hold-e hold "$(srv_unix_uri e)" --expect-drop
wait_for_file "${CLIENT_DIR[hold-e]}/ready"
out=$(srv_rpc export.remove '{"name": "e", "drain": false}')
echo "$out" | jcheck 'r["done"] == "removed" and r["connections_closed"] == 1' ||
    fail "export.remove e drain=false: $out"
srv_rpc connection.list | jcheck 'not [x for x in r["connections"] if x.get("export") == "e"]' ||
    fail "export.remove drain=false replied before e's client was gone"
wait "${CLIENT_PID[hold-e]}" || fail "e's client was not dropped: $(cat "${CLIENT_DIR[hold-e]}/out")"
expect_export e --absent

# --- export.fence ---

srv_rpc export.add "{\"name\": \"f\", \"path\": \"$img/f.raw\"}" >/dev/null
client_start f1 hold "$(srv_uri f)" --write --expect-drop
client_start f2 hold "$(srv_unix_uri f)" --write --offset 4096 --expect-drop
wait_for_file "${CLIENT_DIR[f1]}/ready"
wait_for_file "${CLIENT_DIR[f2]}/ready"
client_wait_past f1 0
client_wait_past f2 0
old_ids=$(srv_rpc connection.list | jget '[x["id"] for x in r["connections"] if x["export"] == "f"]')
[ "$(echo "$old_ids" | jget 'len(r)')" = 2 ] || fail "connections of f: $old_ids"
out=$(srv_rpc export.fence '{"name": "f"}')
echo "$out" | jcheck 'r["export"] == "f" and r["done"] == "fenced" and r["connections_closed"] == 2' ||
    fail "export.fence: $out"
srv_rpc connection.list | jcheck "not set(x['id'] for x in r['connections']) & set($old_ids)" ||
    fail "export.fence replied while fenced connections remain: $(srv_rpc connection.list)"
for c in f1 f2; do
    wait "${CLIENT_PID[$c]}" || fail "fenced client $c: $(cat "${CLIENT_DIR[$c]}/out")"
done
expect_export f state=serving clients=0
# Both wrote inside block 0, which this write covers whole.
nbd_client rw "$(srv_uri f)" fenced || fail "a writer after the fence failed"
echo '{"block": 65536, "gens": {"0": 1}}' > "$scratch/f-map.json"
out=$(nbd_client verify "$(srv_unix_uri f)" fenced "$scratch/f-map.json" 2>&1) ||
    fail "the write after the fence is not kept: $out"
err=$(rpc_error export.fence '{"name": "nothere"}')
echo "$err" | jcheck 'r["code"] == 1001' || fail "export.fence of unknown: $err"

# --- malformed JSON, batches: one connection throughout ---

lines=$("$NBD_PY" "$RELOAD_TOOLS/control-lines.py" "$SRV_CTL" \
    'this is not json' \
    '{"jsonrpc": "2.0", "id": 7, "method": "server.info"}' \
    "$(echo '[{"jsonrpc": "2.0", "id": 1, "method": "export.get", "params": {"name": "a"}},
               {"jsonrpc": "2.0", "id": 2, "method": "export.list"},
               {"jsonrpc": "2.0", "id": 3, "method": "no.such.method"}]' | tr -d '\n')" \
    '{"jsonrpc": "2.0", "id": 8, "method": "export.get", "params": {"name": "f"}}') ||
    fail "control session: $lines"
[ "$(echo "$lines" | wc -l)" = 4 ] || fail "expected 4 replies: $lines"
echo "$lines" | sed -n 1p | jcheck 'r["error"]["code"] == -32700 and r["id"] is None' ||
    fail "reply to garbage: $(echo "$lines" | sed -n 1p)"
echo "$lines" | sed -n 2p | jcheck 'r["id"] == 7 and r["result"]["name"] == "sendense-nbd"' ||
    fail "request after garbage: $(echo "$lines" | sed -n 2p)"
echo "$lines" | sed -n 3p | jcheck '
by_id = {x["id"]: x for x in r}
(len(r) == 3 and by_id[1]["result"]["name"] == "a" and
[e["name"] for e in by_id[2]["result"]["exports"]] == ["a", "f"] and
by_id[3]["error"]["code"] == -32601)' ||
    fail "batch reply: $(echo "$lines" | sed -n 3p)"
echo "$lines" | sed -n 4p | jcheck 'r["id"] == 8 and r["result"]["name"] == "f"' ||
    fail "request after the batch: $(echo "$lines" | sed -n 4p)"

# --- peers that are not root ---

# A copy of the client the unprivileged user can read, and a python it
# can run (the one found above may live in root's home).
mkdir -p "$scratch/pub"
cp "$RELOAD_TOOLS/control-lines.py" "$scratch/pub/"
chmod 755 "$scratch/pub" "$scratch/pub/control-lines.py"
chmod 711 "$scratch" "$SRV_DIR"
as_nobody() {
    setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
}
nobody_py=
for p in "$NBD_PY" /usr/bin/python3 python3; do
    if as_nobody "$p" -c 'pass' 2>/dev/null; then nobody_py=$p; break; fi
done
[ -n "$nobody_py" ] || fail "no python3 that user nobody can run"
request='{"jsonrpc": "2.0", "id": 1, "method": "server.info"}'
rc=0
out=$(as_nobody "$nobody_py" "$scratch/pub/control-lines.py" "$SRV_CTL" "$request") || rc=$?
[ $rc = 3 ] || fail "nobody connecting to the 0660 socket: exit $rc: $out"
# With the file mode opened up, the server's own check must refuse.
chmod 666 "$SRV_CTL"
rc=0
out=$(as_nobody "$nobody_py" "$scratch/pub/control-lines.py" "$SRV_CTL" "$request") || rc=$?
chmod 660 "$SRV_CTL"
[ $rc = 4 ] || fail "nobody on an open socket was not refused by the server: exit $rc: $out"
grep -q "uid 65534 is not allowed" "$SRV_LOG" || fail "the refusal is not logged"
srv_rpc server.info | jcheck 'r["exports"] == 2' || fail "server.info after a refused peer"
nbd_client rw "$(srv_uri a)" after || fail "export a after a refused peer"

out=$(nbd_client verify "$img/f.raw" fenced "$scratch/f-map.json" 2>&1) ||
    fail "f.raw on disk after the fence: $out"

# --- an export.add whose image cannot be opened leaves no trace ---

# A new name: refused, no file, and not listed.
err=$(rpc_error export.add "{\"name\": \"b\", \"path\": \"$img/none.raw\"}")
echo "$err" | jcheck 'r["code"] == 1001 and "none.raw" in r["message"]' ||
    fail "export.add with a missing image: $err"
[ ! -e "$SRV_EXPORTS/b.yaml" ] || fail "a failed export.add left b.yaml"
srv_rpc export.list | jcheck '"b" not in [e["name"] for e in r["exports"]]' ||
    fail "a failed export.add is listed: $(srv_rpc export.list)"
# replace:true over a serving export: refused, and a keeps its
# definition and its file, so that a reload keeps it too.
cp "$SRV_EXPORTS/a.yaml" "$scratch/a.yaml.before"
err=$(rpc_error export.add "{\"name\": \"a\", \"path\": \"$img/none.raw\",
                             \"replace\": true}")
echo "$err" | jcheck 'r["code"] == 1001' || fail "replace with a missing image: $err"
cmp -s "$SRV_EXPORTS/a.yaml" "$scratch/a.yaml.before" ||
    fail "a failed export.add replace:true changed or removed a.yaml"
srv_rpc server.reload >/dev/null
out=$(srv_rpc_may_fail export.get '{"name": "a"}' 2>&1)
echo "$out" | jcheck '(r.get("state") == "serving" and r["path"] == env["IMG"] + "/a.raw"
                       and r["description"] == "disk a v2")' ||
    fail "after a failed replace and a reload, a is: $out"

# --- export.stats: a write the file system has no room for ---

# An image on a 1 MiB tmpfs: the first 512 KiB fit, the next MiB does
# not. The failed write is counted in write_errors and described in
# last_error; a write refused before it reaches the image (past the end)
# is an error, but no write error.
full=$scratch/full
mkdir -p "$full"
if mount -t tmpfs -o size=1m sendense-test "$full" 2>"$scratch/mount.err"; then
    cleanup_fn "! mountpoint -q '$full' || umount -l '$full'"
    truncate -s 4M "$full/full.raw"
    srv_rpc export.add "{\"name\": \"full\", \"path\": \"$full/full.raw\",
                        \"format\": \"raw\"}" >/dev/null
    srv_rpc export.stats '{"name": "full"}' |
        jcheck 'r["stats"]["write_errors"] == 0 and r["stats"]["last_error"] is None' ||
        fail "a new export has write errors: $(srv_rpc export.stats '{"name": "full"}')"
    export T0_MS=$(date +%s%3N)
    "$NBD_PY" - "$(srv_uri full)" <<'PY' || fail "writes into the full export"
import errno, nbd, sys
h = nbd.NBD()
# e.errno is the name in some libnbd versions, the number in others.
is_enospc = lambda e: e.errno in ("ENOSPC", errno.ENOSPC)
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_BOUNDS)
h.connect_uri(sys.argv[1])
h.pwrite(b"\1" * (512 << 10), 0)
for off, length in ((1 << 20, 1 << 20), (4 << 20, 4096)):
    try:
        h.pwrite(b"\2" * length, off)
    except nbd.Error as e:
        assert is_enospc(e), (off, e.errno, e)
    else:
        raise AssertionError("a write at %d succeeded" % off)
h.shutdown()
PY
    st=$(srv_rpc export.stats '{"name": "full"}')
    echo "$st" | jcheck '
s = r["stats"]; e = s["last_error"]
(s["write_errors"] == 1 and s["errors"] == 2 and
 s["bytes"]["write"] == 512 << 10 and e is not None and
 (e["errno"], e["message"], e["op"], e["offset"], e["length"]) ==
 ("ENOSPC", "No space left on device", "write", 1 << 20, 1 << 20) and
 e["time_ms"] >= int(env["T0_MS"]))' ||
        fail "export.stats after a write into a full file system: $st"
    srv_rpc export.remove '{"name": "full"}' >/dev/null
    umount "$full" || fail "the tmpfs of the full export is still busy"
else
    echo "$0: note: no tmpfs for the write-error check: $(cat "$scratch/mount.err")" >&2
fi
srv_stop
