"""A channel's messages in flight: delivered, awaiting the client's FIN, REQ or TOUCH, or a timeout.

A delivery is a slot, a number indexing parallel lists (where its message lies in its batch, the
client, the deadline), not an object of its own. A delivery lives for a client's round trip, long
enough to outlive PyPy's nursery: an object per delivery (~150 B with its ID) was copied out of the
nursery and then stayed in the old generation until a major collection, which made memory grow
while a backlog was consumed and was most of what consuming cost the collector. A slot is a few
list cells, reused once its message is finished; on CPython it is also no container for the
collector to track.

FIN, REQ and TOUCH name a message by ID, and consumers mostly answer in the order they were sent
to. So each client's deliveries are kept in that order (:class:`_Sent`, a ring of slot numbers),
and a FIN is first compared with the oldest one, in place, without cutting out an ID. Only a
delivery that an answer passes over is moved to an index by ID (a dict), once; so is every
delivery of a client that leaves, and every other client's when an ID is not found among the
asker's (to tell "not owned" from "not in flight"). Indexing every delivery instead cost a key
object surviving in PyPy's nursery and two dict operations per message, more than all the rest of
in-flight bookkeeping, and the more so the more was in flight: with two consumers PyPy consumed
less than with one.

A ring entry is a slot with the serial number of its delivery; a slot's serial is cleared when its
message is finished, requeued or expires, so entries whose delivery ended elsewhere (timed out,
found through the index) are recognised and skipped, even once the slot is reused.

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
#: a client's first ring size (a power of two)
_RING = 64


class _Sent:
    """One client's deliveries, oldest first: (slot, serial) pairs in a ring of two int lists,
    which PyPy stores unboxed. `head` and `tail` only grow; the entry at n is at n & mask."""
    __slots__ = ("slots", "serials", "head", "tail", "mask")

    def __init__(self, size: int = _RING):
        self.slots = [0] * size
        self.serials = [0] * size
        self.head = 0
        self.tail = 0
        self.mask = size - 1

    def entries(self) -> list:
        """The (slot, serial) pairs from head to tail, taking them."""
        mask = self.mask
        out = [(self.slots[n & mask], self.serials[n & mask]) for n in range(self.head, self.tail)]
        self.head = self.tail
        return out


class InFlight:
    def __init__(self):
        #: per slot: the batch holding the message (None while the slot is free), where the message
        #: lies in it, the client it went to, its deadline, when it was delivered, and the serial
        #: number of the delivery (0 while free)
        self.records = []
        self.start = []
        self.end = []
        self.client = []
        self.deadline = []
        self.delivered_at = []
        self.serial = []
        self._free = []
        self._count = 0
        self._serial = 0
        #: client -> its deliveries not yet answered or indexed, in order
        self._sent = {}
        #: message ID -> slot, for the deliveries taken out of order
        self._index = {}
        self._heap = []
        #: how many slots the heap's entries refer to, live or stale
        self.heap_refs = 0
        self._seq = 0

    def __len__(self) -> int:
        return self._count

    def add(self, records: bytes, start: int, end: int, client, now: float, deadline: float) -> int:
        """Record the delivery of the encoded message at records[start:end]; returns its slot, which
        the caller passes to :meth:`track` (with the others of its pump) for it to expire."""
        self._serial = serial = self._serial + 1
        free = self._free
        if free:
            slot = free.pop()
            self.records[slot] = records
            self.start[slot] = start
            self.end[slot] = end
            self.client[slot] = client
            self.deadline[slot] = deadline
            self.delivered_at[slot] = now
            self.serial[slot] = serial
        else:
            slot = len(self.records)
            self.records.append(records)
            self.start.append(start)
            self.end.append(end)
            self.client.append(client)
            self.deadline.append(deadline)
            self.delivered_at.append(now)
            self.serial.append(serial)
        self._count += 1
        sent = self._sent.get(client)
        if sent is None:
            sent = self._sent[client] = _Sent()
        if sent.tail - sent.head > sent.mask:
            self._make_room(sent)
        tail = sent.tail
        i = tail & sent.mask
        sent.slots[i] = slot
        sent.serials[i] = serial
        sent.tail = tail + 1
        return slot

    def _make_room(self, sent: _Sent) -> None:
        """A full ring drops the entries whose delivery ended elsewhere, and doubles if that did not
        free half of it: so it holds at most about twice what is in flight to its client."""
        serials = self.serial
        live = [(slot, serial) for slot, serial in sent.entries() if serials[slot] == serial]
        size = sent.mask + 1
        if len(live) * 2 > size:
            size *= 2
        sent.__init__(size)
        for i, (slot, serial) in enumerate(live):
            sent.slots[i] = slot
            sent.serials[i] = serial
        sent.tail = len(live)

    def track(self, deadline: float, slots: list) -> None:
        self._seq += 1
        heappush(self._heap, (deadline, self._seq, slots))
        self.heap_refs += len(slots)
        if self.heap_refs > _GROWTH * self._count + _SLACK:
            self._compact()

    def _take(self, msg_id: bytes, client) -> int:
        """The slot of `msg_id` (16 bytes, as the protocol checks), in flight to `client`, taken out
        of the client's ring or the index (QueueError if it is not in flight, or to another client)."""
        sent = self._sent.get(client)
        if sent is not None:
            serials = self.serial
            mask = sent.mask
            while sent.head != sent.tail:
                i = sent.head & mask
                slot = sent.slots[i]
                if serials[slot] == sent.serials[i]:
                    if self.records[slot].startswith(msg_id, self.start[slot] + ID_OFFSET):
                        sent.head += 1
                        return slot
                    break
                sent.head += 1  # its delivery ended elsewhere
        slot = self._index.pop(msg_id, None)
        if slot is not None:
            if self.client[slot] is client:
                return slot
            self._index[msg_id] = slot
            raise QueueError("client does not own message")
        if sent is not None:
            slot = self._find_indexing(sent, msg_id)
            if slot is not None:
                return slot
        for other in list(self._sent):
            self._index_all(other)
        raise QueueError("client does not own message" if msg_id in self._index else "ID not in flight")

    def _find_indexing(self, sent: _Sent, msg_id: bytes):
        """Look for `msg_id` in the ring, indexing the deliveries passed over on the way."""
        serials = self.serial
        records = self.records
        mask = sent.mask
        while sent.head != sent.tail:
            i = sent.head & mask
            sent.head += 1
            slot = sent.slots[i]
            if serials[slot] != sent.serials[i]:
                continue
            if records[slot].startswith(msg_id, self.start[slot] + ID_OFFSET):
                return slot
            self._index[self._msg_id(slot)] = slot
        return None

    def _index_all(self, client) -> None:
        """Move every delivery in the client's ring to the index, dropping the ring."""
        serials = self.serial
        for slot, serial in self._sent.pop(client).entries():
            if serials[slot] == serial:
                self._index[self._msg_id(slot)] = slot

    def forget(self, client) -> None:
        """The client is gone: what is in flight to it stays so (until it times out, as in nsqd),
        found by ID."""
        if client in self._sent:
            self._index_all(client)

    def finish(self, msg_id: bytes, client) -> None:
        """QueueError unless `client` has the message in flight."""
        self._release(self._take(msg_id, client))

    def requeue(self, msg_id: bytes, client) -> bytes:
        """Take the message back from `client`; returns it encoded, carrying this attempt."""
        slot = self._take(msg_id, client)
        data = requeued(self.records[slot], self.start[slot], self.end[slot])
        self._release(slot)
        return data

    def touch(self, msg_id: bytes, client, now: float, timeout: float, max_timeout: float) -> None:
        """Restart the message's timeout, as far as `max_timeout` after its delivery allows."""
        slot = self._take(msg_id, client)
        self._index[msg_id] = slot
        deadline = min(now + timeout, self.delivered_at[slot] + max_timeout)
        self.deadline[slot] = deadline
        self.track(deadline, [slot])

    def _release(self, slot: int) -> None:
        self.records[slot] = None
        self.client[slot] = None
        self.serial[slot] = 0
        self._free.append(slot)
        self._count -= 1

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
                if self._index:
                    self._index.pop(self._msg_id(slot), None)
                self._release(slot)
        return expired

    def _live(self) -> list:
        records = self.records
        return [slot for slot in range(len(records)) if records[slot] is not None]

    def _compact(self) -> None:
        by_deadline = {}
        deadlines = self.deadline
        for slot in self._live():
            by_deadline.setdefault(deadlines[slot], []).append(slot)
        heap = [(deadline, i, slots) for i, (deadline, slots) in enumerate(by_deadline.items())]
        heapify(heap)
        self._heap = heap
        self.heap_refs = self._count

    def take_all(self) -> list:
        """Empty the table; returns every message in it encoded, carrying its attempt (shutdown)."""
        out = [requeued(self.records[slot], self.start[slot], self.end[slot]) for slot in self._live()]
        self.clear()
        return out

    def clear(self) -> None:
        self.__init__()
