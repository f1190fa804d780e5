"""A TCP connection reading into the shared buffer hands on what arrives, in order, as bytes of its
own, ends as a recv()-reading one does, and allocates only what arrived."""
from __future__ import annotations

import gc
import platform
import select
import socket
import struct

from twisted.internet import defer, error, protocol, reactor
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from nsqtx.read_into import read_into
from tests.support import accept_real_connection, start_real_node

_PYPY = platform.python_implementation() == "PyPy"


class _Collecting(protocol.Protocol):
    def connectionMade(self):
        self.received = []
        self.lost = defer.Deferred()
        read_into(self.transport)
        self.factory.accepted.callback(self)

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason=protocol.connectionDone):
        self.lost.callback(reason.value)


def _wait_readable(sock) -> None:
    readable, _, _ = select.select([sock], [], [], 5)
    assert readable, "the client's data did not arrive"


class ReadIntoTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def connect(self):
        """(server-side protocol, the server's socket, client socket) over real loopback TCP."""
        proto, client = yield accept_real_connection(self, _Collecting)
        return proto, proto.transport.socket, client

    @defer.inlineCallbacks
    def test_two_connections_get_what_their_peer_sent_in_order_as_bytes_of_their_own(self):
        first, _, first_client = yield self.connect()
        second, _, second_client = yield self.connect()
        # more than the buffer holds, in pieces of every size, the two streams interleaved
        sent = {first: [], second: []}
        for i in range(24):
            for proto, client in ((first, first_client), (second, second_client)):
                piece = bytes([(i * 7 + len(sent[proto])) % 256]) * (1 + (i * 9973 + id(proto) % 7) % 100000)
                client.sendall(piece)
                sent[proto].append(piece)
        for proto in (first, second):
            expected = b"".join(sent[proto])
            while sum(map(len, proto.received)) < len(expected):
                yield _turn()
            self.assertEqual(b"".join(proto.received), expected)
            self.assertEqual({type(data) for data in proto.received}, {bytes})
            self.assertGreater(len(proto.received), 1)

    @defer.inlineCallbacks
    def test_the_peer_closing_ends_the_connection_cleanly(self):
        proto, _, client = yield self.connect()
        client.sendall(b"last words")
        client.close()
        reason = yield proto.lost
        self.assertIsInstance(reason, error.ConnectionDone)
        self.assertEqual(b"".join(proto.received), b"last words")

    @defer.inlineCallbacks
    def test_a_reset_connection_is_lost(self):
        proto, _, client = yield self.connect()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        reason = yield proto.lost
        self.assertIsInstance(reason, error.ConnectionLost)

    @defer.inlineCallbacks
    def test_a_read_with_nothing_there_leaves_the_connection_open(self):
        proto, _, client = yield self.connect()
        self.assertIsNone(proto.transport.doRead())
        client.sendall(b"still there")
        while not proto.received:
            yield _turn()
        self.assertEqual(proto.received, [b"still there"])
        self.assertFalse(proto.lost.called)

    @defer.inlineCallbacks
    def test_a_read_allocates_what_arrived_not_the_whole_buffer(self):
        proto, server, client = yield self.connect()

        line = b"FIN 0123456789abcdef\n" * 5

        def read_once():
            client.sendall(line)
            _wait_readable(server)
            proto.transport.doRead()

        if _PYPY:
            # every 1 MB allocated is a minor collection: 2000 reads of 64 KB would be about 125
            minors = []
            gc.hooks.on_gc_minor = lambda stats: minors.append(stats.count)
            self.addCleanup(setattr, gc.hooks, "on_gc_minor", None)
            for _ in range(2000):
                read_once()
            self.assertLess(sum(minors), 16)
        else:
            import tracemalloc
            tracemalloc.start()
            self.addCleanup(tracemalloc.stop)
            for _ in range(20):
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
                read_once()
                self.assertLess(tracemalloc.get_traced_memory()[1] - before, 4096)
        self.assertEqual(set(proto.received), {line})

    def test_a_transport_other_than_a_tcp_connection_keeps_its_own_reads(self):
        transport = StringTransport()
        read_into(transport)
        self.assertNotIn("doRead", vars(transport))


class NodeConnectionTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_client_connections_read_into_the_buffer_on_pypy_only(self):
        node = start_real_node(self)
        client = socket.create_connection(("127.0.0.1", node.tcp_port))
        self.addCleanup(client.close)
        while not node.clients:
            yield _turn()
        (connection,) = node.clients
        self.assertEqual("doRead" in vars(connection.transport), _PYPY)


def _turn():
    """A Deferred that fires at the reactor's next turn, after it has polled the sockets."""
    d = defer.Deferred()
    reactor.callLater(0.001, d.callback, None)
    return d
