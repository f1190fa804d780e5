"""The embeddable node on the real reactor: port 0, bound ports, clean stop with clients attached."""
from __future__ import annotations

import os
import struct
import threading

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from nsqtx import NSQD, Options, diskqueue
from nsqtx.message import MIN_DISK_LENGTH, new_batch
from tests.support import data_dir


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
