"""Where a topic's or channel's messages wait beyond --mem-queue-size: the backend contract (Go's
BackendQueue), the disk queue that durable topics and channels use, and the dropping queue of
ephemeral ones.

Messages cross this boundary as they wait in memory (frames, see :mod:`nsqtx.message`); the disk
backend converts them to and from Go nsqd's encoding itself, so its files are Go nsqd's.
"""
from __future__ import annotations

from twisted.internet import defer
from zope.interface import Attribute, Interface, implementer

from nsqtx.batch import Batch
from nsqtx.errors import QueueError
from nsqtx.log import NSQLogger
from nsqtx.message import from_disk, to_disk

log = NSQLogger()


class IBackendQueue(Interface):
    durable = Attribute("Whether it keeps what it is given, on disk: then a put may fail.")
    depth = Attribute("How many messages it holds.")
    dropped_count = Attribute("How many messages it was given and dropped.")

    def put(batch):
        """Keep the messages of `batch`, in order, behind those it holds; QueueError if it cannot."""

    def read(max_count):
        """Take up to `max_count` messages off its front, as a Batch."""

    def empty():
        """Drop every message it holds."""

    def close():
        """Shutdown: what it holds stays for the next start. A Deferred that fires once that is
        on disk."""

    def delete():
        """Remove it and everything it holds. A Deferred that fires once its files are gone."""


class DiskEncoder:
    """Converts batches for the disk, remembering the last one: a publish that several channels
    spill to disk is converted once."""

    def __init__(self):
        self._last = (None, None)

    def encode(self, batch: Batch) -> Batch:
        last, encoded = self._last
        if last is not batch:
            encoded = to_disk(batch)
            self._last = (batch, encoded)
        return encoded


@implementer(IBackendQueue)
class DiskBackend:
    """A :class:`~nsqtx.diskqueue.DiskQueue` of messages. A write that fails marks the node unhealthy
    (reported by /ping and /stats) until one succeeds again."""

    durable = True
    dropped_count = 0

    def __init__(self, queue, encoder: DiskEncoder, health):
        self.queue = queue
        self.encoder = encoder
        self.health = health

    @property
    def depth(self) -> int:
        return self.queue.depth

    def put(self, batch: Batch) -> None:
        try:
            self.queue.put(self.encoder.encode(batch))
        except (OSError, ValueError) as err:
            error = "failed to write message to backend - %s" % (err,)
            self.health.failed(error)
            log.error("DISKQUEUE({name}): {error}", name=self.queue.name, error=error)
            raise QueueError(error)
        if self.health.error is not None:
            self.health.recovered()

    def read(self, max_count: int) -> Batch:
        return from_disk(self.queue.read(max_count))

    def empty(self) -> None:
        self.queue.empty()

    def close(self):
        return defer.maybeDeferred(self.queue.close)

    def delete(self):
        return defer.maybeDeferred(self.queue.delete)


_NOTHING = Batch(b"", 0)


@implementer(IBackendQueue)
class DroppingQueue:
    """An ephemeral topic's or channel's backend: what does not fit in memory is dropped, and
    counted (/stats dropped_count)."""

    durable = False
    depth = 0

    def __init__(self):
        self.dropped_count = 0

    def put(self, batch: Batch) -> None:
        self.dropped_count += batch.count

    def read(self, max_count: int) -> Batch:
        return _NOTHING

    def empty(self) -> None:
        pass

    def close(self):
        return defer.succeed(None)

    def delete(self):
        return defer.succeed(None)
