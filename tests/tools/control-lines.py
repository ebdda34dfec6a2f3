#!/usr/bin/env python3
"""Send raw lines on ONE connection to a JSON-RPC control socket and print
the reply line each one gets.

    control-lines.py SOCKET LINE...

For each LINE: send it and a newline, then wait for one reply line and
print it. Exit status: 0 when every line got its reply; 3 when connect()
was refused by the file system (EACCES/EPERM: "connect: EACCES" is
printed); 4 when the server closed the connection without a reply
("closed" is printed); 1 on anything else (timeouts included).
"""
import errno
import socket
import sys

TIMEOUT = 60


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect(sys.argv[1])
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            print("connect: %s" % errno.errorcode[e.errno])
            return 3
        raise
    buf = b""
    for line in sys.argv[2:]:
        try:
            s.sendall(line.encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            print("closed")
            return 4
        while b"\n" not in buf:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                print("closed")
                return 4
            buf += chunk
        reply, buf = buf.split(b"\n", 1)
        print(reply.decode())
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
