"""The in-memory part of a topic's or channel's queue: a FIFO of messages kept as whole batches.

Putting a batch in costs one append whatever its size, and taking messages out builds nothing per
message: a run of them goes out as one slice of their batch (see :mod:`nsqtx.message`).
"""
from __future__ import annotations

from collections import deque

from nsqtx.batch import Batch


class MemoryQueue:
    __slots__ = ("_batches", "_pos", "_taken", "_len")

    def __init__(self):
        self._batches = deque()
        #: where the next record starts in the first batch, and how many of its messages are gone
        self._pos = 0
        self._taken = 0
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def put(self, batch: Batch) -> None:
        if batch.count:
            self._batches.append(batch)
            self._len += batch.count

    def append(self, data: bytes) -> None:
        """One encoded message (a requeue, a timeout, a deferred message coming due)."""
        self.put(Batch.of((data,)))

    def front(self):
        """(records, pos, count): the oldest batch, where its next record starts and how many of its
        messages are left; a consumer's share is sent as a run of them (IndexError when empty)."""
        batch = self._batches[0]
        return batch.records, self._pos, batch.count - self._taken

    def advance(self, pos: int, count: int) -> None:
        """Remove the first `count` messages left in the oldest batch; the next one starts at `pos`."""
        batch = self._batches[0]
        if self._taken + count >= batch.count:
            self._batches.popleft()
            self._pos = self._taken = 0
        else:
            self._pos = pos
            self._taken += count
        self._len -= count

    def take(self, max_count=None) -> list:
        """Remove whole batches from the front until at least `max_count` messages (all without
        one) are taken, and return them: the first one cut to what was still queued of it."""
        out = []
        taken = 0
        batches = self._batches
        while batches and (max_count is None or taken < max_count):
            batch = batches.popleft()
            if self._taken:
                batch = Batch(batch.records[self._pos:], batch.count - self._taken)
                self._pos = self._taken = 0
            out.append(batch)
            taken += batch.count
        self._len -= taken
        return out

    def clear(self) -> None:
        self._batches.clear()
        self._pos = self._taken = self._len = 0

    def __iter__(self):
        """The queued messages, oldest first, without taking them."""
        skip = self._taken
        for batch in self._batches:
            for data in batch:
                if skip:
                    skip -= 1
                    continue
                yield data
