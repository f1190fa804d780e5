"""Backends: the disk queue holds Go nsqd's encoding and reports the node's health; an ephemeral
topic's or channel's backend drops what it is given and counts it."""
from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from nsqtx import backend_queue
from nsqtx.backend_queue import DiskBackend, DiskEncoder, DroppingQueue, IBackendQueue
from nsqtx.batch import Batch
from nsqtx.diskqueue import DiskQueue
from nsqtx.errors import QueueError
from nsqtx.health import Health
from nsqtx.message import MIN_DISK_LENGTH, to_disk
from tests.support import data_dir, encode, in_memory


class DiskBackendTests(TestCase):
    def setUp(self):
        self.dir = data_dir(self)
        self.health = Health()
        self.queue = DiskQueue("t", self.dir, 1 << 20, MIN_DISK_LENGTH, 1 << 20, 2500, 2.0, Clock())
        self.backend = DiskBackend(self.queue, DiskEncoder(), self.health)

    def test_keeps_the_contract(self):
        verifyObject(IBackendQueue, self.backend)
        verifyObject(IBackendQueue, DroppingQueue())

    def test_messages_are_on_disk_as_go_nsqd_encodes_them_and_come_back_as_they_were(self):
        waiting = [in_memory(1, 0, b"%016x" % i, b"body %d" % i) for i in range(3)]
        self.backend.put(Batch.of(waiting))
        self.assertEqual(self.backend.depth, 3)
        self.successResultOf(self.backend.close())
        with open(os.path.join(self.dir, "t.diskqueue.000000.dat"), "rb") as f:
            on_disk = f.read()
        self.assertEqual(on_disk, Batch.of([encode(1, 0, b"%016x" % i, b"body %d" % i) for i in range(3)]).records)
        again = DiskBackend(DiskQueue("t", self.dir, 1 << 20, MIN_DISK_LENGTH, 1 << 20, 2500, 2.0, Clock()),
                            DiskEncoder(), self.health)
        self.assertEqual(list(again.read(10)), waiting)

    def test_a_refused_write_marks_the_node_unhealthy_until_one_succeeds(self):
        def disk_full(batch):
            raise OSError(28, "No space left on device")

        self.patch(self.queue, "put", disk_full)
        self.assertRaises(QueueError, self.backend.put, Batch.of([in_memory(1, 0, b"0" * 16, b"x")]))
        self.assertIn("No space left on device", str(self.health))
        del self.queue.put
        self.backend.put(Batch.of([in_memory(1, 0, b"0" * 16, b"x")]))
        self.assertEqual(str(self.health), "OK")

    def test_the_encoder_converts_a_batch_once_for_every_queue_it_goes_to(self):
        converted = []

        def counting(batch):
            converted.append(batch)
            return to_disk(batch)

        self.patch(backend_queue, "to_disk", counting)
        encoder = DiskEncoder()
        batch = Batch.of([in_memory(1, 0, b"0" * 16, b"x")])
        self.assertIs(encoder.encode(batch), encoder.encode(batch))
        encoder.encode(Batch.of([in_memory(1, 0, b"1" * 16, b"y")]))
        self.assertEqual(len(converted), 2)


class DroppingQueueTests(TestCase):
    def test_drops_and_counts_everything(self):
        queue = DroppingQueue()
        queue.put(Batch.of([b"a", b"b"]))
        self.assertEqual((queue.depth, queue.dropped_count, list(queue.read(10)), queue.durable), (0, 2, [], False))
        self.successResultOf(queue.close())
        self.successResultOf(queue.delete())
