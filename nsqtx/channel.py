"""A channel: its ready queue, its subscribers, and the in-flight and deferred priority queues.

Delivery is a pump run in the caller's stack (publish, RDY, FIN/REQ, scan, unpause), in slices of at
most _PUMP_SLICE messages, the rest continuing in the reactor's next turn: nothing waits on a
per-message timer or Deferred. Expiry is a periodic scan of the in-flight table
(:mod:`nsqtx.in_flight`) and of the deferred messages' heap (see :meth:`Channel.scan`).

Ready messages (batches of messages encoded as frames, see :mod:`nsqtx.message`) wait in the
channel's :class:`~nsqtx.backed_queue.BackedQueue`: memory up to --mem-queue-size, then disk
(ephemeral channels drop the excess). The pump reads from disk only as many messages as subscribers
can take at that moment.
"""
from __future__ import annotations

import random
from heapq import heappop, heappush

from nsqtx.backed_queue import BackedQueue
from nsqtx.batch import RECORD_LENGTH, Batch
from nsqtx.errors import QueueError
from nsqtx.in_flight import InFlight
from nsqtx.log import NSQLogger
from nsqtx.names import is_ephemeral

log = NSQLogger()

_unpack_length = RECORD_LENGTH.unpack_from
#: nsqd's rand.Int31n, for sampling
_chance = random.randrange

#: most messages read back from disk in one go, so a large backlog never blocks the reactor for long
_DISK_BATCH = 2500
#: most messages one pump delivers before it lets the reactor turn (and continues in the next turn):
#: consumers with a large RDY must not keep other clients, /ping included, waiting for long
_PUMP_SLICE = 512


