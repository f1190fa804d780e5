"""A topic: fans each published message out to every channel, or holds it while it has none or is paused.

Held messages wait in memory up to --mem-queue-size and then in the topic's disk queue (ephemeral
topics drop the excess). While anything is held, new messages queue behind it, and the held ones
move to the channels in bounded chunks, one reactor turn each, so a large backlog cannot stall
other clients.
"""
from __future__ import annotations

from collections import deque

from nsqtx.channel import Channel
from nsqtx.errors import QueueError
from nsqtx.log import NSQLogger
from nsqtx.message import decode_message
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
        self.memory = deque()
        self.backend = None if self.ephemeral else node.backend_queue(name)
        self.paused = False
        self.exiting = False
        self.message_count = 0
        self.message_bytes = 0
        self.dropped_count = 0
        self._drain_call = None

    def __repr__(self) -> str:
        return "<Topic %s>" % (self.name,)

    def depth(self) -> int:
        return len(self.memory) + self.backend_depth()

    def backend_depth(self) -> int:
        backend = self.backend
        return backend.depth if backend is not None else 0

    def _holding(self) -> bool:
        return bool(self.memory) or self.backend_depth() > 0

    def put(self, messages) -> None:
        """Accept messages, raising QueueError if the topic is exiting or its disk refuses them."""
        if self.exiting:
            raise QueueError("exiting")
        if self.channels and not self.paused and not self._holding():
            for channel, batch in zip(list(self.channels.values()), self._copies(messages, len(self.channels))):
                channel.put(batch)
        else:
            self._hold(messages)
        self.message_count += len(messages)
        for msg in messages:
            self.message_bytes += len(msg.body)

    def _hold(self, messages) -> None:
        backend = self.backend
        memory = self.memory
        room = self.options.mem_queue_size - len(memory)
        if backend is not None and backend.depth:
            room = 0
        if room > 0:
            memory.extend(messages[:room])
        rest = messages[max(room, 0):]
        if rest:
            if backend is None:
                self.dropped_count += len(rest)
            else:
                self.node.write_backend(backend, [m.encode() for m in rest])
        self._schedule_drain()

    @staticmethod
    def _copies(messages, n: int):
        """One batch per channel: the originals plus copies, all made before any channel takes its
        batch, since a channel changes its messages' delivery state (e.g. clears the deferral)."""
        return [messages] + [[m.copy() for m in messages] for _ in range(n - 1)]

    def _schedule_drain(self) -> None:
        if self._drain_call is None and self.channels and not self.paused and self._holding():
            self._drain_call = self.node.clock.callLater(0, self._drain)

    def _drain(self) -> None:
        """Move one chunk of held messages to the channels (memory first: it holds the older ones)."""
        self._drain_call = None
        if self.exiting or not self.channels or self.paused:
            return
        batch = []
        while self.memory and len(batch) < _DRAIN_BATCH:
            batch.append(self.memory.popleft())
        if not batch and self.backend is not None:
            for record in self.backend.read(_DRAIN_BATCH):
                try:
                    batch.append(decode_message(record))
                except ValueError as err:
                    log.error("TOPIC({topic}): failed to decode message - {err}", topic=self.name, err=err)
        try:
            for channel, copies in zip(list(self.channels.values()), self._copies(batch, len(self.channels))):
                channel.put(copies)
        except QueueError as err:
            log.error("TOPIC({topic}) ERROR: failed to put messages to a channel - {err}", topic=self.name, err=err)
        self._schedule_drain()

    # -- channels

    def get_channel(self, name: str) -> Channel:
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = Channel(self, name)
            log.info("TOPIC({topic}): new channel({channel})", topic=self.name, channel=name)
            if not channel.ephemeral:
                self.node.metadata_changed()
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
        if not channel.ephemeral:
            self.node.metadata_changed()
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
        self.memory.clear()
        if self.backend is not None:
            self.backend.empty()

    def close(self) -> None:
        """Shutdown: channels and held messages go to disk."""
        self._stop()
        for channel in list(self.channels.values()):
            channel.close()
        if self.backend is not None:
            if self.memory:
                log.info("TOPIC({topic}): flushing {n} memory messages to backend", topic=self.name, n=len(self.memory))
                self.node.flush_to_backend(self.backend, self.memory)
            self.backend.close()

    def delete(self) -> None:
        self._stop()
        for channel in list(self.channels.values()):
            channel.delete()
        self.channels.clear()
        self.memory.clear()
        if self.backend is not None:
            self.backend.delete()

    def _stop(self) -> None:
        self.exiting = True
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
