#!/usr/bin/env python3
"""A raw-socket NBD client for protocol tests (python's socket and struct
only), so tests can send what a well-behaved library refuses to send.

A module, loaded with importlib.import_module("proto-raw") once
tests/tools is on sys.path: RawNBD, the protocol constants, and helpers
to take replies apart. The checks that use it are proto-checks.py and
proto-hostile.py.
"""
import socket
import struct

# Negotiation.
MAGIC_INIT = 0x4E42444D41474943          # "NBDMAGIC"
MAGIC_OPTS = 0x49484156454F5054          # "IHAVEOPT"
MAGIC_OPT_REPLY = 0x0003E889045565A9
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST = 1, 2, 3
OPT_STARTTLS, OPT_INFO, OPT_GO, OPT_STRUCTURED_REPLY = 5, 6, 7, 8
OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT = 9, 10

REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
ERR = 1 << 31
REP_ERR_UNSUP, REP_ERR_POLICY, REP_ERR_INVALID = ERR | 1, ERR | 2, ERR | 3
REP_ERR_TLS_REQD, REP_ERR_UNKNOWN, REP_ERR_TOO_BIG = ERR | 5, ERR | 6, ERR | 9

INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 0, 1, 2, 3

# Transmission flags.
TF_HAS_FLAGS, TF_READ_ONLY, TF_FLUSH, TF_FUA = 1, 2, 4, 8
TF_TRIM, TF_WRITE_ZEROES, TF_DF, TF_MULTI_CONN = 32, 64, 128, 256
TF_CACHE, TF_FAST_ZERO = 1024, 2048

# Requests and replies.
REQUEST_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCTURED_MAGIC = 0x668E33EF
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM = 0, 1, 2, 3, 4
CMD_CACHE, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 5, 6, 7
F_FUA, F_NO_HOLE, F_DF, F_REQ_ONE, F_FAST_ZERO = 1, 2, 4, 8, 16
RF_DONE = 1
CHUNK_NONE, CHUNK_DATA, CHUNK_HOLE, CHUNK_STATUS = 0, 1, 2, 5
CHUNK_ERROR, CHUNK_ERROR_OFFSET = (1 << 15) + 1, (1 << 15) + 2
EPERM, EIO, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP = 1, 5, 22, 28, 75, 95
STATE_HOLE, STATE_ZERO = 1, 2

REQUEST_MAX = 32 << 20


class ProtoError(Exception):
    pass


def check(cond, what):
    if not cond:
        raise ProtoError(what)


class Reply:
    """One complete reply: error (0 = success), data (simple READ), and
    for structured replies the chunks as (type, flags, payload)."""

    def __init__(self, cookie):
        self.cookie = cookie
        self.error = 0
        self.data = b""
        self.structured = False
        self.chunks = []

    def __repr__(self):
        return "Reply(cookie=%d error=%d chunks=%s)" % (
            self.cookie, self.error, [(t, f, len(p)) for t, f, p in self.chunks])