class Channel:
    def __init__(self, topic, name: str):
        self.topic = topic
        self.name = name
        self.node = topic.node
        self.clock = topic.node.clock
        self.options = topic.node.options
        self.ephemeral = is_ephemeral(name)
        self.queue = BackedQueue("CHANNEL(%s)" % name, self.options,
                                 self.node.backend_queue("%s:%s" % (topic.name, name), self.ephemeral))
        #: subscribed connections, in subscription order; each pump starts one further along
        self.clients = []
        self._next_client = 0
        self._pumping = False
        #: the pump's continuation in the reactor's next turn, when a slice ended with work left
        self._next_slice = None
        self.paused = False
        self.exiting = False
        self.in_flight = InFlight()
        #: heap of (ready time, sequence, encoded message)
        self.deferred = []
        self._seq = 0
        self.message_count = 0
        self.requeue_count = 0
        self.timeout_count = 0

    def __repr__(self) -> str:
        return "<Channel %s:%s>" % (self.topic.name, self.name)

    def depth(self) -> int:
        return self.queue.depth()

    def backend_depth(self) -> int:
        return self.queue.backend_depth()

    @property
    def dropped_count(self) -> int:
        """Messages an ephemeral channel dropped because its memory queue was full."""
        return self.queue.dropped_count

    # -- putting messages in

    def put_may_fail(self, count: int) -> bool:
        """Whether put() of `count` new messages may raise QueueError."""
        return self.exiting or self.queue.put_may_fail(count)

    def put(self, batch: Batch) -> None:
        """Queue new messages: memory first, then disk; QueueError if the disk refuses them."""
        if self.exiting:
            raise QueueError("exiting")
        self.message_count += batch.count
        self.queue.put(batch)
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
        self.in_flight.forget(client)
        if not self.clients and self.ephemeral and not self.exiting:
            self.topic.delete_channel(self.name)
        else:
            self.pump()

    # -- delivery

    def pump(self) -> None:
        """Hand ready messages to subscribers with room until either runs out or _PUMP_SLICE messages
        are out; the rest follows in the reactor's next turn, and until then other calls (FINs,
        publishes, RDY) leave delivery to that continuation, so a busy channel delivers one slice
        per turn and each consumer's FINs are read between slices.

        Not re-entered: a client that goes away while being written to (and asks for a pump from
        remove_client) is left by the running pump."""
        if self.paused or not self.clients or self._pumping or self._next_slice is not None:
            return
        self._pumping = True
        try:
            budget = _PUMP_SLICE - self._deliver(_PUMP_SLICE)
            queue = self.queue
            while budget > 0 and not queue.memory and queue.backend_depth() and not self.exiting:
                want = min(sum(client.room() for client in self.clients), _DISK_BATCH, budget)
                if want <= 0 or not queue.refill(want):
                    break
                budget -= self._deliver(budget)
        finally:
            self._pumping = False
        if budget <= 0 and self._next_slice is None:
            self._next_slice = self.clock.callLater(0, self._pump_next_slice)

    def _pump_next_slice(self) -> None:
        self._next_slice = None
        self.pump()

    def _deliver(self, limit: int) -> int:
        """Deliver up to `limit` messages from memory; returns how many went out.

        Each call starts one subscriber further, so single publishes go round robin. When memory
        holds more than `limit`, the first subscriber with room takes all it can of them, the next
        the rest, and so on: with a backlog, consumers get whole slices in turn rather than a share
        of every slice, which woke every reader every turn. A smaller burst is shared evenly, each
        subscriber getting its share in one run, so that its frames go out together and its FINs
        come back together. A share that ends the slice is sent at once rather than left to wait
        for the other subscribers' turns."""
        memory = self.queue.memory
        clients = self.clients
        if not memory or not clients:
            return 0
        first = self._next_client % len(clients)
        self._next_client = first + 1
        ready = [client for client in clients[first:] + clients[:first] if client.room()]
        now = self.clock.seconds()
        add_run = self.in_flight.add_run
        front = memory.front
        advance = memory.advance
        left = limit
        while ready and left and memory:
            share = left if len(memory) > left else -(-len(memory) // len(ready))
            still_ready = []
            for client in ready:
                count = min(client.room(), share, left, len(memory))
                deadline = now + client.msg_timeout
                # runs of consecutive frames of one batch, each at most what fills the client's
                # output buffer, so that a transport that pauses the client stops it in time
                client.start_share()
                try:
                    if client.sample_rate:
                        left -= self._sampled_share(client, count, left, now, deadline)
                        count = 0
                    while count and client.can_receive:
                        records, start, available = front()
                        end, sent = add_run(records, start, min(count, available), client.buffer_room(), client,
                                            now, deadline)
                        advance(end, sent)
                        client.deliver(records, start, end, sent)
                        count -= sent
                        left -= sent
                finally:
                    client.end_share(not left)
                if client.room():
                    still_ready.append(client)
                if not left or not memory:
                    break
            ready = still_ready
        return limit - left

    def _sampled_share(self, client, count: int, left: int, now: float, deadline: float) -> int:
        """The share of a client that asked for a sample of the channel: each message goes to it
        with nsqd's chance (sample_rate + 1 in 100) or is dropped from the channel, as nsqd's
        message pump drops it. Delivers up to `count`, takes up to `left` off memory; returns how
        many it took."""
        memory = self.queue.memory
        rate = client.sample_rate
        taken = 0
        while count and taken < left and memory and client.can_receive:
            records, start, _ = memory.front()
            taken += 1
            if _chance(100) > rate:
                memory.advance(start + 4 + _unpack_length(records, start)[0], 1)
                continue
            end, sent = self.in_flight.add_run(records, start, 1, client.buffer_room(), client, now, deadline)
            memory.advance(end, sent)
            client.deliver(records, start, end, sent)
            count -= 1
        return taken

    # -- what subscribers answer (errors become E_FIN_FAILED etc. in the protocol); each answering
    # subscriber counts its own answers

    def finish(self, client, data: bytes, offset: int = 0) -> None:
        """The message whose ID is data[offset:offset + 16] is done."""
        self.in_flight.finish(data, client, offset)

    def requeue(self, client, msg_id: bytes, delay: float) -> None:
        data = self.in_flight.requeue(msg_id, client)
        self.requeue_count += 1
        if delay > 0:
            self._defer(data, self.clock.seconds() + delay)
        else:
            self.queue.append(data)

    def touch(self, client, msg_id: bytes) -> None:
        self.in_flight.touch(msg_id, client, self.clock.seconds(), client.msg_timeout, self.options.max_msg_timeout)

    # -- timers: driven by the node's queue scan

    def scan(self, now: float) -> bool:
        """Requeue expired in-flight messages, release due deferred ones; True if anything moved."""
        moved = False
        for client, data in self.in_flight.expire(now):
            client.timed_out(1)
            self.timeout_count += 1
            self.queue.append(data)
            moved = True
        heap = self.deferred
        while heap and heap[0][0] <= now:
            self.queue.append(heappop(heap)[2])
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
        self.queue.empty()
        self.in_flight.clear()
        self.deferred = []
        for client in self.clients:
            client.emptied()

    def close(self):
        """Shutdown: disconnect subscribers, then write queued, in-flight and deferred messages to
        disk (in that order, as nsqd) so a restart delivers them again. A Deferred that fires once
        they are on disk."""
        self._disconnect()
        return self.queue.close([Batch.of(self.in_flight.take_all()), Batch.of(entry[2] for entry in self.deferred)])

    def delete(self):
        """Deletion: disconnect subscribers and remove the channel's messages and files. A Deferred
        that fires once the files are gone."""
        self._disconnect()
        return self.queue.delete()

    def _disconnect(self) -> None:
        self.exiting = True
        if self._next_slice is not None:
            self._next_slice.cancel()
            self._next_slice = None
        for client in list(self.clients):
            client.close()
        self.clients = []
