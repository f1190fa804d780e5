"""Where new messages wait: the one rule topics and channels share for their memory and disk queues."""
from __future__ import annotations


def enqueue(memory, backend, limit: int, batch, write) -> int:
    """Put `batch` in the `memory` queue up to `limit` messages and the rest on `backend` via `write`
    (which raises QueueError). Once anything is on disk, everything new goes behind it there, so a
    backlog comes back in publish order. Without a backend (ephemeral) the rest is dropped: returns
    how many were."""
    room = limit - len(memory)
    if backend is not None and backend.depth:
        room = 0
    if room >= batch.count:
        memory.put(batch)
        return 0
    kept, rest = batch.split(room)
    memory.put(kept)
    if backend is None:
        return rest.count
    write(backend, rest)
    return 0
