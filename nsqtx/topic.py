"""A topic: fans each published message out to every channel, or holds it while it has none or is paused."""
from __future__ import annotations

from collections import deque

from nsqtx.channel import Channel
from nsqtx.errors import QueueError
from nsqtx.log import NSQLogger
from nsqtx.names import is_ephemeral

log = NSQLogger()


class Topic:
    def __init__(self, node, name: str):
        self.node = node
        self.name = name
        self.options = node.options
        self.ephemeral = is_ephemeral(name)
        self.channels = {}
        #: messages held while there is no channel to give them to, or while paused
        self.memory = deque()
        self.paused = False
        self.exiting = False
        self.message_count = 0
        self.message_bytes = 0
        self.dropped_count = 0

    def __repr__(self) -> str:
        return "<Topic %s>" % (self.name,)

    def depth(self) -> int:
        return len(self.memory)

    def new_message_id(self) -> bytes:
        return self.node.guid.next_id()

    def put(self, messages) -> None:
        """Accept all of `messages` or none: a durable queue without room refuses the whole batch."""
        if self.exiting:
            raise QueueError("exiting")
        count = len(messages)
        channels = self.channels
        if channels and not self.paused:
            for channel in channels.values():
                if channel.room() < count:
                    raise QueueError("queue full: channel %s has %d messages queued (--mem-queue-size=%d)"
                                     % (channel.name, channel.depth(), self.options.mem_queue_size))
            for channel, batch in zip(list(channels.values()), self._copies(messages, len(channels))):
                channel.put(batch)
        else:
            room = self.options.mem_queue_size - len(self.memory)
            if room < count:
                if not self.ephemeral:
                    raise QueueError("queue full: topic has %d messages queued (--mem-queue-size=%d)"
                                     % (len(self.memory), self.options.mem_queue_size))
                self.dropped_count += count - max(room, 0)
                messages = messages[:max(room, 0)]
            self.memory.extend(messages)
        self.message_count += count
        for msg in messages:
            self.message_bytes += len(msg.body)

    @staticmethod
    def _copies(messages, n: int):
        """One batch per channel: the originals plus copies, all made before any channel takes its
        batch, since a channel changes its messages' delivery state (e.g. clears the deferral)."""
        return [messages] + [[m.copy() for m in messages] for _ in range(n - 1)]

    def _drain(self) -> None:
        """Hand held messages to the channels (a first channel appeared, or the topic was unpaused)."""
        if not self.memory or not self.channels or self.paused:
            return
        held = list(self.memory)
        self.memory.clear()
        for channel, batch in zip(list(self.channels.values()), self._copies(held, len(self.channels))):
            channel.put(batch, bounded=False)

    # -- channels

    def get_channel(self, name: str) -> Channel:
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = Channel(self, name)
            log.info("TOPIC({topic}): new channel({channel})", topic=self.name, channel=name)
            self._drain()
        return channel

    def get_existing_channel(self, name: str):
        return self.channels.get(name)

    def delete_channel(self, name: str) -> bool:
        channel = self.channels.pop(name, None)
        if channel is None:
            return False
        log.info("TOPIC({topic}): deleting channel {channel}", topic=self.name, channel=name)
        channel.close()
        if not self.channels and self.ephemeral and not self.exiting:
            self.node.delete_topic(self.name)
        return True

    # -- administration

    def pause(self) -> None:
        self.paused = True

    def unpause(self) -> None:
        self.paused = False
        self._drain()

    def empty(self) -> None:
        self.memory.clear()

    def close(self) -> None:
        self.exiting = True
        for channel in list(self.channels.values()):
            channel.close()
