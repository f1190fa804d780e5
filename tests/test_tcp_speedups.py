"""nsqtx.tcp_speedups: writes to a plain TCP transport go to the socket at once when nothing is queued
(several buffers with one sendmsg), else queue in order; reads into the shared buffer hand on what
arrives, in order, as bytes of their own, end as a recv()-reading connection does, and allocate only
what arrived; any other transport keeps its own write and read."""
from __future__ import annotations

import gc
import platform
import select
import socket
import struct

from twisted.internet import defer, error, protocol, reactor, task
from twisted.internet.tcp import Connection
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from nsqtx import tcp_speedups
from nsqtx.tcp_speedups import is_plain_tcp, read_into, writer_for
from tests.support import accept_real_connection, start_real_node

_PYPY = platform.python_implementation() == "PyPy"


class IsPlainTCPTests(TestCase):
    def test_a_tcp_connection_has_them_while_it_has_every_name(self):
        connection = Connection.__new__(Connection)
        connection.socket = object()
        self.assertTrue(is_plain_tcp(connection, ("socket", "doRead", "_dataReceived")))
        self.assertFalse(is_plain_tcp(connection, ("socket", "a_name_twisted_renamed")))

    def test_another_transport_has_none_even_with_the_names(self):
        transport = StringTransport()
        self.assertFalse(is_plain_tcp(transport, ()))
        self.assertFalse(is_plain_tcp(transport, ("write",)))


class _Accepting(protocol.Protocol):
    def connectionMade(self):
        self.factory.accepted.callback(self)


