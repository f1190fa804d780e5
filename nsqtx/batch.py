"""A batch: records ``[4-byte big-endian length][data]`` back to back in one immutable ``bytes``, as
go-diskqueue stores them. In memory the data are messages encoded as frames (so a batch is the wire
frames delivering them, see :mod:`nsqtx.message`); read from or written to a disk queue, messages
encoded as Go nsqd encodes them.

This is how messages travel and wait. An MPUB of 200 messages is one object, not 200: on PyPy a
queued message then costs the garbage collector nothing (one large, pointer-free object per
publish, never copied out of the nursery message by message), on CPython it saves the per-object
header, and fan-out shares one object with every channel. Messages are delivered as slices of it.
"""
from __future__ import annotations

import struct

#: a record's length prefix; the disk queue and the memory queue read records with it too
RECORD_LENGTH = struct.Struct(">l")
_unpack_length = RECORD_LENGTH.unpack_from
_pack_length = RECORD_LENGTH.pack


class Batch:
    __slots__ = ("records", "count")

    def __init__(self, records: bytes, count: int):
        self.records = records
        self.count = count

    @classmethod
    def of(cls, messages) -> "Batch":
        """A batch of encoded messages given one by one (requeues, shutdown flushes, tests)."""
        parts = []
        for data in messages:
            parts.append(_pack_length(len(data)))
            parts.append(data)
        return cls(b"".join(parts), len(parts) // 2)

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return "<Batch of %d, %d bytes>" % (self.count, len(self.records))

    def sizes(self):
        """The length of each record's data, in order."""
        records = self.records
        pos = 0
        for _ in range(self.count):
            size = _unpack_length(records, pos)[0]
            yield size
            pos += 4 + size

    def __iter__(self):
        """The encoded messages, each cut out of the batch."""
        records = self.records
        pos = 4
        for size in self.sizes():
            yield records[pos:pos + size]
            pos += 4 + size

    def split(self, count: int):
        """(the first `count` messages, the rest) as two batches."""
        if count <= 0:
            return Batch(b"", 0), self
        if count >= self.count:
            return self, Batch(b"", 0)
        end = 0
        sizes = self.sizes()
        for _ in range(count):
            end += 4 + next(sizes)
        records = self.records
        return Batch(records[:end], count), Batch(records[end:], self.count - count)
