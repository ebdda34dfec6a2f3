#!/usr/bin/env python3
"""Stand in for systemd's notification socket.

    notify-listen.py SOCKET OUTFILE

Binds a unix datagram socket at SOCKET and appends every message it
receives to OUTFILE (one per line, newlines inside a message turned into
spaces) until killed.
"""
import os
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
open(out, "w").close()
while True:
    msg = s.recv(4096).decode(errors="replace").replace("\n", " ").strip()
    with open(out, "a") as f:
        f.write(msg + "\n")
        f.flush()
        os.fsync(f.fileno())
