"""A topic: fans each published message out to every channel, or holds it while it has none or is paused.

Held messages wait in the topic's :class:`~nsqtx.backed_queue.BackedQueue` (memory up to
--mem-queue-size, then disk; ephemeral topics drop the excess). While anything is held, new messages
queue behind it, and the held ones move to the channels in bounded chunks, one reactor turn each, so
a large backlog cannot stall other clients.
"""
from __future__ import annotations

from twisted.internet import defer

from nsqtx.backed_queue import BackedQueue
from nsqtx.batch import Batch
from nsqtx.channel import Channel
from nsqtx.errors import QueueError
from nsqtx.log import NSQLogger
from nsqtx.message import BODY_OFFSET
from nsqtx.names import is_ephemeral

log = NSQLogger()

#: most held messages moved to the channels per reactor turn
_DRAIN_BATCH = 10000


class Topic:
    def __init__(self, node, name: str):
        self.node = node
        self.name = name
        self.options = node.options
        self.ephemeral = is_ephemeral(name)
        self.channels = {}
        #: ready messages held while the topic has no channel or is paused
        self.queue = BackedQueue("TOPIC(%s)" % name, self.options, node.backend_queue(name, self.ephemeral))
        #: deferred (DPUB) messages held with their delay, as (encoded message, seconds); they count
        #: against --mem-queue-size
        self.held_deferred = []
        self.paused = False
        self.exiting = False
        self.message_count = 0
        self.message_bytes = 0
        self._drain_call = None

    def __repr__(self) -> str:
        return "<Topic %s>" % (self.name,)

    def depth(self) -> int:
        return self.queue.depth() + len(self.held_deferred)

    def backend_depth(self) -> int:
        return self.queue.backend_depth()

    @property
    def dropped_count(self) -> int:
        """Messages an ephemeral topic dropped because its memory queue was full."""
        return self.queue.dropped_count

    def _holding(self) -> bool:
        return bool(self.held_deferred) or self.queue.depth() > 0

    def _fans_out(self) -> bool:
        """Whether new messages go straight to the channels rather than wait in the topic."""
        return bool(self.channels) and not self.paused and not self._holding()

    def put_may_fail(self, count: int) -> bool:
        """Whether put() of `count` new messages (no delay) may raise QueueError: only if the topic is
        exiting, or some of them would be written to a disk queue (the topic's or a channel's)."""
        if self.exiting:
            return True
        if self._fans_out():
            return any(channel.put_may_fail(count) for channel in self.channels.values())
        return self.queue.put_may_fail(count, len(self.held_deferred))

    def put(self, batch: Batch, delay: float = 0.0) -> None:
        """Accept a batch (with a `delay`, a DPUB's one message), raising QueueError if the topic is
        exiting or its disk refuses it.

        Every channel gets the same immutable batch: fan-out copies nothing."""
        if delay:
            (data,) = batch
            self._put_deferred(data, delay)
            return
        if self.exiting:
            raise QueueError("exiting")
        if self._fans_out():
            for channel in list(self.channels.values()):
                channel.put(batch)
        else:
            self._hold(batch)
        self.message_count += batch.count
        self.message_bytes += len(batch.records) - (4 + BODY_OFFSET) * batch.count

    def _put_deferred(self, data: bytes, delay: float) -> None:
        """A DPUB: each channel holds it back for `delay` seconds; a topic without channels (or
        paused) keeps the delay with it until a channel takes it, as nsqd does in memory."""
        if self.exiting:
            raise QueueError("exiting")
        if self.channels and not self.paused:
            for channel in list(self.channels.values()):
                channel.put_deferred(data, delay)
        elif len(self.queue.memory) + len(self.held_deferred) < self.options.mem_queue_size:
            self.held_deferred.append((data, delay))
            self._schedule_drain()
        else:
            # beyond the memory bound it goes to disk (or is dropped) without its delay, as in nsqd
            self._hold(Batch.of((data,)))
        self.message_count += 1
        self.message_bytes += len(data) - BODY_OFFSET

    def _hold(self, batch: Batch) -> None:
        self.queue.put(batch, len(self.held_deferred))
        self._schedule_drain()

    def _schedule_drain(self) -> None:
        if self._drain_call is None and self.channels and not self.paused and self._holding():
            self._drain_call = self.node.clock.callLater(0, self._drain)

    def _drain(self) -> None:
        """Move one chunk of held messages to the channels (memory first: it holds the older ones)."""
        self._drain_call = None
        if self.exiting or not self.channels or self.paused:
            return
        deferred, self.held_deferred = self.held_deferred, []
        batches = self.queue.take(_DRAIN_BATCH)
        try:
            for channel in list(self.channels.values()):
                for batch in batches:
                    channel.put(batch)
                for data, delay in deferred:
                    channel.put_deferred(data, delay)
        except QueueError as err:
            log.error("TOPIC({topic}) ERROR: failed to put messages to a channel - {err}", topic=self.name, err=err)
        self._schedule_drain()

    # -- channels

    def get_channel(self, name: str) -> Channel:
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = Channel(self, name)
            log.info("TOPIC({topic}): new channel({channel})", topic=self.name, channel=name)
            self.node.notifier.created(self.name, name, channel.ephemeral)
            self._schedule_drain()
        return channel

    def get_existing_channel(self, name: str):
        return self.channels.get(name)

    def delete_channel(self, name: str) -> bool:
        channel = self.channels.pop(name, None)
        if channel is None:
            return False
        log.info("TOPIC({topic}): deleting channel {channel}", topic=self.name, channel=name)
        channel.delete()
        self.node.notifier.deleted(self.name, name, channel.ephemeral)
        if not self.channels and self.ephemeral and not self.exiting:
            self.node.delete_topic(self.name)
        return True

    # -- administration

    def pause(self) -> None:
        self.paused = True
        self.node.metadata_changed()

    def unpause(self) -> None:
        self.paused = False
        self.node.metadata_changed()
        self._schedule_drain()

    def empty(self) -> None:
        self.queue.empty()
        self.held_deferred = []

    def close(self):
        """Shutdown: the channels' and the topic's held messages go to disk (deferred ones without
        their delay, as in nsqd). A Deferred that fires once everything is on disk."""
        self._stop()
        closed = [channel.close() for channel in list(self.channels.values())]
        held = Batch.of(data for data, _ in self.held_deferred)
        self.held_deferred = []
        closed.append(self.queue.close([held]))
        return defer.gatherResults(closed)

    def delete(self):
        """Deletion, told to the node's notifier after the topic's own (as nsqd does). A Deferred that
        fires once the topic's and its channels' files are gone."""
        self._stop()
        notifier = self.node.notifier
        notifier.deleted(self.name, None, self.ephemeral)
        deleted = []
        for name, channel in list(self.channels.items()):
            deleted.append(channel.delete())
            notifier.deleted(self.name, name, channel.ephemeral)
        self.channels.clear()
        self.held_deferred = []
        deleted.append(self.queue.delete())
        return defer.gatherResults(deleted)

    def _stop(self) -> None:
        self.exiting = True
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
