"""The node: embedded on the real reactor (port 0, bound ports, clean stop with clients attached),
restarted in process on the same data path (metadata, held and queued messages, Go's layout), and
the lock it holds on that path while it runs."""
from __future__ import annotations

import os
import struct
import threading

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from nsqtx import NSQD, Options, diskqueue
from nsqtx.dirlock import DataPathLocked, DirLock
from nsqtx.message import MIN_DISK_LENGTH, new_batch
from nsqtx.files import remove_file
from nsqtx.metadata import MetadataError
from tests.support import RESPONSE, Conn, LazyWorker, data_dir, disconnect_all, make_node, mpub_body


class FrameClient(Protocol):
    """Collects frames and tells when the server hangs up."""

    def __init__(self):
        self.buffer = b""
        self.frames = []
        self.waiting = None
        self.lost = defer.Deferred()

    def next_frame(self):
        self.waiting = defer.Deferred()
        self._deliver()
        return self.waiting

    def dataReceived(self, data):
        self.buffer += data
        while len(self.buffer) >= 8:
            size, kind = struct.unpack(">lL", self.buffer[:8])
            if len(self.buffer) < 4 + size:
                break
            self.frames.append((kind, self.buffer[8:4 + size]))
            self.buffer = self.buffer[4 + size:]
        self._deliver()

    def _deliver(self):
        if self.waiting is not None and self.frames:
            waiting, self.waiting = self.waiting, None
            waiting.callback(self.frames.pop(0))

    def connectionLost(self, reason):
        self.lost.callback(None)


