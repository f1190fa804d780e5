"""A channel's messages in flight: delivered, awaiting the client's FIN, REQ or TOUCH, or a timeout.

A delivery is a slot, a number indexing parallel lists (where its message lies in its batch, the
client, the deadline), not an object: a delivery lives for a client's round trip, longer than PyPy's
nursery, and an object per delivery was copied out of it and kept until a major collection. Slots
are reused once their message is answered. A delivery's client is stored in its slot only while the
delivery is indexed (below); in a deque it belongs to the deque's client, which saves a store (a GC
write barrier on PyPy) at every delivery and answer.

Consumers mostly answer in the order they were sent to, so each client's deliveries are kept in that
order (a deque of slots) and a FIN is first compared with the oldest one, in place, without cutting
out an ID: on CPython against the record (startswith at an offset), on PyPy against two columns
holding each ID as two machine integers (PyPy's startswith at an offset compares byte by byte). A
delivery that an answer passes over is moved to an index by ID (a dict), once; so is every delivery
of a client that leaves. Indexing every delivery instead cost a key object and two dict operations
per message.

An ID found nowhere (a late FIN for a message that timed out, or a bogus one) means comparing it
with every delivery not indexed, to tell "not owned" from "not in flight". That scan is done in
place while each delivery has paid for _SCAN_CREDIT comparisons on average; past that, every deque
is indexed instead, so that a flood of unknown IDs costs each delivery one indexing at most.

A client's deliveries expire in the order they were made (one timeout per client), so expiry takes
them from the front of its deque while their deadline has come. Only indexed deliveries have an
entry in a heap of (deadline, sequence, slot); one that is answered leaves its entry behind, dropped
when popped, and the heap is rebuilt from the index once it holds more than _GROWTH times the indexed
deliveries plus _SLACK, so that TOUCH cannot grow it without bound. A run delivered with an earlier
deadline than its client's last one (the wall clock went back) is indexed, so that it does not wait
behind later ones. On PyPy the deques are :class:`~nsqtx.int_deque.IntDeque`.

Slots are reused, never removed; once nothing is in flight, a table grown past _KEEP_SLOTS slots is
let go of at the next expiry scan, so that a burst does not keep its peak's memory. The figures behind
these choices are in docs/performance.md.
"""
from __future__ import annotations

import platform
import struct
from collections import deque
from heapq import heapify, heappop, heappush

from nsqtx.batch import RECORD_LENGTH
from nsqtx.errors import QueueError
from nsqtx.int_deque import IntDeque
from nsqtx.message import BODY_OFFSET, ID_LENGTH, ID_OFFSET, requeued

_unpack_length = RECORD_LENGTH.unpack_from
#: a message ID's 16 bytes as two integers; signed, because PyPy boxes an unsigned 64-bit one (and
#: an ID's hex digits never set the top bit)
_unpack_id = struct.Struct(">qq").unpack_from
_GROWTH = 4
_SLACK = 4096
#: ID comparisons in place that each delivery pays for, for answers naming an ID found nowhere
_SCAN_CREDIT = 4
#: slots an empty table keeps rather than start over
_KEEP_SLOTS = 4096
_PYPY = platform.python_implementation() == "PyPy"
#: a client's deliveries, as slots in the order they went out
_Fifo = IntDeque if _PYPY else deque


