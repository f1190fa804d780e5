"""Topic and channel creations and deletions, told to whoever listens (nsqd's Notify): the node's
metadata persistence and its nsqlookupd peers."""
from __future__ import annotations

from typing import NamedTuple, Optional


class Change(NamedTuple):
    """A topic (channel None) or a channel was created, or deleted."""

    created: bool
    topic: str
    channel: Optional[str]
    #: whether what changed is ephemeral (then nothing of it is persisted)
    ephemeral: bool


class Notifier:
    def __init__(self):
        self._listeners = []

    def listen(self, listener) -> None:
        """`listener(change)` is called for every Change from now on."""
        self._listeners.append(listener)

    def stop_listening(self, listener) -> None:
        self._listeners.remove(listener)

    def created(self, topic: str, channel: Optional[str], ephemeral: bool) -> None:
        self._notify(Change(True, topic, channel, ephemeral))

    def deleted(self, topic: str, channel: Optional[str], ephemeral: bool) -> None:
        self._notify(Change(False, topic, channel, ephemeral))

    def _notify(self, change: Change) -> None:
        for listener in list(self._listeners):
            listener(change)
