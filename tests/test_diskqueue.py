"""The disk queue on a temp dir and a fake clock: format, rollover, depth, recovery, corruption."""
from __future__ import annotations

import errno
import os
import struct

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from nsqtx import diskqueue
from nsqtx.batch import Batch
from nsqtx.diskqueue import DiskQueue
from nsqtx.files import remove_file
from tests.support import LazyWorker


def record(data: bytes) -> bytes:
    return struct.pack(">l", len(data)) + data


class Base(TestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.clock = Clock()

    def queue(self, name="t", max_bytes=1024, sync_every=2500, sync_timeout=2.0):
        return DiskQueue(name, self.dir, max_bytes, 1, 1000, sync_every, sync_timeout, self.clock)

    def path(self, name):
        return os.path.join(self.dir, name)

    def files(self):
        return sorted(os.listdir(self.dir))

    def meta(self, name="t"):
        with open(self.path(name + ".diskqueue.meta.dat"), "rb") as f:
            return f.read()


class DiskQueueTests(Base):

    def test_round_trip_in_order(self):
        q = self.queue()
        q.put(Batch.of([b"a", b"bb"]))
        q.put(Batch.of([b"ccc"]))
        self.assertEqual(q.depth, 3)
        self.assertEqual(list(q.read(2)), [b"a", b"bb"])
        self.assertEqual(q.depth, 1)
        self.assertEqual(list(q.read(10)), [b"ccc"])
        self.assertEqual((list(q.read(10)), q.depth), ([], 0))

    def test_file_format_is_go_diskqueues(self):
        q = self.queue()
        q.put(Batch.of([b"hello", b"x"]))
        q.sync()
        with open(self.path("t.diskqueue.000000.dat"), "rb") as f:
            self.assertEqual(f.read(), record(b"hello") + record(b"x"))
        self.assertEqual(self.meta(), b"2\n0,0\n0,14\n")
        q.read(1)
        q.sync()
        self.assertEqual(self.meta(), b"1\n0,9\n0,14\n")

    def test_rollover_and_reading_across_files(self):
        q = self.queue(max_bytes=30)
        bodies = [b"%02d-padding" % i for i in range(10)]
        q.put(Batch.of(bodies[:4]))
        for body in bodies[4:]:
            q.put(Batch.of([body]))
        self.assertEqual(q.write_file_num, 4)
        self.assertEqual(len([f for f in self.files() if f.endswith(".dat") and "meta" not in f]), 5)
        for name in self.files():
            if "meta" not in name:
                self.assertLessEqual(os.path.getsize(self.path(name)), 30)
        self.assertEqual(list(q.read(3)), bodies[:3])
        self.assertNotIn("t.diskqueue.000000.dat", self.files())
        self.assertEqual(list(q.read(100)), bodies[3:])
        self.assertEqual(q.depth, 0)
        self.assertEqual([f for f in self.files() if "meta" not in f], ["t.diskqueue.000004.dat"])

    def test_fully_read_files_are_renamed_then_removed_by_the_worker(self):
        """The removal itself may take long (tens of ms for a large file): the queue only renames."""
        worker = LazyWorker()
        q = DiskQueue("t", self.dir, 30, 1, 1000, 2500, 2.0, self.clock, worker)
        q.put(Batch.of([b"%02d-padding" % i for i in range(6)]))
        self.assertEqual(list(q.read(3)), [b"00-padding", b"01-padding", b"02-padding"])
        done = self.path("t.diskqueue.000000.dat.done")
        self.assertEqual([(job.key, job.args) for job in worker.jobs if job.fn is remove_file], [(done, (done,))])
        self.assertIn("t.diskqueue.000000.dat.done", self.files())
        self.assertNotIn("t.diskqueue.000000.dat", self.files())
        worker.run_all()
        self.assertNotIn("t.diskqueue.000000.dat.done", self.files())
        q.empty()
        q.put(Batch.of([b"after"]))
        self.assertEqual(list(q.read(5)), [b"after"])

    def test_start_up_removes_files_whose_removal_was_cut_short(self):
        q = self.queue(max_bytes=30)
        q.put(Batch.of([b"%02d-padding" % i for i in range(6)]))
        with open(self.path("t.diskqueue.000000.dat.done"), "wb") as f:
            f.write(b"leftover")
        with open(self.path("other.diskqueue.000000.dat.done"), "wb") as f:
            f.write(b"not ours")
        q.close()
        again = self.queue(max_bytes=30)
        self.assertNotIn("t.diskqueue.000000.dat.done", self.files())
        self.assertIn("other.diskqueue.000000.dat.done", self.files())
        self.assertEqual(len(list(again.read(10))), 6)

    def test_a_record_bigger_than_a_file_still_gets_a_file(self):
        q = self.queue(max_bytes=10)
        q.put(Batch.of([b"x" * 50, b"y" * 50]))
        self.assertEqual(q.write_file_num, 1)
        self.assertEqual(list(q.read(5)), [b"x" * 50, b"y" * 50])

    def test_reads_in_bounded_chunks(self):
        self.patch(diskqueue, "READ_CHUNK", 7)
        q = self.queue(max_bytes=10 ** 6)
        bodies = [bytes([65 + i % 26]) * (1 + i % 40) for i in range(300)]
        q.put(Batch.of(bodies))
        got = []
        while True:
            batch = q.read(13)
            if not batch:
                break
            got.extend(batch)
        self.assertEqual(got, bodies)

    def test_the_read_buffer_is_reused_from_one_refill_to_the_next(self):
        """A new string per refill kept PyPy's collector busy; batches read are still bytes."""
        self.patch(diskqueue, "READ_CHUNK", 64)
        q = self.queue(max_bytes=10 ** 6)
        bodies = [b"%03d" % i * 5 for i in range(100)]
        q.put(Batch.of(bodies))
        first = q.read(1)
        buffer = q._rbuf
        got = list(first)
        while len(got) < len(bodies):
            batch = q.read(7)
            self.assertIs(type(batch.records), bytes)
            got.extend(batch)
        self.assertEqual((got, q._rbuf is buffer), (bodies, True))

    def test_reopen_continues_where_it_left(self):
        q = self.queue(max_bytes=40)
        q.put(Batch.of([b"%d-abcdefgh" % i for i in range(6)]))
        self.assertEqual(list(q.read(2)), [b"0-abcdefgh", b"1-abcdefgh"])
        q.close()
        again = self.queue(max_bytes=40)
        self.assertEqual(again.depth, 4)
        again.put(Batch.of([b"6-abcdefgh"]))
        self.assertEqual(list(again.read(10)), [b"%d-abcdefgh" % i for i in range(2, 7)])

    def test_sync_every_writes_metadata_at_once(self):
        q = self.queue(sync_every=1)
        q.put(Batch.of([b"a"]))
        self.assertEqual(self.meta(), b"1\n0,0\n0,5\n")

    def test_sync_timeout_writes_metadata_later(self):
        q = self.queue(sync_every=100, sync_timeout=2.0)
        q.put(Batch.of([b"a"]))
        self.assertNotIn("t.diskqueue.meta.dat", self.files())
        self.clock.advance(1.9)
        self.assertNotIn("t.diskqueue.meta.dat", self.files())
        self.clock.advance(0.1)
        self.assertEqual(self.meta(), b"1\n0,0\n0,5\n")

    def test_empty_removes_files_and_moves_on(self):
        q = self.queue(max_bytes=20)
        q.put(Batch.of([b"aaaaaaaa", b"bbbbbbbb", b"cccccccc"]))
        q.empty()
        self.assertEqual(q.depth, 0)
        self.assertEqual(self.files(), ["t.diskqueue.meta.dat"])
        self.assertEqual(self.meta(), b"0\n3,0\n3,0\n")
        q.put(Batch.of([b"new"]))
        self.assertEqual(list(q.read(5)), [b"new"])

    def test_delete_removes_everything(self):
        q = self.queue()
        q.put(Batch.of([b"a"]))
        q.sync()
        self.successResultOf(q.delete())
        self.assertEqual(self.files(), [])
        self.assertRaises(OSError, q.put, Batch.of([b"b"]))

    def test_a_queue_made_again_right_after_a_delete_starts_empty(self):
        """Its files are renamed at once, even while their removal waits for the worker."""
        worker = LazyWorker()
        q = DiskQueue("t", self.dir, 1024, 1, 1000, 2, 2.0, self.clock, worker)
        q.put(Batch.of([b"a", b"b"]))
        deleted = q.delete()
        again = DiskQueue("t", self.dir, 1024, 1, 1000, 2, 2.0, self.clock, worker)
        self.assertEqual((again.depth, list(again.read(5))), (0, []))
        worker.run_all()
        self.successResultOf(deleted)
        again.put(Batch.of([b"new"]))
        self.assertEqual(list(again.read(5)), [b"new"])
        self.assertEqual(self.files(), ["t.diskqueue.000000.dat"])

    def test_a_sync_under_way_when_the_queue_is_deleted_leaves_no_metadata(self):
        worker = LazyWorker()
        q = DiskQueue("t", self.dir, 1024, 1, 1000, 2, 2.0, self.clock, worker)
        q.put(Batch.of([b"a", b"b"]))
        q.delete()
        worker.run_all()
        self.assertEqual(self.files(), [])

    def test_invalid_sizes_refused_whole(self):
        q = self.queue()
        self.assertRaises(ValueError, q.put, Batch.of([b"ok", b""]))
        self.assertRaises(ValueError, q.put, Batch.of([b"x" * 1001]))
        self.assertEqual(q.depth, 0)

    def test_records_written_after_the_last_sync_survive_a_crash(self):
        q = self.queue(sync_every=1000)
        q.put(Batch.of([b"a"]))
        q.sync()
        q.put(Batch.of([b"b", b"c"]))
        # no close: the process died here
        again = self.queue()
        self.assertEqual(again.depth, 3)
        self.assertEqual(list(again.read(10)), [b"a", b"b", b"c"])

    def test_torn_last_record_is_cut_off_not_read(self):
        q = self.queue(sync_every=1000)
        q.put(Batch.of([b"a", b"b"]))
        q.sync()
        with open(self.path("t.diskqueue.000000.dat"), "ab") as f:
            f.write(record(b"complete") + struct.pack(">l", 50) + b"half")
        again = self.queue()
        self.assertEqual(list(again.read(10)), [b"a", b"b", b"complete"])
        self.assertEqual(os.path.getsize(self.path("t.diskqueue.000000.dat")), 10 + 12)
        again.put(Batch.of([b"after"]))
        self.assertEqual(list(again.read(10)), [b"after"])

    def test_crash_after_rollover_before_metadata(self):
        q = self.queue(max_bytes=12, sync_every=1000)
        q.put(Batch.of([b"aaaa"]))
        q.sync()
        q.put(Batch.of([b"bbbb", b"cccc"]))
        os.remove(self.path("t.diskqueue.meta.dat"))
        with open(self.path("t.diskqueue.meta.dat"), "wb") as f:
            f.write(b"1\n0,0\n0,8\n")
        again = self.queue(max_bytes=12)
        self.assertEqual(list(again.read(10)), [b"aaaa", b"bbbb", b"cccc"])

    def test_missing_metadata_recounts_data_files(self):
        with open(self.path("t.diskqueue.000003.dat"), "wb") as f:
            f.write(record(b"one") + record(b"two"))
        with open(self.path("t.diskqueue.000004.dat"), "wb") as f:
            f.write(record(b"three"))
        q = self.queue()
        self.assertEqual(q.depth, 3)
        self.assertEqual(list(q.read(10)), [b"one", b"two", b"three"])

    def test_garbage_metadata_recounts(self):
        with open(self.path("t.diskqueue.000000.dat"), "wb") as f:
            f.write(record(b"one"))
        with open(self.path("t.diskqueue.meta.dat"), "wb") as f:
            f.write(b"\x00garbage")
        q = self.queue()
        self.assertEqual(list(q.read(10)), [b"one"])

    def assert_damaged_first_segment_is_set_aside(self, damage: bytes):
        """Segment 0 holds a good record then `damage`; segment 1 a good record: both good ones are
        read, segment 0 is kept as .bad, and the queue ends empty."""
        with open(self.path("t.diskqueue.000000.dat"), "wb") as f:
            f.write(record(b"good") + damage)
        with open(self.path("t.diskqueue.000001.dat"), "wb") as f:
            f.write(record(b"next"))
        with open(self.path("t.diskqueue.meta.dat"), "wb") as f:
            f.write(b"3\n0,0\n1,8\n")
        q = self.queue()
        self.assertEqual(list(q.read(10)), [b"good", b"next"])
        self.assertIn("t.diskqueue.000000.dat.bad", self.files())
        self.assertNotIn("t.diskqueue.000000.dat", self.files())
        self.assertEqual(q.depth, 0)

    def test_corrupt_segment_renamed_bad_and_skipped(self):
        self.assert_damaged_first_segment_is_set_aside(struct.pack(">l", 99999) + b"garbage" * 10)

    def test_truncated_middle_segment_renamed_bad(self):
        self.assert_damaged_first_segment_is_set_aside(struct.pack(">l", 10) + b"shor")

    def test_reads_a_data_dir_written_the_way_go_nsqd_writes_it(self):
        # Two segments and a meta file as go-diskqueue leaves them: first record already consumed.
        messages = [struct.pack(">qH", 1700000000000000000 + i, 1) + b"%016x" % i + b"body-%d" % i
                    for i in range(5)]
        with open(self.path("orders:billing.diskqueue.000007.dat"), "wb") as f:
            f.write(b"".join(record(m) for m in messages[:3]))
        with open(self.path("orders:billing.diskqueue.000008.dat"), "wb") as f:
            f.write(b"".join(record(m) for m in messages[3:]))
        first = len(record(messages[0]))
        with open(self.path("orders:billing.diskqueue.meta.dat"), "wb") as f:
            f.write(b"4\n7,%d\n8,%d\n" % (first, 2 * len(record(messages[3]))))
        q = self.queue(name="orders:billing", max_bytes=100 * 1024 * 1024)
        self.assertEqual(q.depth, 4)
        self.assertEqual(list(q.read(10)), messages[1:])

    def test_failed_write_leaves_no_partial_record(self):
        q = self.queue()
        q.put(Batch.of([b"first"]))
        real_write = os.write

        def short_then_full(fd, data):
            real_write(fd, bytes(data[:3]))
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(os, "write", short_then_full)
        self.assertRaises(OSError, q.put, Batch.of([b"second"]))
        self.patch(os, "write", real_write)
        self.assertEqual(q.depth, 1)
        self.assertEqual(os.path.getsize(self.path("t.diskqueue.000000.dat")), 9)
        q.put(Batch.of([b"third"]))
        self.assertEqual(list(q.read(10)), [b"first", b"third"])


class BackgroundSyncTests(Base):
    def queue(self, sync_every=2, max_bytes=1024):
        self.worker = LazyWorker()
        return DiskQueue("t", self.dir, max_bytes, 1, 1000, sync_every, 2.0, self.clock, self.worker)

    def test_a_due_sync_runs_in_the_worker_with_the_positions_of_when_it_began(self):
        q = self.queue(sync_every=2)
        q.put(Batch.of([b"a", b"b"]))
        self.assertEqual((len(self.worker.jobs), self.files()), (1, ["t.diskqueue.000000.dat"]))
        q.put(Batch.of([b"c"]))
        self.worker.run_next()
        self.assertEqual(self.meta(), b"2\n0,0\n0,10\n")

    def test_a_sync_asked_for_while_one_is_under_way_follows_it(self):
        q = self.queue(sync_every=2)
        q.put(Batch.of([b"a", b"b"]))
        q.put(Batch.of([b"c", b"d"]))
        self.assertEqual(len(self.worker.jobs), 1)
        self.worker.run_next()
        self.assertEqual((self.meta(), len(self.worker.jobs)), (b"2\n0,0\n0,10\n", 1))
        self.worker.run_next()
        self.assertEqual((self.meta(), self.worker.jobs), (b"4\n0,0\n0,20\n", []))

    def test_with_sync_every_1_a_write_is_synced_before_put_returns(self):
        q = self.queue(sync_every=1)
        q.put(Batch.of([b"a"]))
        self.assertEqual((self.worker.jobs, self.meta()), ([], b"1\n0,0\n0,5\n"))
        q.read(1)
        self.clock.advance(2.0)
        self.assertEqual((self.worker.jobs, self.meta()), ([], b"0\n0,5\n0,5\n"))

    def test_a_sync_in_flight_outlives_the_roll_that_closed_its_file(self):
        """The job fsyncs (and closes) a descriptor of its own, not the queue's, which the roll
        closed and the next file may have been given."""
        q = self.queue(sync_every=100, max_bytes=12)
        q.put(Batch.of([b"aaaa"]))
        q.put(Batch.of([b"bbbb"]))
        self.worker.run_all()
        self.assertEqual(self.meta(), b"1\n0,0\n1,0\n")
        q.put(Batch.of([b"cccc"]))
        self.assertEqual(list(q.read(10)), [b"aaaa", b"bbbb", b"cccc"])

    def failing_sync(self):
        """A queue with two records written and the sync they set off made to fail."""
        q = self.queue(sync_every=2)
        q.put(Batch.of([b"a", b"b"]))
        [job] = self.worker.jobs

        def fail(*args):
            raise OSError(errno.EIO, "I/O error")

        job.fn = fail
        return q

    def test_a_failed_sync_is_done_again_by_the_next(self):
        q = self.failing_sync()
        self.worker.run_next()
        self.assertNotIn("t.diskqueue.meta.dat", self.files())
        q.sync()
        self.worker.run_all()
        self.assertEqual(self.meta(), b"2\n0,0\n0,10\n")
        self.flushLoggedErrors()

    def test_close_records_the_last_positions_even_after_a_failed_sync(self):
        q = self.failing_sync()
        closed = q.close()
        self.worker.run_all()
        self.successResultOf(closed)
        self.assertEqual(self.meta(), b"2\n0,0\n0,10\n")
        self.flushLoggedErrors()

    def test_close_and_empty_follow_the_sync_under_way(self):
        q = self.queue(sync_every=2)
        q.put(Batch.of([b"a", b"b"]))
        q.empty()
        self.worker.run_all()
        self.assertEqual(self.meta(), b"0\n1,0\n1,0\n")
        q.put(Batch.of([b"c", b"d"]))
        q.put(Batch.of([b"e"]))
        closed = q.close()
        self.assertNoResult(closed)
        self.worker.run_all()
        self.successResultOf(closed)
        self.assertEqual(self.meta(), b"3\n1,0\n1,15\n")
