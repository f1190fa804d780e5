"""A channel's messages in flight: delivered, awaiting the client's FIN, REQ or TOUCH, or a timeout.

A delivery is a slot, a number indexing parallel lists (where its message lies in its batch, the
client, the deadline), not an object of its own. A delivery lives for a client's round trip, long
enough to outlive PyPy's nursery: an object per delivery (~150 B with its ID) was copied out of the
nursery and then stayed in the old generation until a major collection, which made memory grow
while a backlog was consumed and was most of what consuming cost the collector. A slot is a few
list cells, reused once its message is finished; on CPython it is also no container for the
collector to track. What each delivery still adds is its ID (the key FIN and REQ look it up by).

Expiry is a heap of (deadline, sequence, slots): the messages one pump gives one client share a
deadline, so they share an entry. Entries go stale when their messages are finished, requeued or
touched, and are dropped lazily: a popped entry expires only the slots still in use whose deadline
has come. Once the heap refers to more than _GROWTH times the live slots plus _SLACK, it is rebuilt
from the live ones, so a high FIN rate cannot grow it without bound; the factor keeps a rebuild to
a fraction of a pass per delivery.
"""
from __future__ import annotations

from heapq import heapify, heappop, heappush

from nsqtx.errors import QueueError
from nsqtx.message import BODY_OFFSET, ID_OFFSET, requeued

_GROWTH = 4
_SLACK = 4096


class InFlight:
    def __init__(self):
        #: message ID -> slot
        self.slots = {}
        #: per slot: the batch holding the message (None while the slot is free), where the message
        #: lies in it, the client it went to, its deadline and when it was delivered
        self.records = []
        self.start = []
        self.end = []
        self.client = []
        self.deadline = []
        self.delivered_at = []
        self._free = []
        self._heap = []
        #: how many slots the heap's entries refer to, live or stale
        self.heap_refs = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self.slots)

    def add(self, records: bytes, start: int, end: int, client, now: float, deadline: float) -> int:
        """Record the delivery of the encoded message at records[start:end]; returns its slot, which
        the caller passes to :meth:`track` (with the others of its pump) for it to expire."""
        free = self._free
        if free:
            slot = free.pop()
            self.records[slot] = records
            self.start[slot] = start
            self.end[slot] = end
            self.client[slot] = client
            self.deadline[slot] = deadline
            self.delivered_at[slot] = now
        else:
            slot = len(self.records)
            self.records.append(records)
            self.start.append(start)
            self.end.append(end)
            self.client.append(client)
            self.deadline.append(deadline)
            self.delivered_at.append(now)
        self.slots[records[start + ID_OFFSET:start + BODY_OFFSET]] = slot
        return slot

    def track(self, deadline: float, slots: list) -> None:
        self._seq += 1
        heappush(self._heap, (deadline, self._seq, slots))
        self.heap_refs += len(slots)
        if self.heap_refs > _GROWTH * len(self.slots) + _SLACK:
            self._compact()

    def _owned(self, msg_id: bytes, client) -> int:
        slot = self.slots.get(msg_id)
        if slot is None:
            raise QueueError("ID not in flight")
        if self.client[slot] is not client:
            raise QueueError("client does not own message")
        return slot

    def finish(self, msg_id: bytes, client) -> None:
        """QueueError unless `client` has the message in flight."""
        self._release(self._owned(msg_id, client), msg_id)

    def requeue(self, msg_id: bytes, client) -> bytes:
        """Take the message back from `client`; returns it encoded, carrying this attempt."""
        slot = self._owned(msg_id, client)
        data = requeued(self.records[slot], self.start[slot], self.end[slot])
        self._release(slot, msg_id)
        return data

    def touch(self, msg_id: bytes, client, now: float, timeout: float, max_timeout: float) -> None:
        """Restart the message's timeout, as far as `max_timeout` after its delivery allows."""
        slot = self._owned(msg_id, client)
        deadline = min(now + timeout, self.delivered_at[slot] + max_timeout)
        self.deadline[slot] = deadline
        self.track(deadline, [slot])

    def _release(self, slot: int, msg_id: bytes) -> None:
        del self.slots[msg_id]
        self.records[slot] = None
        self.client[slot] = None
        self._free.append(slot)

    def _msg_id(self, slot: int) -> bytes:
        start = self.start[slot]
        return self.records[slot][start + ID_OFFSET:start + BODY_OFFSET]

    def expire(self, now: float) -> list:
        """Take back every message whose deadline has come: [(client, encoded message), ...]."""
        expired = []
        heap = self._heap
        records = self.records
        deadlines = self.deadline
        while heap and heap[0][0] <= now:
            _, _, slots = heappop(heap)
            self.heap_refs -= len(slots)
            for slot in slots:
                if records[slot] is None or deadlines[slot] > now:
                    continue  # finished, or touched (a later entry has it), or reused since
                client = self.client[slot]
                expired.append((client, requeued(records[slot], self.start[slot], self.end[slot])))
                self._release(slot, self._msg_id(slot))
        return expired

    def _compact(self) -> None:
        by_deadline = {}
        deadlines = self.deadline
        for slot in self.slots.values():
            by_deadline.setdefault(deadlines[slot], []).append(slot)
        heap = [(deadline, i, slots) for i, (deadline, slots) in enumerate(by_deadline.items())]
        heapify(heap)
        self._heap = heap
        self.heap_refs = len(self.slots)

    def take_all(self) -> list:
        """Empty the table; returns every message in it encoded, carrying its attempt (shutdown)."""
        out = [requeued(self.records[slot], self.start[slot], self.end[slot]) for slot in self.slots.values()]
        self.clear()
        return out

    def clear(self) -> None:
        self.slots = {}
        for column in (self.records, self.start, self.end, self.client, self.deadline, self.delivered_at):
            del column[:]
        self._free = []
        self._heap = []
        self.heap_refs = 0
