"""A channel: its ready queue, its subscribers, and the in-flight and deferred priority queues.

Delivery is a pump run in the caller's stack (publish, RDY, FIN/REQ, scan, unpause): nothing waits on
a per-message timer or Deferred. Expiry is a periodic scan of two heaps (see :meth:`Channel.scan`).

Ready messages (batches of encoded messages, see :mod:`nsqtx.batch`) live in memory up to --mem-queue-size, then
in the channel's disk queue (none for ephemeral channels, which drop the excess). Once anything is on
disk, new messages queue behind it there too, so a backlog comes back in publish order; the pump
reads from disk only as many messages as subscribers can take at that moment.
"""
from __future__ import annotations

from heapq import heapify, heappop, heappush

from nsqtx.backlog import enqueue
from nsqtx.batch import Batch
from nsqtx.errors import QueueError
from nsqtx.log import NSQLogger
from nsqtx.memory_queue import MemoryQueue
from nsqtx.message import Message
from nsqtx.names import is_ephemeral

log = NSQLogger()

# The in-flight heap holds (deadline, sequence, messages): the messages one pump gave one client
# share a deadline, so they share an entry, and a delivery costs a list append, not an entry of its
# own. Stale messages in it (finished, requeued or touched) are dropped lazily; once it refers to
# more than _HEAP_GROWTH times the live ones plus _HEAP_SLACK, it is rebuilt from the live ones, so
# a high FIN rate cannot grow it without bound. A rebuild costs one pass over what is in flight; the
# factor keeps that to a fraction of a pass per delivery.
_HEAP_GROWTH = 4
_HEAP_SLACK = 4096
#: most messages read back from disk in one go, so a large backlog never blocks the reactor for long
_DISK_BATCH = 2500


