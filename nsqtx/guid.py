"""Message IDs: nsqd's layout (time, node id, sequence in one 64-bit number, as 16 hex digits).

IDs only ever grow, also across restarts, because the time part leads. When more than 4096 IDs are
wanted within one time tick the sequence carries into the time part instead of waiting, as Go's
generator would by spinning.
"""
from __future__ import annotations

import time

_EPOCH = 1288834974288
_SEQUENCE_BITS = 12
_NODE_BITS = 10
_SEQUENCE_MASK = (1 << _SEQUENCE_BITS) - 1


class GUIDFactory:
    __slots__ = ("_node", "_last", "_clock")

    def __init__(self, node_id: int, clock=time.time_ns):
        self._node = node_id << _SEQUENCE_BITS
        self._clock = clock
        self._last = 0

    def next_id(self) -> bytes:
        base = (((self._clock() >> 20) - _EPOCH) << (_SEQUENCE_BITS + _NODE_BITS)) | self._node
        last = self._last
        if base <= last:
            if last & _SEQUENCE_MASK == _SEQUENCE_MASK:
                base = last + (1 << (_SEQUENCE_BITS + _NODE_BITS)) - _SEQUENCE_MASK
            else:
                base = last + 1
        self._last = base
        return b"%016x" % base
