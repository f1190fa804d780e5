"""A topic's or channel's queue: memory up to --mem-queue-size, the rest to its backend, in order."""
from __future__ import annotations

from twisted.internet import defer
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from nsqtx.backed_queue import BackedQueue
from nsqtx.backend_queue import IBackendQueue
from nsqtx.batch import Batch
from nsqtx.errors import QueueError
from nsqtx.options import Options


@implementer(IBackendQueue)
class FakeBackend:
    """Keeps what it is given in a list; `refuse` makes every put fail."""

    dropped_count = 0

    def __init__(self, durable=True):
        self.durable = durable
        self.messages = []
        self.refuse = False
        self.closed = self.deleted = False

    @property
    def depth(self):
        return len(self.messages)

    def put(self, batch):
        if self.refuse:
            raise QueueError("disk full")
        self.messages.extend(batch)

    def read(self, max_count):
        taken, self.messages = self.messages[:max_count], self.messages[max_count:]
        return Batch.of(taken)

    def empty(self):
        self.messages = []

    def close(self):
        self.closed = True
        return defer.succeed(None)

    def delete(self):
        self.deleted = True
        return defer.succeed(None)


def batch(*messages):
    return Batch.of(messages)


class BackedQueueTests(TestCase):
    def setUp(self):
        self.backend = FakeBackend()
        self.queue = BackedQueue("TOPIC(t)", Options(mem_queue_size=3), self.backend)

    def test_the_fake_keeps_the_contract(self):
        verifyObject(IBackendQueue, self.backend)

    def test_memory_up_to_the_bound_then_the_backend(self):
        self.queue.put(batch(b"1", b"2"))
        self.queue.put(batch(b"3", b"4", b"5"))
        self.assertEqual((list(self.queue.memory), self.backend.messages), ([b"1", b"2", b"3"], [b"4", b"5"]))
        self.assertEqual((self.queue.depth(), self.queue.backend_depth()), (5, 2))

    def test_once_the_backend_holds_anything_new_messages_go_behind_it(self):
        self.queue.put(batch(b"1", b"2", b"3", b"4"))
        self.queue.take(3)
        self.queue.put(batch(b"5"))
        self.assertEqual((list(self.queue.memory), self.backend.messages), ([], [b"4", b"5"]))

    def test_reserved_room_is_taken_off_the_bound(self):
        self.queue.put(batch(b"1", b"2"), reserved=2)
        self.assertEqual((list(self.queue.memory), self.backend.messages), ([b"1"], [b"2"]))

    def test_only_a_write_to_a_durable_backend_may_fail(self):
        self.assertFalse(self.queue.put_may_fail(3))
        self.assertTrue(self.queue.put_may_fail(4))
        self.assertTrue(self.queue.put_may_fail(1, reserved=3))
        dropping = BackedQueue("TOPIC(t)", Options(mem_queue_size=3), FakeBackend(durable=False))
        self.assertFalse(dropping.put_may_fail(100))

    def test_a_refused_write_raises_and_keeps_what_memory_took(self):
        self.backend.refuse = True
        self.assertRaises(QueueError, self.queue.put, batch(b"1", b"2", b"3", b"4"))
        self.assertEqual(list(self.queue.memory), [b"1", b"2", b"3"])

    def test_messages_coming_back_go_to_memory_whatever_the_bound(self):
        self.queue.put(batch(b"1", b"2", b"3"))
        self.queue.append(b"back")
        self.assertEqual((list(self.queue.memory), self.backend.messages), ([b"1", b"2", b"3", b"back"], []))

    def test_take_reads_memory_first_then_the_backend(self):
        self.queue.put(batch(b"1", b"2", b"3", b"4", b"5"))
        self.assertEqual([list(b) for b in self.queue.take(2)], [[b"1", b"2", b"3"]])
        self.assertEqual([list(b) for b in self.queue.take(1)], [[b"4"]])
        self.assertEqual(self.queue.depth(), 1)

    def test_refill_moves_messages_from_the_backend_to_memory(self):
        self.queue.put(batch(b"1", b"2", b"3", b"4", b"5"))
        self.queue.memory.take()
        self.assertTrue(self.queue.refill(5))
        self.assertEqual(list(self.queue.memory), [b"4", b"5"])
        self.assertFalse(self.queue.refill(5))

    def test_close_writes_memory_then_the_pending_batches_to_a_durable_backend(self):
        self.queue.put(batch(b"1", b"2"))
        self.successResultOf(self.queue.close([batch(b"in flight"), batch(), batch(b"deferred")]))
        self.assertEqual(self.backend.messages, [b"1", b"2", b"in flight", b"deferred"])
        self.assertTrue(self.backend.closed)

    def test_close_carries_on_when_the_backend_refuses(self):
        self.queue.put(batch(b"1"))
        self.backend.refuse = True
        self.successResultOf(self.queue.close([batch(b"2")]))
        self.assertTrue(self.backend.closed)

    def test_close_gives_a_dropping_backend_nothing(self):
        backend = FakeBackend(durable=False)
        queue = BackedQueue("CHANNEL(c#ephemeral)", Options(mem_queue_size=3), backend)
        queue.put(batch(b"1"))
        self.successResultOf(queue.close([batch(b"2")]))
        self.assertEqual(backend.messages, [])

    def test_empty_and_delete(self):
        self.queue.put(batch(b"1", b"2", b"3", b"4"))
        self.queue.empty()
        self.assertEqual(self.queue.depth(), 0)
        self.queue.put(batch(b"5"))
        self.successResultOf(self.queue.delete())
        self.assertEqual((self.queue.depth(), self.backend.deleted), (0, True))