class Channel:
    def __init__(self, topic, name: str):
        self.topic = topic
        self.name = name
        self.node = topic.node
        self.clock = topic.node.clock
        self.options = topic.node.options
        self.ephemeral = is_ephemeral(name)
        self.memory = MemoryQueue()
        #: the disk queue behind `memory`; None for ephemeral channels
        self.backend = None if self.ephemeral else self.node.backend_queue("%s:%s" % (topic.name, name))
        #: subscribed connections, in subscription order; delivery goes round robin over them
        self.clients = []
        self._next_client = 0
        self._pumping = False
        self.paused = False
        self.exiting = False
        #: message ID -> Message, for deliveries awaiting FIN/REQ/TOUCH or their timeout
        self.in_flight = {}
        self._in_flight_heap = []
        #: how many messages the heap's entries refer to, live or stale
        self._heap_refs = 0
        #: heap of (ready time, sequence, encoded message)
        self.deferred = []
        self._seq = 0
        self.message_count = 0
        self.requeue_count = 0
        self.timeout_count = 0
        #: messages an ephemeral channel dropped because its memory queue was full
        self.dropped_count = 0

    def __repr__(self) -> str:
        return "<Channel %s:%s>" % (self.topic.name, self.name)

    def depth(self) -> int:
        return len(self.memory) + self.backend_depth()

    def backend_depth(self) -> int:
        backend = self.backend
        return backend.depth if backend is not None else 0

    # -- putting messages in

    def put(self, batch: Batch) -> None:
        """Queue new messages: memory first, then disk; QueueError if the disk refuses them."""
        if self.exiting:
            raise QueueError("exiting")
        self.message_count += batch.count
        self.dropped_count += enqueue(self.memory, self.backend, self.options.mem_queue_size, batch,
                                      self.node.write_backend)
        self.pump()

    def put_deferred(self, data: bytes, delay: float) -> None:
        if self.exiting:
            raise QueueError("exiting")
        self.message_count += 1
        self._defer(data, self.clock.seconds() + delay)

    def _defer(self, data: bytes, ready_at: float) -> None:
        self._seq += 1
        heappush(self.deferred, (ready_at, self._seq, data))

    # -- subscribers

    def add_client(self, client) -> None:
        if self.exiting:
            raise QueueError("exiting")
        if client in self.clients:
            return
        limit = self.options.max_channel_consumers
        if limit and len(self.clients) >= limit:
            raise QueueError("consumers for %s:%s exceeds limit of %d" % (self.topic.name, self.name, limit))
        self.clients.append(client)

    def remove_client(self, client) -> None:
        """Messages still in flight to the client stay owned by it until they time out, as in nsqd."""
        if client not in self.clients:
            return
        self.clients.remove(client)
        if not self.clients and self.ephemeral and not self.exiting:
            self.topic.delete_channel(self.name)
        else:
            self.pump()

    # -- delivery

    def pump(self) -> None:
        """Hand ready messages to subscribers with spare RDY, round robin, until either runs out.

        Not re-entered: a client that goes away while being written to (and asks for a pump from
        remove_client) is left by the running pump, which keeps its place in the in-flight heap."""
        if self.paused or not self.clients or self._pumping:
            return
        self._pumping = True
        try:
            self._deliver()
            backend = self.backend
            while not self.memory and backend is not None and backend.depth and not self.exiting:
                want = min(sum(c.ready_count - c.in_flight_count for c in self.clients if c.can_receive),
                           _DISK_BATCH)
                if want <= 0 or not self._refill(want):
                    break
                self._deliver()
        finally:
            self._pumping = False

    def _refill(self, count: int) -> bool:
        """Move up to `count` messages from disk to memory; False if none could be read."""
        batch = self.backend.read(count)
        self.memory.put(batch)
        return batch.count > 0

    def _deliver(self) -> None:
        memory = self.memory
        clients = self.clients
        if not memory or not clients:
            return
        first = self._next_client % len(clients)
        # who can take messages now, in round-robin order from where the last pump stopped; a client
        # leaves the list when its RDY is used up or its transport pauses it
        ready = [c for c in clients[first:] + clients[:first] if c.ready_count > c.in_flight_count and c.can_receive]
        if not ready:
            return
        now = self.clock.seconds()
        in_flight = self.in_flight
        popleft = memory.popleft
        # per client in `ready`: its deadline and the messages it gets in this pump
        deadlines = [now + c.msg_timeout for c in ready]
        given = [[] for _ in ready]
        entries = list(zip(deadlines, given))
        k = 0
        while memory and ready:
            if k >= len(ready):
                k = 0
            client = ready[k]
            records, start, end = popleft()
            msg = Message(records, start, end, client, now, deadlines[k])
            in_flight[msg.id] = msg
            given[k].append(msg)
            client.send_message(msg)
            if client.ready_count > client.in_flight_count and client.can_receive:
                k += 1
            else:
                del ready[k], deadlines[k], given[k]
        for deadline, msgs in entries:
            if msgs:
                self._track(deadline, msgs)
        if client in clients:  # not if it went away while being served
            self._next_client = clients.index(client) + 1
        if self._heap_refs > _HEAP_GROWTH * len(in_flight) + _HEAP_SLACK:
            self._compact()

    def _track(self, deadline: float, msgs: list) -> None:
        self._seq += 1
        heappush(self._in_flight_heap, (deadline, self._seq, msgs))
        self._heap_refs += len(msgs)

    def _compact(self) -> None:
        by_deadline = {}
        for msg in self.in_flight.values():
            by_deadline.setdefault(msg.deadline, []).append(msg)
        heap = [(deadline, i, msgs) for i, (deadline, msgs) in enumerate(by_deadline.items())]
        heapify(heap)
        self._in_flight_heap = heap
        self._heap_refs = len(self.in_flight)

    # -- client commands (errors become E_FIN_FAILED etc. in the protocol)

    def _pop_in_flight(self, client, msg_id: bytes):
        msg = self.in_flight.pop(msg_id, None)
        if msg is None:
            raise QueueError("ID not in flight")
        if msg.client is not client:
            self.in_flight[msg_id] = msg
            raise QueueError("client does not own message")
        msg.client = None
        return msg

    def finish(self, client, msg_id: bytes) -> None:
        self._pop_in_flight(client, msg_id)
        client.in_flight_count -= 1
        client.finish_count += 1

    def requeue(self, client, msg_id: bytes, delay: float) -> None:
        msg = self._pop_in_flight(client, msg_id)
        client.in_flight_count -= 1
        client.requeue_count += 1
        self.requeue_count += 1
        if delay > 0:
            self._defer(msg.requeued(), self.clock.seconds() + delay)
        else:
            self.memory.append(msg.requeued())

    def touch(self, client, msg_id: bytes) -> None:
        msg = self.in_flight.get(msg_id)
        if msg is None:
            raise QueueError("ID not in flight")
        if msg.client is not client:
            raise QueueError("client does not own message")
        deadline = min(self.clock.seconds() + client.msg_timeout, msg.delivered_at + self.options.max_msg_timeout)
        msg.deadline = deadline
        self._track(deadline, [msg])

    # -- timers: driven by the node's queue scan

    def scan(self, now: float) -> bool:
        """Requeue expired in-flight messages, release due deferred ones; True if anything moved."""
        moved = False
        heap = self._in_flight_heap
        in_flight = self.in_flight
        while heap and heap[0][0] <= now:
            deadline, _, msgs = heappop(heap)
            self._heap_refs -= len(msgs)
            for msg in msgs:
                if msg.deadline != deadline or in_flight.get(msg.id) is not msg:
                    continue
                del in_flight[msg.id]
                client = msg.client
                msg.client = None
                client.in_flight_count -= 1
                client.timeout_count += 1
                self.timeout_count += 1
                self.memory.append(msg.requeued())
                moved = True
        heap = self.deferred
        while heap and heap[0][0] <= now:
            self.memory.append(heappop(heap)[2])
            moved = True
        if moved:
            self.pump()
        return moved

    # -- administration

    def pause(self) -> None:
        self.paused = True
        self._pause_changed()
        for client in self.clients:
            client.flush()

    def unpause(self) -> None:
        self.paused = False
        self._pause_changed()
        self.pump()

    def _pause_changed(self) -> None:
        if not self.ephemeral:
            self.node.metadata_changed()

    def empty(self) -> None:
        """Drop every queued, in-flight and deferred message, as nsqd's /channel/empty does."""
        self.memory.clear()
        if self.backend is not None:
            self.backend.empty()
        self.in_flight.clear()
        self._in_flight_heap = []
        self._heap_refs = 0
        self.deferred = []
        for client in self.clients:
            client.in_flight_count = 0

    def close(self) -> None:
        """Shutdown: disconnect subscribers, then write queued, in-flight and deferred messages to
        disk (in that order, as nsqd) so a restart delivers them again."""
        self._disconnect()
        backend = self.backend
        if backend is None:
            return
        pending = self.memory.take()
        pending.append(Batch.of(m.requeued() for m in self.in_flight.values()))
        pending.append(Batch.of(entry[2] for entry in self.deferred))
        count = sum(map(len, pending))
        if count:
            log.info("CHANNEL({channel}): flushing {n} memory/in-flight/deferred messages to backend",
                     channel=self.name, n=count)
            self.node.flush_to_backend(backend, pending)
        backend.close()

    def delete(self) -> None:
        """Deletion: disconnect subscribers and remove the channel's messages and files."""
        self._disconnect()
        self.memory.clear()
        if self.backend is not None:
            self.backend.delete()

    def _disconnect(self) -> None:
        self.exiting = True
        for client in list(self.clients):
            client.close()
        self.clients = []