class InFlight:
    def __init__(self, fifo=_Fifo, scan_credit: int = _SCAN_CREDIT, id_columns: bool = _PYPY):
        #: the deque type holding each client's deliveries
        self._fifo = fifo
        self._scan_credit = scan_credit
        #: whether FINs are compared with id_high and id_low rather than with the records
        self._id_columns = id_columns
        #: comparisons in place left for IDs found nowhere
        self._credit = 0
        #: per slot: the batch holding the message (None once the slot is free), where the message
        #: starts in it, its deadline and when it was delivered
        self.records = []
        self.start = []
        self.deadline = []
        self.delivered_at = []
        #: per slot, while the delivery is indexed: the client it went to (else None; a delivery in
        #: a deque belongs to the deque's client)
        self.client = []
        #: per slot, with id_columns: its message ID as two integers (see _unpack_id)
        self.id_high = []
        self.id_low = []
        self._free = []
        self._count = 0
        #: client -> its deliveries not yet answered, expired or indexed (slots), oldest first
        self._sent = {}
        #: message ID -> slot, for the deliveries taken out of their client's deque
        self._index = {}
        #: (deadline, sequence, slot) for indexed deliveries, some of them stale
        self._heap = []
        self._seq = 0

    def __len__(self) -> int:
        return self._count

    def add_run(self, records: bytes, pos: int, max_count: int, max_bytes: int, client, now: float,
                deadline: float):
        """Record the delivery to `client`, expiring at `deadline`, of the messages whose records
        follow one another from records[pos]: `max_count` of them, or fewer once they reach
        `max_bytes` (at least one). Returns where the next record starts and how many were
        recorded."""
        sent = self._sent.get(client)
        if sent is None:
            sent = self._sent[client] = self._fifo()
        elif sent and deadline < self.deadline[sent[-1]]:
            sent = None  # indexed below, so as not to wait behind later deadlines
        free = self._free
        batches, starts, clients, deadlines, delivered = (self.records, self.start, self.client,
                                                          self.deadline, self.delivered_at)
        id_columns, id_high, id_low = self._id_columns, self.id_high, self.id_low
        limit = pos + max_bytes
        count = 0
        while count < max_count and pos < limit:
            start = pos + 4
            pos = start + _unpack_length(records, pos)[0]
            if free:
                slot = free.pop()
                batches[slot] = records
                starts[slot] = start
                deadlines[slot] = deadline
                delivered[slot] = now
            else:
                slot = len(batches)
                batches.append(records)
                starts.append(start)
                clients.append(None)
                deadlines.append(deadline)
                delivered.append(now)
                id_high.append(0)
                id_low.append(0)
            if id_columns:
                id_high[slot], id_low[slot] = _unpack_id(records, start + ID_OFFSET)
            if sent is None:
                self._add_to_index(slot, client)
            else:
                sent.append(slot)
            count += 1
        self._count += count
        self._credit += count * self._scan_credit
        return pos, count

    def _add_to_index(self, slot: int, client) -> None:
        self.client[slot] = client
        deadline = self.deadline[slot]
        self._index[self._msg_id(slot)] = slot
        self._seq += 1
        heappush(self._heap, (deadline, self._seq, slot))
        if len(self._heap) > _GROWTH * len(self._index) + _SLACK:
            self._compact()

    def _take(self, data: bytes, client, offset: int = 0) -> int:
        """The slot of the message ID at data[offset:] (16 bytes, as the protocol checks), in flight
        to `client`, taken out of the client's deque or the index (QueueError if it is not in
        flight, or to another client). A FIN's ID is compared where it was read, not cut out: on
        PyPy the 16-byte string was an allocation per message, a tenth of what consuming
        allocated."""
        sent = self._sent.get(client)
        if sent:
            slot = sent[0]
            if self._id_columns:
                high, low = _unpack_id(data, offset)
                oldest = self.id_low[slot] == low and self.id_high[slot] == high
            else:
                oldest = self.records[slot].startswith(data[offset:offset + ID_LENGTH],
                                                       self.start[slot] + ID_OFFSET)
            if oldest:
                sent.popleft()
                return slot
        msg_id = data[offset:offset + ID_LENGTH]
        slot = self._index.pop(msg_id, None)
        if slot is not None:
            if self.client[slot] is client:
                self.client[slot] = None
                return slot
            self._index[msg_id] = slot
            raise QueueError("client does not own message")
        if sent:
            passed = self._position(sent, msg_id)
            if passed >= 0:
                # answered out of order: the deliveries passed over are indexed
                for _ in range(passed):
                    self._add_to_index(sent.popleft(), client)
                return sent.popleft()
        # an ID found nowhere: the scan compares it with every delivery not indexed
        scan = self._count - len(self._index)
        if scan <= self._credit:
            self._credit -= scan
            owned = any(self._position(other, msg_id) >= 0
                        for owner, other in self._sent.items() if owner is not client)
        else:
            for other in list(self._sent):
                self._index_all(other)
            owned = msg_id in self._index
        raise QueueError("client does not own message" if owned else "ID not in flight")

    def _position(self, sent, msg_id: bytes) -> int:
        """Where `msg_id` is in a client's deque (-1 if not there), compared in place."""
        records = self.records
        starts = self.start
        for position, slot in enumerate(sent):
            if records[slot].startswith(msg_id, starts[slot] + ID_OFFSET):
                return position
        return -1

    def _index_all(self, client) -> None:
        """Move every delivery in the client's deque to the index, dropping the deque."""
        for slot in self._sent.pop(client):
            self._add_to_index(slot, client)

    def forget(self, client) -> None:
        """The client is gone: what is in flight to it stays so (until it times out, as in nsqd),
        found by ID."""
        if client in self._sent:
            self._index_all(client)

    def finish(self, data: bytes, client, offset: int = 0) -> None:
        """QueueError unless `client` has the message in flight; its ID is data[offset:offset + 16]."""
        self._release(self._take(data, client, offset))

    def requeue(self, msg_id: bytes, client) -> bytes:
        """Take the message back from `client`; returns it encoded, carrying this attempt."""
        slot = self._take(msg_id, client)
        data = requeued(self.records[slot], self.start[slot])
        self._release(slot)
        return data

    def touch(self, msg_id: bytes, client, now: float, timeout: float, max_timeout: float) -> None:
        """Restart the message's timeout, as far as `max_timeout` after its delivery allows."""
        slot = self._take(msg_id, client)
        self.deadline[slot] = min(now + timeout, self.delivered_at[slot] + max_timeout)
        self._add_to_index(slot, client)

    def _release(self, slot: int) -> None:
        self.records[slot] = None
        self._count -= 1
        self._free.append(slot)

    def _msg_id(self, slot: int) -> bytes:
        start = self.start[slot]
        return self.records[slot][start + ID_OFFSET:start + BODY_OFFSET]

    def expire(self, now: float) -> list:
        """Take back every message whose deadline has come: [(client, encoded message), ...]."""
        expired = []
        records = self.records
        starts = self.start
        deadlines = self.deadline
        for client, sent in self._sent.items():
            while sent and deadlines[sent[0]] <= now:
                slot = sent.popleft()
                expired.append((client, requeued(records[slot], starts[slot])))
                self._release(slot)
        heap = self._heap
        index = self._index
        while heap and heap[0][0] <= now:
            slot = heappop(heap)[2]
            if records[slot] is None or deadlines[slot] > now:
                continue  # answered, or touched again (a later entry has it), or reused
            # a slot in use whose deadline has come is an indexed one: deques are in deadline
            # order, and their due deliveries went above
            del index[self._msg_id(slot)]
            expired.append((self.client[slot], requeued(records[slot], starts[slot])))
            self.client[slot] = None
            self._release(slot)
        if not self._count and len(records) > _KEEP_SLOTS:
            self.clear()
        return expired

    def _compact(self) -> None:
        deadlines = self.deadline
        heap = [(deadlines[slot], i, slot) for i, slot in enumerate(self._index.values())]
        heapify(heap)
        self._heap = heap

    def take_all(self) -> list:
        """Empty the table; returns every message in it encoded, carrying its attempt (shutdown)."""
        records = self.records
        out = [requeued(records[slot], self.start[slot]) for slot in range(len(records)) if records[slot] is not None]
        self.clear()
        return out

    def clear(self) -> None:
        self.__init__(self._fifo, self._scan_credit, self._id_columns)
