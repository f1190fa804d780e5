"""Where new messages wait: the one rule topics and channels share for their memory and disk queues."""
from __future__ import annotations


def _room(memory, backend, limit: int) -> int:
    """How many new messages the `memory` queue takes, up to `limit`. Once anything is on disk,
    everything new goes behind it there, so a backlog comes back in publish order."""
    if backend is not None and backend.depth:
        return 0
    return limit - len(memory)


def may_fail(memory, backend, limit: int, count: int) -> bool:
    """Whether enqueue() of `count` messages would write some of them to disk, which may fail."""
    return backend is not None and _room(memory, backend, limit) < count


def enqueue(memory, backend, limit: int, batch, write) -> int:
    """Put `batch` in the `memory` queue up to `limit` messages and the rest on `backend` via `write`
    (which raises QueueError). Without a backend (ephemeral) the rest is dropped: returns how many
    were."""
    room = _room(memory, backend, limit)
    if room >= batch.count:
        memory.put(batch)
        return 0
    kept, rest = batch.split(room)
    memory.put(kept)
    if backend is None:
        return rest.count
    write(backend, rest)
    return 0
