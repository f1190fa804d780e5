"""A channel: its ready queue, its subscribers, and the in-flight and deferred priority queues.

Delivery is a pump run in the caller's stack (publish, RDY, FIN/REQ, scan, unpause): nothing waits on
a per-message timer or Deferred. Expiry is a periodic scan of two heaps (see :meth:`Channel.scan`).
"""
from __future__ import annotations

from collections import deque
from heapq import heapify, heappop, heappush

from nsqtx.errors import QueueError
from nsqtx.log import NSQLogger
from nsqtx.names import is_ephemeral

log = NSQLogger()

# Stale in-flight heap entries (finished, requeued or touched messages) are dropped lazily; past this
# many beyond the live ones the heap is rebuilt so a high FIN rate cannot grow it without bound.
_HEAP_SLACK = 4096


class Channel:
    def __init__(self, topic, name: str):
        self.topic = topic
        self.name = name
        self.node = topic.node
        self.clock = topic.node.clock
        self.options = topic.node.options
        self.ephemeral = is_ephemeral(name)
        self.memory = deque()
        #: subscribed connections, in subscription order; delivery goes round robin over them
        self.clients = []
        self._next_client = 0
        self.paused = False
        self.exiting = False
        self.in_flight = {}
        self._in_flight_heap = []
        self.deferred = {}
        self._deferred_heap = []
        self._seq = 0
        self.message_count = 0
        self.requeue_count = 0
        self.timeout_count = 0
        #: messages an ephemeral channel dropped because its memory queue was full
        self.dropped_count = 0

    def __repr__(self) -> str:
        return "<Channel %s:%s>" % (self.topic.name, self.name)

    def depth(self) -> int:
        return len(self.memory)

    # -- putting messages in

    def room(self) -> int:
        """How many more new messages fit; ephemeral channels always take them (and drop the excess)."""
        if self.ephemeral:
            return 1 << 62
        return self.options.mem_queue_size - len(self.memory)

    def put(self, messages, bounded: bool = True) -> None:
        """Queue messages; new publishes are `bounded` (the caller checked :meth:`room`), while
        messages the topic held back are taken whatever the bound, since they were already accepted."""
        if self.exiting:
            raise QueueError("exiting")
        self.message_count += len(messages)
        now = None
        memory = self.memory
        limit = self.options.mem_queue_size
        for msg in messages:
            if msg.deferred:
                if now is None:
                    now = self.clock.seconds()
                self._defer(msg, now + msg.deferred)
            elif len(memory) < limit or not bounded:
                memory.append(msg)
            elif self.ephemeral:
                self.dropped_count += 1
            else:
                raise QueueError("queue full")
        self.pump()

    def _defer(self, msg, ready_at: float) -> None:
        msg.deferred = 0.0
        self._seq += 1
        self.deferred[msg.id] = msg
        heappush(self._deferred_heap, (ready_at, self._seq, msg))

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
        """Hand ready messages to subscribers with spare RDY, round robin, until either runs out."""
        memory = self.memory
        if not memory or self.paused or not self.clients:
            return
        clients = self.clients
        n = len(clients)
        i = self._next_client
        now = self.clock.seconds()
        heap = self._in_flight_heap
        in_flight = self.in_flight
        seq = self._seq
        while memory:
            for _ in range(n):
                if i >= n:
                    i = 0
                client = clients[i]
                i += 1
                if client.ready_count > client.in_flight_count and client.can_receive:
                    break
            else:
                break
            msg = memory.popleft()
            msg.attempts += 1
            msg.client = client
            msg.delivered_at = now
            deadline = msg.deadline = now + client.msg_timeout
            in_flight[msg.id] = msg
            seq += 1
            heappush(heap, (deadline, seq, msg))
            client.send_message(msg)
        self._seq = seq
        self._next_client = i
        if len(heap) > 2 * len(in_flight) + _HEAP_SLACK:
            self._compact()

    def _compact(self) -> None:
        heap = [(m.deadline, i, m) for i, m in enumerate(self.in_flight.values())]
        heapify(heap)
        self._in_flight_heap = heap

    # -- client commands (errors become E_FIN_FAILED etc. in the protocol)

    def _pop_in_flight(self, client, msg_id: bytes):
        msg = self.in_flight.get(msg_id)
        if msg is None:
            raise QueueError("ID not in flight")
        if msg.client is not client:
            raise QueueError("client does not own message")
        del self.in_flight[msg_id]
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
            self._defer(msg, self.clock.seconds() + delay)
        else:
            self.memory.append(msg)

    def touch(self, client, msg_id: bytes) -> None:
        msg = self.in_flight.get(msg_id)
        if msg is None:
            raise QueueError("ID not in flight")
        if msg.client is not client:
            raise QueueError("client does not own message")
        deadline = min(self.clock.seconds() + client.msg_timeout, msg.delivered_at + self.options.max_msg_timeout)
        msg.deadline = deadline
        self._seq += 1
        heappush(self._in_flight_heap, (deadline, self._seq, msg))

    # -- timers: driven by the node's queue scan

    def scan(self, now: float) -> bool:
        """Requeue expired in-flight messages, release due deferred ones; True if anything moved."""
        moved = False
        heap = self._in_flight_heap
        in_flight = self.in_flight
        while heap and heap[0][0] <= now:
            deadline, _, msg = heappop(heap)
            if msg.deadline != deadline or in_flight.get(msg.id) is not msg:
                continue
            del in_flight[msg.id]
            client = msg.client
            msg.client = None
            if client is not None and client.channel is self:
                client.in_flight_count -= 1
                client.timeout_count += 1
            self.timeout_count += 1
            self.memory.append(msg)
            moved = True
        heap = self._deferred_heap
        deferred = self.deferred
        while heap and heap[0][0] <= now:
            msg = heappop(heap)[2]
            del deferred[msg.id]
            self.memory.append(msg)
            moved = True
        if moved:
            self.pump()
        return moved

    # -- administration

    def pause(self) -> None:
        self.paused = True
        for client in self.clients:
            client.flush()

    def unpause(self) -> None:
        self.paused = False
        self.pump()

    def empty(self) -> None:
        """Drop every queued, in-flight and deferred message, as nsqd's /channel/empty does."""
        self.memory.clear()
        self.in_flight.clear()
        self._in_flight_heap = []
        self.deferred.clear()
        self._deferred_heap = []
        for client in self.clients:
            client.in_flight_count = 0

    def close(self) -> None:
        """Stop taking messages and disconnect subscribers (topic deletion or node shutdown)."""
        self.exiting = True
        for client in list(self.clients):
            client.close()
        self.clients = []
