"""A topic's or channel's queue of ready messages: memory first, then its backend.

Up to --mem-queue-size messages wait in memory (:class:`~nsqtx.memory_queue.MemoryQueue`); the rest
go to the backend (:mod:`nsqtx.backend_queue`: a disk queue, or for ephemeral topics and channels a
queue that drops them). Once the backend holds anything, new messages go behind them there, so a
backlog comes back in publish order.
"""
from __future__ import annotations

from nsqtx.errors import QueueError
from nsqtx.log import NSQLogger
from nsqtx.memory_queue import MemoryQueue

log = NSQLogger()


class BackedQueue:
    def __init__(self, label: str, options, backend):
        #: names the owner in log lines, as nsqd does: TOPIC(name) or CHANNEL(name)
        self.label = label
        self.options = options
        self.memory = MemoryQueue()
        self.backend = backend

    def depth(self) -> int:
        return len(self.memory) + self.backend.depth

    def backend_depth(self) -> int:
        return self.backend.depth

    @property
    def dropped_count(self) -> int:
        return self.backend.dropped_count

    def room(self, reserved: int = 0) -> int:
        """How many new messages memory takes, when `reserved` of --mem-queue-size are taken by
        messages kept elsewhere in memory."""
        if self.backend.depth:
            return 0
        return self.options.mem_queue_size - reserved - len(self.memory)

    def put_may_fail(self, count: int, reserved: int = 0) -> bool:
        """Whether put() of `count` messages would write some of them to disk, which may fail."""
        return self.backend.durable and self.room(reserved) < count

    def put(self, batch, reserved: int = 0) -> None:
        """Queue new messages: memory first, then the backend (QueueError if it refuses them)."""
        room = self.room(reserved)
        if room >= batch.count:
            self.memory.put(batch)
            return
        kept, rest = batch.split(room)
        self.memory.put(kept)
        self.backend.put(rest)

    def append(self, data: bytes) -> None:
        """A message coming back (requeued, timed out, deferred coming due): to memory whatever its
        bound, never dropped."""
        self.memory.append(data)

    def take(self, max_count: int) -> list:
        """At least `max_count` messages from the front in whole batches (fewer if fewer wait):
        memory's, or else one read from the backend."""
        batches = self.memory.take(max_count)
        if not batches and self.backend.depth:
            batches = [self.backend.read(max_count)]
        return batches

    def refill(self, count: int) -> bool:
        """Move up to `count` messages from the backend to memory; False if none could be read."""
        batch = self.backend.read(count)
        self.memory.put(batch)
        return batch.count > 0

    def empty(self) -> None:
        self.memory.clear()
        self.backend.empty()

    def close(self, pending=()):
        """Shutdown: what memory holds, then the `pending` batches (messages kept elsewhere), go to a
        durable backend; a write that fails is logged and the rest carries on. A Deferred that fires
        once the backend is closed."""
        if self.backend.durable:
            batches = self.memory.take() + [batch for batch in pending if batch.count]
            count = sum(batch.count for batch in batches)
            if count:
                log.info("{owner}: flushing {n} memory messages to backend", owner=self.label, n=count)
            try:
                for batch in batches:
                    self.backend.put(batch)
            except QueueError:
                pass
        return self.backend.close()

    def delete(self):
        """Drop everything, files included. A Deferred that fires once they are gone."""
        self.memory.clear()
        return self.backend.delete()
