"""Many reads in flight on one libnbd handle, each checked against the
bytes the image must hold (the data the test wrote, as a bytes-like)."""
import nbd


def read_and_check(h, want, ranges, depth, label=""):
    """Read every (offset, length) of ranges, at most depth at once."""
    reqs = []
    for off, n in ranges:
        buf = nbd.Buffer(n)
        reqs.append((h.aio_pread(buf, off), buf, off, n))
        while h.aio_in_flight() >= depth:
            h.poll(-1)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for cookie, buf, off, n in reqs:
        assert h.aio_command_completed(cookie)
        assert buf.to_bytearray() == want[off:off + n], \
            f"{label}: read of {n} at {off} differs"
