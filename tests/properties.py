"""What the protocol parsers' hypothesis properties share (nsqd's V2 in test_protocol_v2, nsqlookupd's
V1 in test_lookupd_protocol_v1): streams cut into pieces, bytes mutated, sized bodies, and the check
that the server logged no traceback."""
from __future__ import annotations

import struct

from hypothesis import HealthCheck
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher

#: no check against the wall clock: a loaded machine (or PyPy's slower start) is no failure
SLOW_IS_FINE = [HealthCheck.too_slow]


def sized(data: bytes) -> bytes:
    return struct.pack(">l", len(data)) + data


def split_at(data: bytes, cuts) -> list:
    """`data` cut at the given offsets (sorted, unique, within 1..len-1)."""
    bounds = [0] + list(cuts) + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@st.composite
def chunkings(draw, data: bytes, marks=()):
    """`data` in pieces, as hypothesis cuts it: byte by byte (if short), or anywhere, and also
    just around `marks` (where sizes, bodies and lines start and end), so that a long body is cut
    inside its size or next to its end as often as elsewhere; shrinks towards one piece."""
    if len(data) < 2:
        return [data]
    if len(data) <= 400 and draw(st.booleans()):
        return [data[i:i + 1] for i in range(len(data))]
    cuts = set(draw(st.lists(st.integers(1, len(data) - 1), max_size=40)))
    if marks:
        near = draw(st.lists(st.tuples(st.sampled_from(sorted(marks)), st.integers(-2, 5)), max_size=12))
        cuts.update(mark + delta for mark, delta in near if 0 < mark + delta < len(data))
    return split_at(data, sorted(cuts))


@st.composite
def mutations(draw, data: bytes, least: int = 0) -> bytes:
    """`data` with `least` to 3 bytes overwritten, cut out, or put in (any bytes, or a newline, a
    space or a size of -1)."""
    data = bytearray(data)
    for _ in range(draw(st.integers(least, 3))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["overwrite", "cut", "insert"]))
        if action == "insert" or at == len(data):
            data[at:at] = draw(st.binary(min_size=1, max_size=6) | st.sampled_from([b"\n", b" ", b"\xff\xff\xff\xff"]))
        elif action == "cut":
            del data[at:at + draw(st.integers(1, 6))]
        else:
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


class NoTracebacksMixin:
    """watch_tracebacks() in setUp; assertNoTracebacks() fails with any the server logged since."""

    def watch_tracebacks(self) -> None:
        self.tracebacks = []

        def observe(event):
            if "log_failure" in event:
                self.tracebacks.append(event["log_failure"].getTraceback())

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def assertNoTracebacks(self):
        tracebacks, self.tracebacks[:] = list(self.tracebacks), []
        self.assertEqual(tracebacks, [], "the server logged tracebacks:\n" + "\n".join(tracebacks))