class EmbeddedNodeTests(TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def test_embedded_node_serves_and_stops_cleanly(self):
        node = NSQD(Options(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0", data_path=data_dir(self)))
        node.startService()
        self.assertNotEqual(node.tcp_port, 0)
        self.assertNotEqual(node.http_port, 0)
        client = FrameClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", node.tcp_port), client)
        client.transport.write(b"  V2PUB t\n" + struct.pack(">l", 2) + b"hi")
        frame = yield client.next_frame()
        self.assertEqual(frame, (0, b"OK"))
        self.assertEqual(node.topics["t"].depth(), 1)
        yield node.stopService()
        self.assertEqual(node.clients, {})
        yield client.lost
        self.assertFalse(node.running)

    @defer.inlineCallbacks
    def test_disk_queues_sync_in_the_reactors_thread_pool_and_a_stop_waits_for_them(self):
        threads = []
        sync_files = diskqueue._sync_files

        def recording(*args, **kwargs):
            threads.append(threading.current_thread())
            return sync_files(*args, **kwargs)

        self.patch(diskqueue, "_sync_files", recording)
        path = data_dir(self)
        node = NSQD(Options(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0", data_path=path,
                            mem_queue_size=0, sync_every=2))
        node.startService()
        node.get_topic("t").put(new_batch(node, [b"m%d" % i for i in range(5)]))
        yield node.stopService()
        self.assertTrue(threads)
        self.assertNotIn(threading.main_thread(), threads)
        with open(os.path.join(path, "t.diskqueue.meta.dat"), "rb") as f:
            self.assertEqual(f.read(), b"5\n0,0\n0,%d\n" % (5 * (4 + MIN_DISK_LENGTH + 2)))

    def test_invalid_options_are_refused_at_construction(self):
        self.assertRaises(ValueError, NSQD, Options(max_msg_size=10, max_body_size=5))


class RestartTests(TestCase):
    def setUp(self):
        self.path = data_dir(self)

    def start(self, **options):
        node, clock = make_node(self, data_path=self.path, **options)
        node.startService()
        return node, clock

    def stop(self, node):
        stopped = node.stopService()
        disconnect_all(node)
        self.successResultOf(stopped)

    def consume_all(self, node, clock, topic=b"t", channel=b"c"):
        conn = Conn(node).magic()
        conn.identify(output_buffer_timeout=-1)
        conn.subscribe(topic, channel, rdy=2500)
        got = []
        while True:
            clock.advance(0)
            frames = [f for f in conn.frames() if f[0] != RESPONSE]
            if not frames:
                return conn, got
            for _, data in frames:
                got.append(data[26:])
                conn.send(b"FIN " + data[10:26] + b"\n")

    def test_queued_in_flight_and_deferred_messages_survive_a_clean_restart(self):
        node, clock = self.start(mem_queue_size=100)
        node.get_topic("t").get_channel("c")
        publisher = Conn(node).magic()
        bodies = [b"m%04d" % i for i in range(1000)]
        for i in range(0, 1000, 200):
            publisher.command(b"MPUB t", mpub_body(bodies[i:i + 200]))
        publisher.command(b"DPUB t 60000", b"deferred")
        consumer = Conn(node, 5000).magic()
        consumer.subscribe(rdy=3)
        clock.advance(1)
        in_flight = [data[26:] for kind, data in consumer.frames() if kind == 2]
        self.assertEqual(in_flight, bodies[:3])
        self.stop(node)

        node, clock = self.start(mem_queue_size=100)
        _, got = self.consume_all(node, clock)
        self.assertEqual(sorted(got), sorted(bodies + [b"deferred"]))
        self.assertEqual(len(got), len(set(got)))

    def test_topics_channels_and_pause_state_come_back(self):
        node, clock = self.start()
        topic = node.get_topic("t")
        topic.get_channel("live")
        topic.get_channel("held").pause()
        node.get_topic("quiet").pause()
        node.get_topic("e#ephemeral").get_channel("x#ephemeral")
        self.stop(node)
        node, clock = self.start()
        self.assertEqual(sorted(node.topics), ["quiet", "t"])
        self.assertEqual(sorted(node.topics["t"].channels), ["held", "live"])
        self.assertTrue(node.topics["t"].channels["held"].paused)
        self.assertFalse(node.topics["t"].channels["live"].paused)
        self.assertTrue(node.topics["quiet"].paused)

    def test_messages_held_by_a_topic_without_channels_survive(self):
        node, clock = self.start(mem_queue_size=10)
        conn = Conn(node).magic()
        conn.command(b"MPUB t", mpub_body([b"%d" % i for i in range(50)]))
        self.assertEqual(conn.frames(), [(RESPONSE, b"OK")])
        self.stop(node)
        node, clock = self.start(mem_queue_size=10)
        self.assertEqual(node.topics["t"].depth(), 50)
        _, got = self.consume_all(node, clock)
        # Shutdown appends what memory held after the disk backlog (as nsqd does; NSQ promises no
        # order), so only exactly-once is checked.
        self.assertEqual(sorted(got), sorted(b"%d" % i for i in range(50)))

    def test_a_deferred_message_held_by_a_topic_without_channels_survives(self):
        node, clock = self.start()
        conn = Conn(node).magic()
        conn.command(b"DPUB t 60000", b"later")
        self.assertEqual(conn.frames(), [(RESPONSE, b"OK")])
        self.assertEqual(node.topics["t"].backend_depth(), 0)
        self.stop(node)
        node, clock = self.start()
        self.assertEqual((node.topics["t"].depth(), node.topics["t"].backend_depth()), (1, 1))
        _, got = self.consume_all(node, clock)
        self.assertEqual(got, [b"later"])

    def test_deleted_topic_leaves_no_files(self):
        node, clock = self.start(mem_queue_size=0)
        node.get_topic("t").get_channel("c")
        Conn(node).magic().command(b"PUB t", b"x")
        node.delete_topic("t")
        self.assertEqual(sorted(os.listdir(self.path)), ["nsqd.dat"])
        self.stop(node)
        node, clock = self.start()
        self.assertEqual(node.topics, {})

    def test_fully_read_queue_files_are_removed_by_the_disk_worker(self):
        worker = LazyWorker()
        node, clock = make_node(self, disk_worker=worker, data_path=self.path, mem_queue_size=0,
                                max_bytes_per_file=1024)
        node.startService()
        node.get_topic("t").get_channel("c")
        Conn(node).magic().command(b"MPUB t", mpub_body([b"x" * 100] * 30))
        _, got = self.consume_all(node, clock)
        self.assertEqual(len(got), 30)
        done = [job.args[0] for job in worker.jobs if job.fn is remove_file]
        self.assertTrue(done)
        self.assertTrue(all(os.path.exists(path) and path.endswith(".dat.done") for path in done), done)
        worker.run_all()
        self.assertFalse([name for name in os.listdir(self.path) if name.endswith(".done")])
        stopped = node.stopService()
        disconnect_all(node)
        worker.run_all()
        self.successResultOf(stopped)

    def test_go_nsqd_data_dir_is_served(self):
        """A data dir as Go nsqd 1.3 leaves it: nsqd.dat plus a channel's diskqueue."""
        messages = [struct.pack(">qH", 1700000000000000000 + i, 0) + b"%016x" % i + b"go-%d" % i for i in range(3)]
        with open(os.path.join(self.path, "orders:billing.diskqueue.000000.dat"), "wb") as f:
            f.write(b"".join(struct.pack(">l", len(m)) + m for m in messages))
        size = sum(4 + len(m) for m in messages)
        with open(os.path.join(self.path, "orders:billing.diskqueue.meta.dat"), "w") as f:
            f.write("3\n0,0\n0,%d\n" % size)
        with open(os.path.join(self.path, "nsqd.dat"), "w") as f:
            f.write('{"topics":[{"channels":[{"name":"billing","paused":false}],"name":"orders",'
                    '"paused":false}],"version":"1.3.0"}')
        node, clock = self.start()
        self.assertEqual(node.topics["orders"].channels["billing"].depth(), 3)
        conn, got = self.consume_all(node, clock, b"orders", b"billing")
        self.assertEqual(got, [b"go-0", b"go-1", b"go-2"])

    def test_missing_data_path_refuses_to_start(self):
        node = NSQD(Options(data_path=os.path.join(self.path, "missing"), tcp_address="127.0.0.1:0",
                            http_address="127.0.0.1:0"))
        self.assertRaises(ValueError, node.startService)


class DataPathLockTests(TestCase):
    """One node per data path, as Go nsqd: the lock is taken by startService and given back once
    stopService has everything on disk."""

    def setUp(self):
        self.path = data_dir(self)

    def assertLocked(self, locked=True):
        probe = DirLock(self.path)
        if locked:
            self.assertRaises(DataPathLocked, probe.lock)
        else:
            probe.lock()
            probe.unlock()

    def test_held_while_the_node_runs(self):
        node, _ = make_node(self, data_path=self.path)
        self.assertLocked(False)
        node.startService()
        self.assertLocked()
        self.successResultOf(node.stopService())
        self.assertLocked(False)

    def test_a_second_node_on_the_path_is_refused_until_the_first_stops(self):
        first, _ = make_node(self, data_path=self.path)
        first.startService()
        second, _ = make_node(self, data_path=self.path)
        e = self.assertRaises(DataPathLocked, second.startService)
        self.assertIn("failed to lock data-path " + self.path, str(e))
        self.assertFalse(second.running)
        self.assertEqual(second.http.port, None)
        self.successResultOf(first.stopService())
        second.startService()
        self.addCleanup(second.stopService)
        self.assertTrue(second.running)

    def test_released_once_queues_are_on_disk_not_when_clients_go(self):
        worker = LazyWorker()
        node, _ = make_node(self, disk_worker=worker, data_path=self.path, mem_queue_size=0)
        node.startService()
        Conn(node).magic().command(b"PUB t", b"x")
        stopped = node.stopService()
        self.assertLocked()
        worker.run_all()
        self.assertLocked(False)
        # the client is still connected: the stop itself waits for it
        self.assertNoResult(stopped)
        disconnect_all(node)
        self.successResultOf(stopped)

    def test_a_start_that_fails_releases_it(self):
        with open(os.path.join(self.path, "nsqd.dat"), "w") as f:
            f.write("garbage")
        node, _ = make_node(self, data_path=self.path)
        self.assertRaises(MetadataError, node.startService)
        self.assertLocked(False)
