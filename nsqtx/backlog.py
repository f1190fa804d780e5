"""Where new messages wait: the one rule topics and channels share for their memory and disk queues."""
from __future__ import annotations


def enqueue(memory, backend, limit: int, messages, write) -> int:
    """Put `messages` in the `memory` deque up to `limit` and the rest on `backend` via `write`
    (which raises QueueError). Once anything is on disk, everything new goes behind it there, so a
    backlog comes back in publish order. Without a backend (ephemeral) the rest is dropped: returns
    how many were."""
    room = limit - len(memory)
    if backend is not None and backend.depth:
        room = 0
    if room >= len(messages):
        memory.extend(messages)
        return 0
    room = max(room, 0)
    if room:
        memory.extend(messages[:room])
    if backend is None:
        return len(messages) - room
    write(backend, messages[room:])
    return 0
