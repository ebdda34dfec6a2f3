#!/usr/bin/env python3
"""Wait until export.get on sendense-nbd's control socket shows what a
test expects.

    reload-expect.py SOCKET NAME [--timeout S] KEY=VALUE...
    reload-expect.py SOCKET NAME [--timeout S] --absent

KEY may be dotted (stats.clients); VALUE is read as JSON when it parses
(true, 3, "x", ["127.0.0.1/32"]) and as a plain string otherwise; the
value "-" means the key must be missing. --absent waits for export.get to
answer "not found" (code 1001). Polls until the answer matches or the
timeout (default 60 s: a generous bound, not a measurement) passes; then
prints the last answer on stderr and exits 1.
"""
import importlib.util
import json
import os
import sys
import time

# The source tree is not ours to write: no __pycache__ beside the tool.
sys.dont_write_bytecode = True
_spec = importlib.util.spec_from_file_location(
    "nbd_rpc", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "nbd-rpc.py"))
nbd_rpc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbd_rpc)

MISSING = object()


def lookup(obj, dotted):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return MISSING
        obj = obj[part]
    return obj


def parse_value(text):
    if text == "-":
        return MISSING
    try:
        return json.loads(text)
    except ValueError:
        return text


def matches(reply, absent, wanted):
    if absent:
        return "error" in reply and reply["error"].get("code") == 1001
    if "result" not in reply:
        return False
    return all(lookup(reply["result"], k) == v for k, v in wanted)


def main():
    args = sys.argv[1:]
    timeout = 60.0
    if "--timeout" in args:
        i = args.index("--timeout")
        timeout = float(args[i + 1])
        del args[i:i + 2]
    absent = "--absent" in args
    if absent:
        args.remove("--absent")
    if len(args) < 2 or (not absent and len(args) < 3):
        print(__doc__, file=sys.stderr)
        return 2
    sock, name = args[0], args[1]
    wanted = []
    for kv in args[2:]:
        k, sep, v = kv.partition("=")
        if not sep:
            print("not KEY=VALUE: %s" % kv, file=sys.stderr)
            return 2
        wanted.append((k, parse_value(v)))
    deadline = time.monotonic() + timeout
    while True:
        reply = nbd_rpc.call(sock, "export.get", {"name": name})
        if matches(reply, absent, wanted):
            return 0
        if time.monotonic() > deadline:
            print("export %s: still %s after %g s; wanted %s" % (
                name, json.dumps(reply), timeout,
                "absent" if absent else " ".join(args[2:])), file=sys.stderr)
            return 1
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
