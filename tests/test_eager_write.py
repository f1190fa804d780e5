"""Writes to a TCP transport go to the socket at once when nothing is queued, else queue in order."""
from __future__ import annotations

import select
import socket
import struct

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from nsqtx.eager_write import eager_writer
from nsqtx.message import new_batch
from tests.support import accept_real_connection, start_real_node


class _Accepting(protocol.Protocol):
    def connectionMade(self):
        self.factory.accepted.callback(self)


class EagerWriteTests(TestCase):
    @defer.inlineCallbacks
    def connect(self):
        """(server-side protocol, non-blocking client socket) over a real loopback TCP connection."""
        proto, client = yield accept_real_connection(self, _Accepting)
        client.setblocking(False)
        return proto, client

    @defer.inlineCallbacks
    def test_sends_without_waiting_for_the_reactor(self):
        proto, client = yield self.connect()
        eager_writer(proto.transport)(b"hello")
        # no reactor turn in between: only a write that went straight to the socket can be read
        readable, _, _ = select.select([client], [], [], 5)
        self.assertEqual(client.recv(100) if readable else b"", b"hello")
        self.assertEqual(proto.transport.dataBuffer[proto.transport.offset:], b"")

    @defer.inlineCallbacks
    def test_what_the_socket_does_not_take_is_queued_and_everything_arrives_in_order(self):
        proto, client = yield self.connect()
        write = eager_writer(proto.transport)
        chunks = [bytes([i % 251]) * 1000003 for i in range(24)]
        for chunk in chunks:
            write(chunk)
        self.assertTrue(proto.transport._tempDataLen, "24 MB should not all fit in the socket buffers")
        expected = b"".join(chunks)
        received = []
        size = 0
        while size < len(expected):
            try:
                data = client.recv(1 << 20)
            except BlockingIOError:
                yield task.deferLater(reactor, 0, lambda: None)
                continue
            received.append(data)
            size += len(data)
        self.assertEqual(b"".join(received), expected)

    @defer.inlineCallbacks
    def test_a_connection_without_the_state_it_reads_gets_its_own_write(self):
        proto, client = yield self.connect()
        transport = proto.transport
        del transport._tempDataLen
        self.addCleanup(setattr, transport, "_tempDataLen", 0)
        written = []
        transport.write = written.append
        eager_writer(transport)(b"x")
        self.assertEqual(written, [b"x"])

    def test_other_transports_get_their_own_write(self):
        transport = StringTransport()
        write = eager_writer(transport)
        write(b"x")
        transport.write = lambda data: transport.io.write(data.upper())
        write(b"y")
        self.assertEqual(transport.value(), b"xY")


class SlowConsumerTests(TestCase):
    @defer.inlineCallbacks
    def test_a_consumer_that_does_not_read_is_paused_and_later_gets_everything(self):
        """Writes go straight to the socket until it is full; then they queue in the transport, which
        pauses delivery to that consumer, so the server does not buffer its whole RDY window."""
        node = start_real_node(self)
        client = socket.create_connection(("127.0.0.1", node.tcp_port))
        self.addCleanup(client.close)
        client.setblocking(False)
        client.sendall(b"  V2SUB t c\nRDY 2500\n")
        channel = None
        for _ in range(1000):
            channel = node.topics.get("t") and node.topics["t"].channels.get("c")
            if channel is not None and channel.clients and channel.clients[0].ready_count:
                break
            yield task.deferLater(reactor, 0, lambda: None)
        [consumer] = channel.clients
        # 2500 x 16 KB: far more than loopback socket buffers hold
        node.get_topic("t").put(new_batch(node, [bytes([i % 251]) * 16384 for i in range(2500)]))
        for _ in range(1000):
            if not consumer.can_receive:
                break
            yield task.deferLater(reactor, 0, lambda: None)
        self.assertFalse(consumer.can_receive)
        self.assertLess(consumer.in_flight_count, 2500)

        received = bytearray()
        messages = 0
        while messages < 2500:
            try:
                received += client.recv(1 << 20)
            except BlockingIOError:
                yield task.deferLater(reactor, 0, lambda: None)
                continue
            while len(received) >= 4:
                size = struct.unpack(">l", received[:4])[0]
                if len(received) < 4 + size:
                    break
                if struct.unpack(">l", received[4:8])[0] == 2:
                    messages += 1
                del received[:4 + size]
        self.assertEqual(consumer.in_flight_count, 2500)