class RawNBD:
    def __init__(self, env, transport="tcp", timeout=60):
        if transport == "tcp":
            self.sock = socket.create_connection(("127.0.0.1", env["port"]),
                                                 timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(env["unix"])
        self.server_flags = None
        self.pending = {}       # cookie -> (type, length)
        self.partial = {}       # cookie -> Reply being assembled
        self.next_cookie = 1
        self.structured = False

    def close(self):
        self.sock.close()

    # --- bytes ---

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise EOFError("server closed after %d of %d bytes"
                               % (len(buf), n))
            buf += chunk
        return bytes(buf)

    def at_eof(self):
        """True when the server has closed (reads until EOF, dropping any
        bytes; an error such as a reset also counts as closed)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    # --- negotiation ---

    def greeting(self):
        magic, opts, flags = struct.unpack(">QQH", self.recv_exact(18))
        check(magic == MAGIC_INIT, "bad init magic %#x" % magic)
        check(opts == MAGIC_OPTS, "not newstyle: %#x" % opts)
        self.server_flags = flags
        return flags

    def start(self, client_flags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
        self.greeting()
        self.send(struct.pack(">I", client_flags))
        self.no_zeroes = bool(client_flags & FLAG_NO_ZEROES)
        return self

    def send_option(self, opt, data=b""):
        self.send(struct.pack(">QII", MAGIC_OPTS, opt, len(data)) + data)

    def read_option_reply(self, opt):
        magic, ropt, rtype, length = struct.unpack(">QIII",
                                                   self.recv_exact(20))
        check(magic == MAGIC_OPT_REPLY, "bad option reply magic %#x" % magic)
        check(ropt == opt, "reply for option %d, expected %d" % (ropt, opt))
        return rtype, self.recv_exact(length)

    def option(self, opt, data=b""):
        """Send an option; return its replies, the last one being ACK or
        an error."""
        self.send_option(opt, data)
        replies = []
        while True:
            rtype, payload = self.read_option_reply(opt)
            replies.append((rtype, payload))
            if rtype == REP_ACK or rtype & ERR:
                return replies

    @staticmethod
    def info_payload(name, infos=()):
        n = name.encode()
        return (struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos))
                + b"".join(struct.pack(">H", i) for i in infos))

    @staticmethod
    def meta_payload(name, queries):
        n = name.encode()
        out = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
        for q in queries:
            q = q.encode()
            out += struct.pack(">I", len(q)) + q
        return out

    def info(self, name, infos=(), go=False):
        """INFO or GO; returns (final reply type, {info type: payload})."""
        replies = self.option(OPT_GO if go else OPT_INFO,
                              self.info_payload(name, infos))
        got = {}
        for rtype, payload in replies[:-1]:
            check(rtype == REP_INFO, "unexpected reply %#x to INFO/GO" % rtype)
            (itype,) = struct.unpack(">H", payload[:2])
            got[itype] = payload[2:]
        final = replies[-1][0]
        if final == REP_ACK:
            check(INFO_EXPORT in got, "no NBD_INFO_EXPORT before ACK")
            self.size, self.tflags = struct.unpack(">QH", got[INFO_EXPORT])
        return final, got

    def go(self, name, infos=()):
        final, got = self.info(name, infos, go=True)
        check(final == REP_ACK, "GO %r: reply %#x" % (name, final))
        return got

    def structured_reply(self):
        replies = self.option(OPT_STRUCTURED_REPLY)
        if replies[-1][0] == REP_ACK:
            self.structured = True
        return replies[-1][0]

    def meta(self, set_, name, queries):
        """LIST or SET_META_CONTEXT: (final type, [(id, name)])."""
        replies = self.option(OPT_SET_META_CONTEXT if set_
                              else OPT_LIST_META_CONTEXT,
                              self.meta_payload(name, queries))
        ctxs = []
        for rtype, payload in replies[:-1]:
            check(rtype == REP_META_CONTEXT,
                  "unexpected reply %#x to META_CONTEXT" % rtype)
            ctxs.append((struct.unpack(">I", payload[:4])[0],
                         payload[4:].decode()))
        return replies[-1][0], ctxs

    def export_name(self, name):
        self.send_option(OPT_EXPORT_NAME, name.encode())
        self.size, self.tflags = struct.unpack(">QH", self.recv_exact(10))
        if not self.no_zeroes:
            pad = self.recv_exact(124)
            check(pad == bytes(124), "EXPORT_NAME padding is not zeros")
        return self.size, self.tflags

    # --- transmission ---

    def request(self, cmd, offset=0, length=0, flags=0, data=None):
        """Send one request; returns its cookie. data is the WRITE payload
        (may be shorter than length, to cut a write short)."""
        cookie = self.next_cookie
        self.next_cookie += 1
        if cmd == CMD_WRITE and data is None:
            data = bytes(length)
        self.pending[cookie] = (cmd, length)
        self.send(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie,
                              offset, length) + (data or b""))
        return cookie

    def read_reply(self):
        """The next complete reply, whatever its cookie."""
        while True:
            (magic,) = struct.unpack(">I", self.recv_exact(4))
            if magic == SIMPLE_MAGIC:
                error, cookie = struct.unpack(">IQ", self.recv_exact(12))
                check(cookie in self.pending, "reply to unknown cookie %d"
                      % cookie)
                check(cookie not in self.partial,
                      "simple reply after chunks for cookie %d" % cookie)
                cmd, length = self.pending.pop(cookie)
                r = Reply(cookie)
                r.error = error
                if cmd == CMD_READ and error == 0:
                    r.data = self.recv_exact(length)
                return r
            check(magic == STRUCTURED_MAGIC, "bad reply magic %#x" % magic)
            check(self.structured, "structured reply not negotiated")
            flags, ctype, cookie, length = struct.unpack(
                ">HHQI", self.recv_exact(16))
            check(cookie in self.pending, "chunk for unknown cookie %d"
                  % cookie)
            payload = self.recv_exact(length)
            r = self.partial.setdefault(cookie, Reply(cookie))
            r.structured = True
            r.chunks.append((ctype, flags, payload))
            if ctype in (CHUNK_ERROR, CHUNK_ERROR_OFFSET):
                (err,) = struct.unpack(">I", payload[:4])
                check(err != 0, "error chunk with error 0")
                r.error = r.error or err
            if flags & RF_DONE:
                del self.partial[cookie]
                self.pending.pop(cookie)
                return r

    def wait(self, cookie):
        """Replies until the one for cookie (others are kept in order)."""
        r = self.read_reply()
        check(r.cookie == cookie, "reply for %d while waiting for %d (this "
              "client sends one at a time)" % (r.cookie, cookie))
        return r

    def cmd(self, cmd, offset=0, length=0, flags=0, data=None):
        return self.wait(self.request(cmd, offset, length, flags, data))

    def read(self, offset, length, flags=0):
        """READ; returns (Reply, bytes assembled from the reply)."""
        r = self.cmd(CMD_READ, offset, length, flags)
        if r.error or not r.structured:
            return r, r.data
        return r, assemble_read(r, offset, length)


def assemble_read(r, offset, length):
    """The bytes a structured READ reply describes; checks the chunks
    cover the range exactly once."""
    buf = bytearray(length)
    covered = []
    for ctype, _, p in r.chunks:
        if ctype == CHUNK_DATA:
            (off,) = struct.unpack(">Q", p[:8])
            n = len(p) - 8
            buf[off - offset:off - offset + n] = p[8:]
        elif ctype == CHUNK_HOLE:
            off, n = struct.unpack(">QI", p)
        elif ctype == CHUNK_NONE:
            continue
        else:
            raise ProtoError("unexpected chunk type %d in READ" % ctype)
        check(n > 0, "empty read chunk")
        check(off >= offset and off + n <= offset + length,
              "chunk %d+%d outside the request %d+%d" % (off, n, offset,
                                                         length))
        covered.append((off, n))
    covered.sort()
    pos = offset
    for off, n in covered:
        check(off == pos, "read chunks leave a gap or overlap at %d" % pos)
        pos += n
    check(pos == offset + length, "read chunks end at %d, not %d"
          % (pos, offset + length))
    return bytes(buf)


def status_extents(r, ctx_id):
    """[(length, flags)] of the BLOCK_STATUS chunk for context ctx_id."""
    found = None
    for ctype, _, p in r.chunks:
        check(ctype == CHUNK_STATUS, "chunk type %d in BLOCK_STATUS" % ctype)
        (cid,) = struct.unpack(">I", p[:4])
        if cid == ctx_id:
            check(found is None, "two chunks for context %d" % cid)
            check((len(p) - 4) % 8 == 0 and len(p) > 4,
                  "bad BLOCK_STATUS chunk length %d" % len(p))
            found = [struct.unpack(">II", p[i:i + 8])
                     for i in range(4, len(p), 8)]
    check(found is not None, "no BLOCK_STATUS chunk for context %d" % ctx_id)
    return found


def pattern(seed, offset, length):
    """Deterministic bytes for [offset, offset+length): every 512-byte
    sector names the seed and its own offset, so misplaced data shows."""
    first = offset // 512
    last = (offset + length + 511) // 512
    fill = bytes((seed * 37 + i) & 0xFF for i in range(496))
    whole = b"".join(struct.pack(">QQ", seed, s * 512) + fill
                     for s in range(first, last))
    start = offset - first * 512
    return whole[start:start + length]
