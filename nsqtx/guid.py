"""Message IDs: nsqd's layout (time, node id, sequence in one 64-bit number, as 16 hex digits).

IDs only ever grow, also across restarts, because the time part leads. When more than 4096 IDs are
wanted within one time tick the sequence carries into the time part instead of waiting, as Go's
generator would by spinning.

The 12-bit sequence is exactly the last three hex digits, so an ID is a 13-digit prefix, formatted
once per tick, plus a precomputed suffix: publishing pays one concatenation per message, not a
number formatting.
"""
from __future__ import annotations

import time

_EPOCH = 1288834974288
_SEQUENCES = 1 << 12
_SUFFIXES = [b"%03x" % i for i in range(_SEQUENCES)]


class GUIDFactory:
    __slots__ = ("_node", "_clock", "_tick", "_next", "_prefix")

    def __init__(self, node_id: int, clock=time.time_ns):
        self._node = node_id
        self._clock = clock
        self._tick = -1
        #: the next unused sequence number within the current tick
        self._next = _SEQUENCES
        self._prefix = b""

    def runs(self, count: int) -> list:
        """`count` new IDs as (13-digit prefix, list of 3-digit suffixes) runs, so a caller building
        messages can join the parts into each message directly, without an ID object in between."""
        runs = []
        while count > 0:
            tick = (self._clock() >> 20) - _EPOCH
            if tick > self._tick:
                self._start_tick(tick)
            elif self._next == _SEQUENCES:
                self._start_tick(self._tick + 1)
            first = self._next
            last = min(first + count, _SEQUENCES)
            runs.append((self._prefix, _SUFFIXES[first:last]))
            count -= last - first
            self._next = last
        return runs

    def _start_tick(self, tick: int) -> None:
        self._tick = tick
        self._next = 0
        self._prefix = b"%013x" % ((tick << 10) | self._node)
