"""A client's state: heartbeats and idle detection, the output buffer and when it is flushed, and
back-pressure from its transport; what a channel sees of it is IConsumer."""
from __future__ import annotations

import socket
import struct

from twisted.internet import defer, reactor, task
from twisted.internet.interfaces import IPushProducer
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from nsqtx.client_v2 import HOLD_LIMIT
from nsqtx.consumer import IConsumer
from nsqtx.message import new_batch
from tests.support import RESPONSE, ConnCase, mpub_body, start_real_node


class ContractTests(ConnCase):
    def test_a_client_is_a_consumer_and_its_transport_s_producer(self):
        conn = self.conn()
        verifyObject(IConsumer, conn.client)
        verifyObject(IPushProducer, conn.client)
        self.assertIs(conn.transport.producer, conn.client)


class HeartbeatAndBufferTests(ConnCase):
    def test_heartbeat_sent_at_negotiated_interval(self):
        conn = self.conn()
        conn.identify(heartbeat_interval=1000)
        conn.frames()
        self.clock.advance(1.0)
        self.assertEqual(conn.frames(), [(RESPONSE, b"_heartbeat_")])

    def test_default_heartbeat_is_half_the_client_timeout(self):
        conn = self.conn()
        self.clock.advance(29.9)
        self.assertEqual(conn.frames(), [])
        self.clock.advance(0.1)
        self.assertEqual(conn.frames(), [(RESPONSE, b"_heartbeat_")])

    def test_silent_client_closed_after_two_intervals(self):
        conn = self.conn()
        conn.identify(heartbeat_interval=1000)
        self.clock.advance(1.0)
        conn.command(b"NOP")
        self.clock.advance(1.9)
        self.assertFalse(conn.closed)
        self.clock.advance(0.1)
        self.assertTrue(conn.closed)

    def test_disabled_heartbeats_never_close(self):
        conn = self.conn()
        conn.identify(heartbeat_interval=-1)
        conn.frames()
        self.clock.advance(3600)
        self.assertEqual(conn.frames(), [])
        self.assertFalse(conn.closed)

    def test_the_flush_timer_is_armed_again_after_it_fires(self):
        """Each message that finds the output buffer empty gets its own flush at the timeout: the
        timer fired for the first must not leave the next waiting forever."""
        conn = self.conn()
        conn.identify(output_buffer_timeout=100)
        conn.subscribe(rdy=10)
        conn.frames()
        publisher = self.conn(9000)
        for payload in (b"first", b"second", b"third"):
            publisher.command(b"PUB t", payload)
            self.assertEqual(conn.frames(), [])
            self.clock.advance(0.1)
            self.assertEqual([m[2] for m in conn.messages()], [payload])

    def test_messages_buffered_until_output_buffer_timeout(self):
        conn = self.conn()
        conn.identify(output_buffer_timeout=100)
        conn.subscribe(rdy=10)
        conn.frames()
        publisher = self.conn(9000)
        publisher.command(b"PUB t", b"x")
        self.assertEqual(conn.frames(), [])
        self.clock.advance(0.099)
        self.assertEqual(conn.frames(), [])
        self.clock.advance(0.001)
        self.assertEqual(len(conn.messages()), 1)

    def test_flush_when_rdy_is_used_up(self):
        conn = self.conn()
        conn.subscribe(rdy=2)
        conn.frames()
        publisher = self.conn(9000)
        publisher.command(b"PUB t", b"x")
        self.assertEqual(conn.frames(), [])
        before = conn.transport.writes
        publisher.command(b"PUB t", b"y")
        self.assertEqual(len(conn.messages()), 2)
        self.assertEqual(conn.transport.writes - before, 1)

    def test_flush_when_buffer_is_full(self):
        conn = self.conn()
        conn.identify(output_buffer_size=100)
        conn.subscribe(rdy=10)
        conn.frames()
        publisher = self.conn(9000)
        publisher.command(b"PUB t", b"x" * 40)
        self.assertEqual(conn.frames(), [])
        publisher.command(b"PUB t", b"x" * 40)
        self.assertEqual(len(conn.messages()), 2)

    def buffered_consumer(self):
        """(a consumer with a 1000-byte output buffer and a 1 s timeout, how many writes it has had)"""
        conn = self.conn()
        conn.identify(output_buffer_size=1000, output_buffer_timeout=1000)
        conn.subscribe(rdy=100)
        conn.frames()
        return conn, len(conn.transport.write_sizes)

    def test_a_share_that_fills_the_buffer_goes_out_whole_in_one_write(self):
        """50 frames of 134 bytes pass a 1000-byte buffer; handed over in one pump share, they go out
        together at its end, the last 2 with them rather than at the buffer's timeout."""
        conn, before = self.buffered_consumer()
        self.conn(9000).command(b"MPUB t", mpub_body([b"%100d" % i for i in range(50)]))
        self.assertEqual(conn.transport.write_sizes[before:], [50 * 134])
        self.assertEqual([body for _, _, body in conn.messages()], [b"%100d" % i for i in range(50)])

    def test_a_share_that_fills_no_buffer_waits_for_the_timeout(self):
        conn, before = self.buffered_consumer()
        self.conn(9000).command(b"MPUB t", mpub_body([b"%100d" % i for i in range(7)]))
        self.clock.advance(0.999)
        self.assertEqual(conn.transport.write_sizes[before:], [])
        self.clock.advance(0.001)
        self.assertEqual(conn.transport.write_sizes[before:], [7 * 134])

    def test_a_share_writes_each_time_it_passes_the_hold_limit(self):
        conn = self.conn()
        conn.subscribe(rdy=100)
        conn.frames()
        before = len(conn.transport.write_sizes)
        frame_size = 34 + 10000  # size, type, timestamp, attempts, ID, body
        self.conn(9000).command(b"MPUB t", mpub_body([b"%10000d" % i for i in range(50)]))
        self.assertEqual([body for _, _, body in conn.messages()], [b"%10000d" % i for i in range(50)])
        per_write = -(-HOLD_LIMIT // frame_size)
        self.assertEqual(conn.transport.write_sizes[before:],
                         [per_write * frame_size] * (50 // per_write) + [50 % per_write * frame_size])

    def test_a_transport_that_fills_up_stops_delivery_at_the_next_write(self):
        """The next write comes once the flushed frames pass HOLD_LIMIT (at the latest)."""
        conn = self.conn()
        conn.subscribe(rdy=100)
        conn.frames()
        write = conn.transport.write

        def write_and_fill(data):
            write(data)
            conn.client.pauseProducing()

        conn.transport.write = write_and_fill
        self.conn(9000).command(b"MPUB t", mpub_body([b"%10000d" % i for i in range(50)]))
        channel = self.node.topics["t"].channels["c"]
        per_write = -(-HOLD_LIMIT // (34 + 10000))
        self.assertEqual((len(conn.messages()), channel.depth()), (per_write, 50 - per_write))
        conn.transport.write = write
        conn.client.resumeProducing()
        self.clock.advance(1)
        self.assertEqual((len(conn.messages()), channel.depth()), (50 - per_write, 0))

    def test_backpressure_pauses_delivery_and_reading(self):
        conn = self.conn()
        conn.subscribe(rdy=10)
        conn.frames()
        conn.client.pauseProducing()
        self.assertEqual(conn.transport.producerState, "paused")
        publisher = self.conn(9000)
        publisher.command(b"PUB t", b"x")
        self.clock.advance(1)
        self.assertEqual(conn.frames(), [])
        conn.client.resumeProducing()
        self.assertEqual(conn.transport.producerState, "producing")
        self.clock.advance(1)
        self.assertEqual(len(conn.messages()), 1)


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
            while len(received) >= 8:
                # Checked before use, so that bytes out of step fail here instead of looping forever.
                size, kind = struct.unpack_from(">lL", received)
                self.assertIn((size, kind), {(6, 0), (4 + 26 + 16384, 2)}, "the OK to SUB, or a message")
                if len(received) < 4 + size:
                    break
                if kind == 2:
                    self.assertTrue(received[34:4 + size] == bytes([messages % 251]) * 16384,
                                    "message %d arrives whole and in order" % messages)
                    messages += 1
                del received[:4 + size]
        self.assertEqual(consumer.in_flight_count, 2500)