class _CountingSocket:
    """A socket that counts sendmsg calls and can refuse them and send's with `error`."""

    def __init__(self, sock):
        self._sock = sock
        self.sendmsg_calls = []
        self.error = None

    def sendmsg(self, buffers):
        self.sendmsg_calls.append(len(buffers))
        if self.error is not None:
            raise self.error
        return self._sock.sendmsg(buffers)

    def send(self, data):
        if self.error is not None:
            raise self.error
        return self._sock.send(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


@defer.inlineCallbacks
def _receive(client, size):
    """`size` bytes from a non-blocking socket, letting the reactor turn while none are there."""
    received = []
    while size > 0:
        try:
            data = client.recv(1 << 20)
        except BlockingIOError:
            yield task.deferLater(reactor, 0, lambda: None)
            continue
        received.append(data)
        size -= len(data)
    return b"".join(received)


class EagerWriteTests(TestCase):
    @defer.inlineCallbacks
    def connect(self):
        """(server-side protocol, non-blocking client socket) over a real loopback TCP connection."""
        proto, client = yield accept_real_connection(self, _Accepting)
        client.setblocking(False)
        return proto, client

    @defer.inlineCallbacks
    def connect_counting(self):
        """connect(), with the server side's socket counting sendmsg calls."""
        proto, client = yield self.connect()
        sock = _CountingSocket(proto.transport.socket)
        self.patch(proto.transport, "socket", sock)
        return proto, client, sock

    @defer.inlineCallbacks
    def assert_queued_and_received_in_order(self, proto, client, groups):
        """Writing `groups` (lists of buffers) overflows the socket into the transport's queue, and
        the client gets every byte, in order."""
        write = writer_for(proto.transport)
        for group in groups:
            write(group)
        self.assertTrue(proto.transport._tempDataLen, "more than the socket buffers hold")
        expected = b"".join(b"".join(group) for group in groups)
        received = yield _receive(client, len(expected))
        self.assertEqual(received, expected)

    @defer.inlineCallbacks
    def test_sends_without_waiting_for_the_reactor(self):
        proto, client = yield self.connect()
        writer_for(proto.transport)([b"hello"])
        # no reactor turn in between: only a write that went straight to the socket can be read
        readable, _, _ = select.select([client], [], [], 5)
        self.assertEqual(client.recv(100) if readable else b"", b"hello")
        self.assertEqual(proto.transport.dataBuffer[proto.transport.offset:], b"")

    @defer.inlineCallbacks
    def test_what_the_socket_does_not_take_is_queued_and_everything_arrives_in_order(self):
        proto, client = yield self.connect()
        yield self.assert_queued_and_received_in_order(proto, client,
                                                       [[bytes([i % 251]) * 1000003] for i in range(24)])

    @defer.inlineCallbacks
    def test_several_buffers_go_out_with_one_sendmsg(self):
        proto, client, sock = yield self.connect_counting()
        writer_for(proto.transport)([b"hello", b" ", b"world"])
        readable, _, _ = select.select([client], [], [], 5)
        self.assertEqual(client.recv(100) if readable else b"", b"hello world")
        self.assertEqual(sock.sendmsg_calls, [3])

    @defer.inlineCallbacks
    def test_more_buffers_than_one_sendmsg_takes_go_out_in_groups_and_in_order(self):
        proto, client, sock = yield self.connect_counting()
        self.patch(tcp_speedups, "_IOV_MAX", 4)
        parts = [b"%03d" % i for i in range(10)]
        writer_for(proto.transport)(parts)
        self.assertEqual(sock.sendmsg_calls, [4, 4, 2])
        received = yield _receive(client, 30)
        self.assertEqual(received, b"".join(parts))

    @defer.inlineCallbacks
    def test_what_sendmsg_does_not_take_is_queued_from_where_it_stopped(self):
        """Buffers of odd sizes, so that the socket fills up in the middle of one."""
        proto, client = yield self.connect()
        groups = [[bytes([(3 * i + j) % 251]) * (333331 + 7 * j) for j in range(3)] for i in range(24)]
        yield self.assert_queued_and_received_in_order(proto, client, groups)

    @defer.inlineCallbacks
    def test_views_the_socket_does_not_take_are_queued_as_bytes(self):
        """The transport's write() takes bytes only: what is left of a view, alone or among others, is
        copied for it."""
        proto, client = yield self.connect()
        data = bytes(range(251)) * 80000
        for group in ([memoryview(data)[1:]], [memoryview(data)[2:], memoryview(data)[:3]]):
            yield self.assert_queued_and_received_in_order(proto, client, [group])

    @defer.inlineCallbacks
    def test_buffers_the_socket_refuses_are_queued_in_the_transport(self):
        """One buffer (send) or several (sendmsg), and whatever the socket raises: a full buffer, or
        a connection the transport has yet to find lost."""
        for refusal in (BlockingIOError(), ConnectionResetError()):
            for group in ([b"abcd"], [b"ab", b"cd"]):
                proto, client, sock = yield self.connect_counting()
                sock.error = refusal
                writer_for(proto.transport)(group)
                self.assertEqual(proto.transport._tempDataLen, 4)
                sock.error = None
                received = yield _receive(client, 4)
                self.assertEqual(received, b"abcd")

    @defer.inlineCallbacks
    def test_a_connection_without_the_state_it_reads_gets_its_own_write(self):
        proto, client = yield self.connect()
        transport = proto.transport
        del transport._tempDataLen
        self.addCleanup(setattr, transport, "_tempDataLen", 0)
        written = []
        transport.write = written.append
        writer_for(transport)([b"x", b"y"])
        self.assertEqual(written, [b"xy"])

    def test_other_transports_get_their_own_write(self):
        transport = StringTransport()
        write = writer_for(transport)
        write([b"x"])
        transport.write = lambda data: transport.io.write(data.upper())
        write([b"y", b"z"])
        write([memoryview(b"vw")])
        self.assertEqual(transport.value(), b"xYZVW")


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


class TransportPathTests(TestCase):
    """Which path each transport a client can negotiate takes: a plain or compressed connection's
    flush goes to the socket within the write (compressed bytes are still plain TCP below); a TLS
    connection's goes through Twisted's TLS layer, which sends later. Reads go into the shared
    buffer on PyPy whatever the transport, below the TLS layer."""

    timeout = 30

    @defer.inlineCallbacks
    def test_each_transport_s_write_and_read_path(self):
        from twisted.internet.threads import deferToThread

        from tests.support import make_certificates
        from tests.test_tls import identify, read_frame

        certs = make_certificates(self)
        node = start_real_node(self, tls_cert=certs["server"], tls_key=certs["server_key"])
        sockets = []

        def clients():
            import ssl

            for features in ({}, {"snappy": True}, {"deflate": True}, {"tls_v1": True}):
                sock = socket.create_connection(("127.0.0.1", node.tcp_port), timeout=10)
                sock.sendall(b"  V2")
                identify(sock, **features)
                if features.get("tls_v1"):
                    sock = ssl.create_default_context(cafile=certs["ca"]).wrap_socket(sock, server_hostname="127.0.0.1")
                    read_frame(sock)
                elif features:
                    sock.recv(100)
                sockets.append(sock)

        yield deferToThread(clients)
        for sock in sockets:
            self.addCleanup(sock.close)
        for _ in range(50):
            if len(node.clients) == 4 and all(not c._handshaking for c in node.clients):
                break
            yield _turn()
        paths = {}
        for client in node.clients:
            name = "tls" if client.tls else "snappy" if client.snappy else "deflate" if client.deflate else "plain"
            counting = _CountingSocket(client.transport.socket)
            self.patch(client.transport, "socket", counting)
            sent = []
            send = counting.send
            counting.send = lambda data, send=send: sent.append(len(data)) or send(data)
            client._write([b"frame one", b"frame two"] if name == "plain" else [b"frame"])
            paths[name] = ("at once" if sent or counting.sendmsg_calls else "through the transport",
                           "doRead" in vars(client.transport))
        self.assertEqual(paths, {"plain": ("at once", _PYPY), "snappy": ("at once", _PYPY),
                                 "deflate": ("at once", _PYPY), "tls": ("through the transport", _PYPY)})
