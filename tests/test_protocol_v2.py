"""Protocol V2 commands: success and error paths, state rules, codes and fatal/non-fatal split."""
from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from nsqtx.guid import GUIDFactory
from nsqtx.mpub import decode_mpub
from nsqtx.protocol_v2 import MAGIC_V2
from tests.support import (ERROR, MESSAGE, RESPONSE, Conn, ConnCase, body, decode, disconnect_all, make_node, message_id,
                           mpub_body, queued)
from tests.properties import SLOW_IS_FINE, NoTracebacksMixin, chunkings, mutations, sized


class MagicTests(ConnCase):
    def test_bad_magic_is_refused_and_closed(self):
        conn = Conn(self.node)
        conn.send(b"  V1PUB t\n")
        self.assertError(conn, b"E_BAD_PROTOCOL")

    def test_magic_may_arrive_in_pieces(self):
        conn = Conn(self.node)
        conn.send(b" ")
        conn.send(b" V")
        conn.send(b"2NOP\n")
        self.assertEqual(conn.frames(), [])
        self.assertFalse(conn.closed)

    def test_unknown_command_is_fatal(self):
        conn = self.conn()
        conn.command(b"HELLO world")
        self.assertError(conn, b"E_INVALID invalid command HELLO")

    def test_empty_line_is_an_invalid_command(self):
        conn = self.conn()
        conn.send(b"\n")
        self.assertError(conn, b"E_INVALID invalid command ")

    def test_overlong_line_is_fatal(self):
        conn = self.conn()
        conn.send(b"X" * (17 * 1024))
        self.assertError(conn, b"E_INVALID command line too long")

    def test_crlf_line_endings_are_accepted(self):
        conn = self.conn()
        conn.send(b"PUB t\r\n" + struct.pack(">l", 2) + b"hi")
        self.assertOK(conn)

    def test_nothing_is_read_after_a_fatal_error(self):
        conn = self.conn()
        conn.send(b"BAD\nPUB t\n" + struct.pack(">l", 2) + b"hi")
        self.assertError(conn, b"E_INVALID invalid command BAD")
        self.assertNotIn("t", self.node.topics)


class PublishTests(ConnCase):
    def test_pub_creates_topic_and_answers_ok(self):
        conn = self.conn()
        conn.command(b"PUB t", b"hello")
        self.assertOK(conn)
        topic = self.node.topics["t"]
        self.assertEqual((topic.message_count, topic.message_bytes, topic.depth()), (1, 5, 1))
        self.assertEqual(conn.client.pub_counts, {"t": 1})

    def test_pub_body_split_byte_by_byte(self):
        conn = self.conn()
        for byte in b"PUB t\n" + struct.pack(">l", 3) + b"abc":
            conn.send(bytes([byte]))
        self.assertOK(conn)
        self.assertEqual([body(m) for m in queued(self.node.topics["t"].queue.memory)], [b"abc"])

    def test_several_commands_in_one_chunk_get_one_write(self):
        conn = self.conn()
        one = b"PUB t\n" + struct.pack(">l", 1) + b"x"
        before = conn.transport.writes
        conn.send(one * 5)
        self.assertEqual(conn.frames(), [(RESPONSE, b"OK")] * 5)
        self.assertEqual(conn.transport.writes - before, 1)

    def test_pub_errors(self):
        cases = [
            (b"PUB\n", b"E_INVALID PUB insufficient number of parameters"),
            (b"PUB bad!name\n", b'E_BAD_TOPIC PUB topic name "bad!name" is not valid'),
            (b"PUB t\n" + struct.pack(">l", 0), b"E_BAD_MESSAGE PUB invalid message body size 0"),
            (b"PUB t\n" + struct.pack(">l", -5), b"E_BAD_MESSAGE PUB invalid message body size -5"),
            (b"PUB t\n" + struct.pack(">l", 1024 * 1024 + 1), b"E_BAD_MESSAGE PUB message too big 1048577 > 1048576"),
        ]
        for data, error in cases:
            conn = self.conn()
            conn.send(data)
            self.assertError(conn, error)
        self.assertNotIn("t", self.node.topics)

    def test_topic_name_rules(self):
        for name, ok in [(b"a" * 64, True), (b"a" * 65, False), (b"x#ephemeral", True), (b"x#eph", False),
                         (b"a.b_c-D9", True), (b"", False)]:
            conn = self.conn()
            conn.command(b"PUB " + name, b"m")
            self.assertEqual(conn.frames()[0][0], RESPONSE if ok else ERROR, name)

    def test_one_connection_publishing_to_several_topics(self):
        """A connection remembers the last topic name it published to, checked: the next one is
        still looked at, whichever command comes with it."""
        conn = self.conn()
        for command, name, payload in [(b"PUB", b"a", b"1"), (b"PUB", b"a", b"2"), (b"MPUB", b"b", mpub_body([b"3"])),
                                       (b"PUB", b"b", b"3b"), (b"PUB", b"a", b"4"), (b"DPUB", b"c 0", b"5")]:
            conn.command(command + b" " + name, payload)
            self.assertOK(conn)
        self.assertEqual({name: [body(m) for m in queued(topic.queue.memory)] for name, topic in self.node.topics.items()},
                         {"a": [b"1", b"2", b"4"], "b": [b"3", b"3b"], "c": [b"5"]})
        self.assertEqual(conn.client.pub_counts, {"a": 3, "b": 2, "c": 1})
        conn.send(b"PUB a!\n")
        self.assertError(conn, b'E_BAD_TOPIC PUB topic name "a!" is not valid')

    def test_mpub(self):
        conn = self.conn()
        conn.command(b"MPUB t", mpub_body([b"a", b"bb", b"ccc"]))
        self.assertOK(conn)
        topic = self.node.topics["t"]
        self.assertEqual([body(m) for m in queued(topic.queue.memory)], [b"a", b"bb", b"ccc"])
        self.assertEqual(len({message_id(m) for m in queued(topic.queue.memory)}), 3)
        self.assertEqual(conn.client.pub_counts, {"t": 3})

    def test_mpub_errors_publish_nothing(self):
        good = struct.pack(">l", 1) + b"a"
        cases = [
            (b"MPUB bad!\n", b'E_BAD_TOPIC E_BAD_TOPIC MPUB topic name "bad!" is not valid'),
            (b"MPUB t\n" + struct.pack(">l", 0), b"E_BAD_BODY MPUB invalid body size 0"),
            (b"MPUB t\n" + struct.pack(">l", 6 * 1024 * 1024), b"E_BAD_BODY MPUB body too big 6291456 > 5242880"),
            (b"MPUB t\n" + struct.pack(">ll", 4, 0), b"E_BAD_BODY MPUB invalid message count 0"),
            (b"MPUB t\n" + struct.pack(">l", 9) + struct.pack(">l", 2) + good,
             b"E_BAD_MESSAGE MPUB failed to read message(1) body size"),
            (b"MPUB t\n" + struct.pack(">l", 13) + struct.pack(">l", 2) + good + struct.pack(">l", 0),
             b"E_BAD_MESSAGE MPUB invalid message(1) body size 0"),
            (b"MPUB t\n" + struct.pack(">l", 9) + struct.pack(">ll", 1, 7) + b"x",
             b"E_BAD_MESSAGE MPUB failed to read message body"),
            (b"MPUB t\n" + struct.pack(">l", 10) + struct.pack(">l", 1) + good + b"!",
             b"E_BAD_BODY MPUB body has 1 bytes after the last message"),
        ]
        # the same with more commands in the same read: the body is checked in place in the read
        # buffer, so nothing may be read past its declared end
        for trailer in (b"", b"NOP\nPUB t\n" + struct.pack(">l", 1) + b"z"):
            for data, error in cases:
                conn = self.conn()
                conn.send(data + trailer)
                self.assertError(conn, error)
                topic = self.node.topics.get("t")
                self.assertEqual(topic.depth() if topic else 0, 0)

    def test_size_limits_are_inclusive(self):
        """A message body of exactly --max-msg-size and an MPUB body of exactly --max-body-size are
        accepted; one byte more is refused with nsqd's code, and nothing of it is queued."""
        options = self.node.options
        options.max_msg_size = 10
        options.max_body_size = 4 + 2 * (4 + 10)
        full = b"m" * 10
        accepted = [(b"PUB t", full), (b"DPUB t 0", full), (b"MPUB t", mpub_body([full, full]))]
        for line, payload in accepted:
            conn = self.conn()
            conn.command(line, payload)
            self.assertOK(conn)
        topic = self.node.topics["t"]
        self.assertEqual([body(m) for m in queued(topic.queue.memory)], [full] * 4)
        refused = [
            (b"PUB t", full + b"!", b"E_BAD_MESSAGE PUB message too big 11 > 10"),
            (b"DPUB t 0", full + b"!", b"E_BAD_MESSAGE DPUB message too big 11 > 10"),
            (b"MPUB t", mpub_body([full, full]) + b"!", b"E_BAD_BODY MPUB body too big 33 > 32"),
            (b"MPUB t", mpub_body([full, full + b"!"])[:-1], b"E_BAD_MESSAGE MPUB message too big 11 > 10"),
        ]
        for line, payload, error in refused:
            conn = self.conn()
            conn.command(line, payload)
            self.assertError(conn, error)
        self.assertEqual(topic.depth(), 4)

    def test_mpub_message_too_big(self):
        self.node.options.max_msg_size = 10
        conn = self.conn()
        conn.command(b"MPUB t", mpub_body([b"x" * 11]))
        self.assertError(conn, b"E_BAD_MESSAGE MPUB message too big 11 > 10")

    def test_dpub_defers_delivery(self):
        consumer = self.conn(5000)
        consumer.subscribe(rdy=10)
        consumer.frames()
        conn = self.conn()
        conn.command(b"DPUB t 2000", b"later")
        self.assertOK(conn)
        channel = self.node.topics["t"].channels["c"]
        self.assertEqual(len(channel.deferred), 1)
        self.clock.advance(1.9)
        self.node.scan_queues()
        self.assertEqual(consumer.messages(), [])
        self.clock.advance(0.1)
        self.node.scan_queues()
        self.clock.advance(1)
        [(attempts, _, body)] = consumer.messages()
        self.assertEqual((attempts, body), (1, b"later"))
        self.assertEqual(len(channel.deferred), 0)

    def test_dpub_errors(self):
        cases = [
            (b"DPUB t\n", b"E_INVALID DPUB insufficient number of parameters"),
            (b"DPUB t x\n", b"E_INVALID DPUB could not parse timeout x"),
            (b"DPUB t -1\n", b"E_INVALID DPUB could not parse timeout -1"),
            (b"DPUB t 3600001\n", b"E_INVALID DPUB timeout 3600001 out of range 0-3600000"),
            (b"DPUB t 10\n" + struct.pack(">l", 0), b"E_BAD_MESSAGE DPUB invalid message body size 0"),
        ]
        for data, error in cases:
            conn = self.conn()
            conn.send(data)
            self.assertError(conn, error)

    def test_messages_beyond_the_memory_bound_spill_to_disk_and_come_back_in_order(self):
        self.node.options.mem_queue_size = 2
        conn = self.conn()
        for data in (b"1", b"2", b"3", b"4"):
            conn.command(b"PUB t", data)
        self.assertEqual(conn.frames(), [(RESPONSE, b"OK")] * 4)
        topic = self.node.topics["t"]
        self.assertEqual((topic.depth(), topic.backend_depth()), (4, 2))
        consumer = self.conn(5000)
        consumer.identify(output_buffer_timeout=-1)
        consumer.subscribe(rdy=10)
        consumer.frames()
        self.clock.advance(0)
        conn.command(b"MPUB t", mpub_body([b"5", b"6", b"7"]))
        self.clock.advance(0)
        self.assertEqual([m[2] for m in consumer.messages()], [b"1", b"2", b"3", b"4", b"5", b"6", b"7"])

    def test_channel_backlog_beyond_the_memory_bound_is_kept_on_disk(self):
        self.node.options.mem_queue_size = 2
        channel = self.node.get_topic("t").get_channel("c")
        conn = self.conn()
        conn.command(b"MPUB t", mpub_body([b"%d" % i for i in range(5)]))
        self.assertOK(conn)
        self.assertEqual((channel.depth(), channel.backend_depth(), len(channel.queue.memory)), (5, 3, 2))
        consumer = self.conn(5000)
        consumer.identify(output_buffer_timeout=-1)
        consumer.subscribe(rdy=3)
        frames = consumer.frames()
        self.assertEqual(frames[:2], [(RESPONSE, b"OK")] * 2)
        got = [decode(data) for _, data in frames[2:]]
        self.assertEqual([m[2] for m in got], [b"0", b"1", b"2"])
        consumer.send(b"".join(b"FIN " + m[1] + b"\n" for m in got))
        self.assertEqual([m[2] for m in consumer.messages()], [b"3", b"4"])
        self.assertEqual(channel.depth(), 0)

    def test_disk_failure_refuses_the_publish_and_marks_the_node_unhealthy(self):
        self.node.options.mem_queue_size = 0
        from nsqtx.diskqueue import DiskQueue

        real_put = DiskQueue.put

        def disk_full(queue, records):
            raise OSError(28, "No space left on device")

        self.patch(DiskQueue, "put", disk_full)
        conn = self.conn()
        conn.command(b"PUB t", b"x")
        [(kind, text)] = conn.frames()
        self.assertEqual(kind, ERROR)
        self.assertTrue(text.startswith(b"E_PUB_FAILED PUB failed failed to write message to backend"), text)
        self.assertIn("No space left on device", self.node.health.error)
        self.patch(DiskQueue, "put", real_put)
        other = self.conn(4001)
        other.command(b"PUB t", b"y")
        self.assertOK(other)
        self.assertIsNone(self.node.health.error)
        self.assertEqual(self.node.topics["t"].depth(), 1)


OK_FRAME = struct.pack(">lL", 6, RESPONSE) + b"OK"


class AnswerOrderTests(ConnCase):
    """A publish is answered before its messages are encoded and queued only when nothing can
    refuse them any more, and only when the answer would go out at once anyway."""

    def setUp(self):
        ConnCase.setUp(self)
        #: what each connection had been sent when a topic was given messages
        self.sent_at_put = []
        from nsqtx.topic import Topic

        real_put = Topic.put

        def put(topic, batch, delay=0.0):
            self.sent_at_put.append(self.publisher.transport.value())
            real_put(topic, batch, delay)

        self.patch(Topic, "put", put)
        self.publisher = self.conn()

    def assertAnsweredAt(self, put_saw: bytes):
        self.assertEqual(self.sent_at_put, [put_saw])
        self.assertOK(self.publisher)

    def test_mpub_kept_in_memory_is_answered_first(self):
        self.publisher.command(b"MPUB t", mpub_body([b"a", b"b"]))
        self.assertAnsweredAt(OK_FRAME)
        self.assertEqual(self.node.topics["t"].depth(), 2)

    def test_pub_to_channels_with_room_is_answered_first(self):
        self.node.get_topic("t").get_channel("c")
        self.publisher.command(b"PUB t", b"x")
        self.assertAnsweredAt(OK_FRAME)
        self.assertEqual(self.node.topics["t"].channels["c"].depth(), 1)

    def test_publish_going_to_disk_is_answered_after_the_write(self):
        self.node.options.mem_queue_size = 0
        self.publisher.command(b"MPUB t", mpub_body([b"a"]))
        self.assertAnsweredAt(b"")
        self.assertEqual(self.node.topics["t"].backend_depth(), 1)

    def test_publish_queued_behind_messages_on_disk_is_answered_after_the_write(self):
        self.node.options.mem_queue_size = 0
        self.publisher.command(b"PUB t", b"on disk")
        self.assertOK(self.publisher)
        self.node.options.mem_queue_size = 10
        self.sent_at_put = []
        self.publisher.command(b"PUB t", b"behind it")
        self.assertAnsweredAt(b"")
        self.assertEqual(self.node.topics["t"].backend_depth(), 2)

    def test_exiting_channel_refuses_without_answering_ok(self):
        self.node.get_topic("t").get_channel("c").exiting = True
        self.publisher.command(b"PUB t", b"x")
        self.assertEqual(self.sent_at_put, [b""])
        self.assertError(self.publisher, b"E_PUB_FAILED PUB failed exiting")

    def test_publish_a_full_channel_would_write_to_disk_waits_and_fails_alone(self):
        from nsqtx.diskqueue import DiskQueue

        self.node.options.mem_queue_size = 1
        channel = self.node.get_topic("t").get_channel("c")
        self.publisher.command(b"PUB t", b"first")
        self.assertOK(self.publisher)
        self.sent_at_put = []

        def disk_full(queue, records):
            raise OSError(28, "No space left on device")

        self.patch(DiskQueue, "put", disk_full)
        self.publisher.command(b"PUB t", b"second")
        self.assertEqual(self.sent_at_put, [b""])
        [(kind, text)] = self.publisher.frames()
        self.assertEqual(kind, ERROR)
        self.assertTrue(text.startswith(b"E_PUB_FAILED PUB failed failed to write"), text)
        self.assertEqual(channel.depth(), 1)

    def test_paused_topic_answers_first_while_its_memory_has_room(self):
        topic = self.node.get_topic("t")
        topic.get_channel("c")
        topic.pause()
        self.node.options.mem_queue_size = 2
        self.publisher.command(b"MPUB t", mpub_body([b"a", b"b"]))
        self.assertAnsweredAt(OK_FRAME)
        self.sent_at_put = []
        self.publisher.command(b"PUB t", b"c")
        self.assertAnsweredAt(b"")
        self.assertEqual((len(topic.queue.memory), topic.backend_depth()), (2, 1))

    def test_ephemeral_topic_past_its_memory_answers_first_and_drops_the_rest(self):
        self.node.options.mem_queue_size = 1
        self.publisher.command(b"MPUB t#ephemeral", mpub_body([b"a", b"b"]))
        self.assertAnsweredAt(OK_FRAME)
        topic = self.node.topics["t#ephemeral"]
        self.assertEqual((topic.depth(), topic.dropped_count), (1, 1))

    def test_exiting_topic_refuses_without_answering_ok(self):
        self.node.get_topic("t").exiting = True
        self.publisher.command(b"MPUB t", mpub_body([b"a"]))
        self.assertEqual(self.sent_at_put, [b""])
        self.assertError(self.publisher, b"E_MPUB_FAILED MPUB failed exiting")

    def test_dpub_is_answered_after_queueing(self):
        self.publisher.command(b"DPUB t 1000", b"later")
        self.assertAnsweredAt(b"")

    def test_pipelined_publishes_are_answered_in_one_write(self):
        writes = self.publisher.transport.writes
        mpub = mpub_body([b"b"])
        self.publisher.send(b"PUB t\n" + struct.pack(">l", 1) + b"a"
                            + b"MPUB t\n" + struct.pack(">l", len(mpub)) + mpub)
        self.assertEqual(self.sent_at_put, [b"", OK_FRAME * 2])
        self.assertEqual(self.publisher.transport.writes, writes + 1)
        self.assertEqual(self.publisher.frames(), [(RESPONSE, b"OK")] * 2)


class IdentifyTests(ConnCase):
    def test_feature_negotiation_reply(self):
        conn = self.conn()
        conn.identify(feature_negotiation=True, msg_timeout=5000, output_buffer_size=1024,
                      output_buffer_timeout=100, tls_v1=True)
        [(kind, data)] = conn.frames()
        self.assertEqual(kind, RESPONSE)
        reply = json.loads(data)
        self.assertEqual(reply, {
            "max_rdy_count": 2500, "version": "1.3.0", "max_msg_timeout": 900000, "msg_timeout": 5000,
            "tls_v1": False, "deflate": False, "deflate_level": 6, "max_deflate_level": 6, "snappy": False,
            "sample_rate": 0, "auth_required": False, "output_buffer_size": 1024, "output_buffer_timeout": 100,
            "topology_region": "", "topology_zone": "",
        })
        client = conn.client
        self.assertEqual((client.msg_timeout, client.output_buffer_size, client.output_buffer_timeout), (5.0, 1024, 0.1))

    def test_snappy_and_deflate_together_are_refused(self):
        conn = self.conn()
        conn.identify(feature_negotiation=True, snappy=True, deflate=True)
        self.assertError(conn, b"E_IDENTIFY_FAILED cannot enable both deflate and snappy compression")

    def test_without_negotiation_answers_ok_and_records_identity(self):
        conn = self.conn()
        conn.identify(client_id="worker-1", hostname="box", user_agent="test/1.0")
        self.assertOK(conn)
        client = conn.client
        self.assertEqual((client.client_id, client.hostname, client.user_agent), ("worker-1", "box", "test/1.0"))

    def test_invalid_bodies(self):
        cases = [
            (b"{not json", b"E_BAD_BODY IDENTIFY failed to decode JSON body"),
            (b"[1, 2]", b"E_BAD_BODY IDENTIFY failed to decode JSON body"),
            (b'{"heartbeat_interval": "fast"}', b"E_BAD_BODY IDENTIFY failed to decode JSON body"),
            (b'{"feature_negotiation": 1}', b"E_BAD_BODY IDENTIFY failed to decode JSON body"),
            (b'{"heartbeat_interval": 999}', b"E_BAD_BODY IDENTIFY heartbeat interval (999) is invalid"),
            (b'{"heartbeat_interval": 60001}', b"E_BAD_BODY IDENTIFY heartbeat interval (60001) is invalid"),
            (b'{"output_buffer_size": 63}', b"E_BAD_BODY IDENTIFY output buffer size (63) is invalid"),
            (b'{"output_buffer_timeout": 10}', b"E_BAD_BODY IDENTIFY output buffer timeout (10) is invalid"),
            (b'{"msg_timeout": 999}', b"E_BAD_BODY IDENTIFY msg timeout (999) is invalid"),
            (b'{"sample_rate": 100}', b"E_BAD_BODY IDENTIFY sample rate (100) is invalid"),
        ]
        for payload, error in cases:
            conn = self.conn()
            conn.command(b"IDENTIFY", payload)
            self.assertError(conn, error)

    def test_feature_negotiation_reports_the_configured_max_rdy_count(self):
        self.node.options.max_rdy_count = 123
        conn = self.conn()
        conn.identify(feature_negotiation=True)
        [(kind, data)] = conn.frames()
        self.assertEqual((kind, json.loads(data)["max_rdy_count"]), (RESPONSE, 123))

    def test_body_of_exactly_max_body_size_is_read(self):
        """The limit is inclusive: a body of exactly --max-body-size is read and decoded (JSON padded
        with spaces here), one byte more is refused before it is read."""
        self.node.options.max_body_size = 100
        payload = b'{"client_id": "edge"}'
        conn = self.conn()
        conn.command(b"IDENTIFY", payload + b" " * (100 - len(payload)))
        self.assertOK(conn)
        self.assertEqual(conn.client.client_id, "edge")
        conn = self.conn()
        conn.command(b"IDENTIFY", payload + b" " * (101 - len(payload)))
        self.assertError(conn, b"E_BAD_BODY IDENTIFY body too big 101 > 100")

    def test_body_size_errors(self):
        for size, error in [(0, b"E_BAD_BODY IDENTIFY invalid body size 0"),
                            (5 * 1024 * 1024 + 1, b"E_BAD_BODY IDENTIFY body too big 5242881 > 5242880")]:
            conn = self.conn()
            conn.send(b"IDENTIFY\n" + struct.pack(">l", size))
            self.assertError(conn, error)

    def test_identify_only_before_sub(self):
        conn = self.conn()
        conn.subscribe()
        conn.frames()
        conn.identify()
        self.assertError(conn, b"E_INVALID cannot IDENTIFY in current state")

    def test_output_buffer_size_minus_one_disables_buffering(self):
        conn = self.conn()
        conn.identify(output_buffer_size=-1)
        self.assertEqual((conn.client.output_buffer_size, conn.client.output_buffer_timeout), (1, 0.0))

    def test_auth_is_disabled(self):
        conn = self.conn()
        conn.command(b"AUTH", b"secret")
        self.assertError(conn, b"E_AUTH_DISABLED AUTH disabled")

    def test_auth_body_of_exactly_max_body_size_is_read(self):
        """At the limit the body is read (and AUTH answered as disabled); one byte more is too big."""
        self.node.options.max_body_size = 100
        conn = self.conn()
        conn.command(b"AUTH", b"s" * 100)
        self.assertError(conn, b"E_AUTH_DISABLED AUTH disabled")
        conn = self.conn()
        conn.command(b"AUTH", b"s" * 101)
        self.assertError(conn, b"E_BAD_BODY AUTH body too big 101 > 100")

    def test_auth_errors(self):
        conn = self.conn()
        conn.command(b"AUTH x", b"secret")
        self.assertError(conn, b"E_INVALID AUTH invalid number of parameters")
        conn = self.conn()
        conn.send(b"AUTH\n" + struct.pack(">l", -1))
        self.assertError(conn, b"E_BAD_BODY AUTH invalid body size -1")


class SubscribeTests(ConnCase):
    def test_sub_errors(self):
        cases = [
            (b"SUB t\n", b"E_INVALID SUB insufficient number of parameters"),
            (b"SUB t! c\n", b'E_BAD_TOPIC SUB topic name "t!" is not valid'),
            (b"SUB t c!\n", b'E_BAD_CHANNEL SUB channel name "c!" is not valid'),
        ]
        for data, error in cases:
            conn = self.conn()
            conn.send(data)
            self.assertError(conn, error)

    def test_sub_twice(self):
        conn = self.conn()
        conn.subscribe()
        self.assertOK(conn)
        conn.subscribe()
        self.assertError(conn, b"E_INVALID cannot SUB in current state")

    def test_sub_requires_heartbeats(self):
        conn = self.conn()
        conn.identify(heartbeat_interval=-1)
        conn.frames()
        conn.subscribe()
        self.assertError(conn, b"E_INVALID cannot SUB with heartbeats disabled")

    def test_max_channel_consumers(self):
        self.node.options.max_channel_consumers = 1
        first = self.conn()
        first.subscribe()
        self.assertOK(first)
        second = self.conn()
        second.subscribe()
        self.assertError(second, b"E_SUB_FAILED SUB failed consumers for t:c exceeds limit of 1")

    def test_commands_needing_a_subscription(self):
        msg_id = b"0" * 16
        for line, error in [(b"RDY 1", b"E_INVALID cannot RDY in current state"),
                            (b"FIN " + msg_id, b"E_INVALID cannot FIN in current state"),
                            (b"REQ " + msg_id + b" 0", b"E_INVALID cannot REQ in current state"),
                            (b"TOUCH " + msg_id, b"E_INVALID cannot TOUCH in current state"),
                            (b"CLS", b"E_INVALID cannot CLS in current state")]:
            conn = self.conn()
            conn.command(line)
            self.assertError(conn, error)

    def test_rdy_errors(self):
        for line, error in [(b"RDY x", b"E_INVALID RDY could not parse count x"),
                            (b"RDY -1", b"E_INVALID RDY could not parse count -1"),
                            (b"RDY 2501", b"E_INVALID RDY count 2501 out of range 0-2500")]:
            conn = self.conn()
            conn.subscribe()
            conn.frames()
            conn.command(line)
            self.assertError(conn, error)

    def test_nop_does_nothing(self):
        conn = self.conn()
        conn.command(b"NOP")
        self.assertEqual(conn.frames(), [])
        self.assertFalse(conn.closed)


class ConsumeTests(ConnCase):
    def publish(self, *bodies, topic=b"t"):
        conn = self.conn(9000)
        conn.command(b"MPUB " + topic, mpub_body(list(bodies)))
        self.assertEqual(conn.frames(), [(RESPONSE, b"OK")])

    def consumer(self, rdy, port=5000, channel=b"c", **identify):
        conn = self.conn(port)
        if identify:
            conn.identify(**identify)
        conn.subscribe(channel=channel, rdy=rdy)
        conn.frames()
        return conn

    def test_messages_held_until_first_channel_then_delivered(self):
        self.publish(b"a", b"b")
        conn = self.conn()
        conn.identify(output_buffer_timeout=-1)
        conn.subscribe(rdy=5)
        self.clock.advance(0)
        frames = conn.frames()
        self.assertEqual(frames[:2], [(RESPONSE, b"OK"), (RESPONSE, b"OK")])
        self.assertEqual([(kind, data[26:], data[8:10]) for kind, data in frames[2:]],
                         [(MESSAGE, b"a", b"\x00\x01"), (MESSAGE, b"b", b"\x00\x01")])

    def test_rdy_limits_in_flight(self):
        conn = self.consumer(rdy=2)
        self.publish(b"1", b"2", b"3")
        got = conn.messages()
        self.assertEqual([b for _, _, b in got], [b"1", b"2"])
        conn.command(b"FIN " + got[0][1])
        self.assertEqual([b for _, _, b in conn.messages()], [b"3"])

    def test_rdy_zero_stops_delivery(self):
        conn = self.consumer(rdy=0)
        self.publish(b"1")
        self.assertEqual(conn.messages(), [])
        conn.command(b"RDY")
        self.assertEqual([b for _, _, b in conn.messages()], [b"1"])

    def test_fin_failures_are_not_fatal(self):
        conn = self.consumer(rdy=1)
        conn.command(b"FIN 0123456789abcdef")
        self.assertError(conn, b"E_FIN_FAILED FIN 0123456789abcdef failed ID not in flight", fatal=False)
        conn.command(b"FIN short")
        self.assertError(conn, b"E_INVALID invalid message ID")

    def test_fin_by_another_client_fails(self):
        owner = self.consumer(rdy=1, port=5001)
        other = self.consumer(rdy=0, port=5002)
        self.publish(b"x")
        [(_, msg_id, _)] = owner.messages()
        other.command(b"FIN " + msg_id)
        self.assertError(other, b"E_FIN_FAILED FIN " + msg_id + b" failed client does not own message", fatal=False)
        owner.command(b"FIN " + msg_id)
        self.assertEqual(owner.frames(), [])

    def test_fin_off_the_fast_path_restarts_delivery(self):
        """A FIN that the FIN loop leaves to the generic parser (CRLF, or a FIN after another
        command in the chunk) frees its RDY slot for the next message as the fast one does."""
        for ending in (b"\r\n", b"\n"):
            conn = self.consumer(rdy=1, channel=b"c%d" % len(ending))
            self.publish(b"first", b"second")
            [(_, msg_id, first)] = conn.messages()
            self.assertEqual(first, b"first")
            prefix = b"NOP\n" if ending == b"\n" else b""
            conn.send(prefix + b"FIN " + msg_id + ending)
            [(_, msg_id, second)] = conn.messages()
            self.assertEqual(second, b"second")
            conn.send(prefix + b"FIN " + msg_id + ending)

    def test_a_fin_whose_id_has_a_space_is_refused_as_nsqd_does_whatever_its_line_ending(self):
        """nsqd splits the line first: "FIN <15 bytes> <1 byte>" has a 15-byte ID, a fatal error."""
        for ending in (b"\n", b"\r\n"):
            conn = self.consumer(rdy=1, port=5000 + len(ending))
            conn.send(b"FIN " + b"0" * 15 + b" " + ending)
            self.assertError(conn, b"E_INVALID invalid message ID")

    def test_fin_lines_ending_in_crlf_follow_the_same_rules(self):
        conn = self.consumer(rdy=1)
        self.publish(b"x")
        [(_, msg_id, _)] = conn.messages()
        conn.send(b"FIN " + msg_id[:15] + b"\r\n")
        self.assertError(conn, b"E_INVALID invalid message ID")
        conn = self.consumer(rdy=1, port=5003)
        self.publish(b"y")
        [(_, msg_id, _)] = conn.messages()
        conn.send(b"FIN " + msg_id + b"\r\n")
        self.assertEqual((conn.frames(), conn.client.finish_count), ([], 1))

    def test_a_run_of_fins_in_one_chunk_ends_at_the_first_other_line(self):
        """FINs arriving together are taken in a loop of their own; every kind of line that can end
        the run is then parsed as it would be on its own."""
        conn = self.consumer(rdy=7)
        self.publish(*[b"m%d" % i for i in range(7)])
        ids = [msg_id for _, msg_id, _ in conn.messages()]
        conn.send(b"".join([
            b"FIN " + ids[0] + b"\n", b"FIN " + ids[1] + b"\n",
            b"FIN " + ids[2] + b"\r\n",                # CRLF: the generic FIN
            b"FIN " + ids[3] + b"\n",
            b"FIN 0123456789abcdef\n",                 # not in flight: E_FIN_FAILED, not fatal
            b"FIN " + ids[4] + b"\n", b"NOP\n",
            b"FIN " + ids[5] + b"\n",
            b"FIN " + ids[6][:8]]))                    # the rest comes in the next chunk
        self.assertEqual(conn.frames(), [(ERROR, b"E_FIN_FAILED FIN 0123456789abcdef failed ID not in flight")])
        self.assertEqual(conn.client.finish_count, 6)
        conn.send(ids[6][8:] + b"\n")
        self.assertEqual((conn.frames(), conn.client.finish_count, conn.closed), ([], 7, False))

    def test_a_bad_line_in_a_run_of_fins_is_fatal_there(self):
        conn = self.consumer(rdy=2)
        self.publish(b"a", b"b")
        ids = [msg_id for _, msg_id, _ in conn.messages()]
        conn.send(b"FIN " + ids[0] + b"\nFIN 01234567\n9abcdef\nFIN " + ids[1] + b"\n")
        self.assertError(conn, b"E_INVALID invalid message ID")
        self.assertEqual(conn.client.finish_count, 1)

    def test_fin_is_counted(self):
        conn = self.consumer(rdy=1)
        self.publish(b"x")
        [(_, msg_id, _)] = conn.messages()
        conn.command(b"FIN " + msg_id)
        channel = self.node.topics["t"].channels["c"]
        self.assertEqual((conn.client.finish_count, conn.client.in_flight_count, len(channel.in_flight)), (1, 0, 0))

    def test_req_redelivers_with_attempts_incremented(self):
        conn = self.consumer(rdy=1)
        self.publish(b"x")
        [(attempts, msg_id, _)] = conn.messages()
        self.assertEqual(attempts, 1)
        conn.command(b"REQ " + msg_id + b" 0")
        [(attempts, again, body)] = conn.messages()
        self.assertEqual((attempts, again, body), (2, msg_id, b"x"))
        channel = self.node.topics["t"].channels["c"]
        self.assertEqual((channel.requeue_count, conn.client.requeue_count), (1, 1))

    def test_req_with_delay_defers(self):
        conn = self.consumer(rdy=1)
        self.publish(b"x")
        [(_, msg_id, _)] = conn.messages()
        conn.command(b"REQ " + msg_id + b" 1500")
        channel = self.node.topics["t"].channels["c"]
        self.assertEqual(len(channel.deferred), 1)
        self.clock.advance(1.4)
        self.node.scan_queues()
        self.assertEqual(conn.messages(), [])
        self.clock.advance(0.1)
        self.node.scan_queues()
        [(attempts, again, _)] = conn.messages()
        self.assertEqual((attempts, again), (2, msg_id))

    def test_req_delay_is_clamped_to_max_req_timeout(self):
        self.node.options.max_req_timeout = 2.0
        conn = self.consumer(rdy=1)
        self.publish(b"x")
        [(_, msg_id, _)] = conn.messages()
        conn.command(b"REQ " + msg_id + b" 999999")
        self.clock.advance(2.0)
        self.node.scan_queues()
        self.assertEqual(len(conn.messages()), 1)

    def test_req_errors(self):
        conn = self.consumer(rdy=1)
        conn.command(b"REQ 0123456789abcdef")
        self.assertError(conn, b"E_INVALID REQ insufficient number of params")
        conn = self.consumer(rdy=1)
        conn.command(b"REQ 0123456789abcdef x")
        self.assertError(conn, b"E_INVALID REQ could not parse timeout x")
        conn = self.consumer(rdy=1)
        conn.command(b"REQ 0123456789abcdef 0")
        self.assertError(conn, b"E_REQ_FAILED REQ 0123456789abcdef failed ID not in flight", fatal=False)

    def test_in_flight_timeout_requeues(self):
        conn = self.consumer(rdy=1, msg_timeout=2000)
        self.publish(b"x")
        [(_, msg_id, _)] = conn.messages()
        self.clock.advance(1.9)
        self.node.scan_queues()
        self.assertEqual(conn.messages(), [])
        self.clock.advance(0.1)
        self.node.scan_queues()
        [(attempts, again, _)] = conn.messages()
        self.assertEqual((attempts, again), (2, msg_id))
        channel = self.node.topics["t"].channels["c"]
        self.assertEqual(channel.timeout_count, 1)
        self.assertEqual(conn.client.in_flight_count, 1)

    def test_scan_runs_on_the_queue_scan_interval(self):
        self.node.startService()
        conn = self.consumer(rdy=1, msg_timeout=1000)
        self.publish(b"x")
        conn.messages()
        self.clock.advance(0.95)
        self.assertEqual(conn.messages(), [])
        self.clock.advance(0.1)
        self.assertEqual(len(conn.messages()), 1)
        stopped = self.node.stopService()
        self.assertTrue(conn.closed)
        self.assertNoResult(stopped)
        disconnect_all(self.node)
        self.successResultOf(stopped)

    def test_touch_extends_deadline(self):
        conn = self.consumer(rdy=1, msg_timeout=2000)
        self.publish(b"x")
        [(_, msg_id, _)] = conn.messages()
        self.clock.advance(1.5)
        conn.command(b"TOUCH " + msg_id)
        self.assertEqual(conn.frames(), [])
        self.clock.advance(1.5)
        self.node.scan_queues()
        self.assertEqual(conn.messages(), [])
        self.clock.advance(0.5)
        self.node.scan_queues()
        self.assertEqual(len(conn.messages()), 1)

    def test_touch_is_capped_by_max_msg_timeout(self):
        self.node.options.max_msg_timeout = 3.0
        conn = self.consumer(rdy=1, msg_timeout=2000)
        self.publish(b"x")
        [(_, msg_id, _)] = conn.messages()
        self.clock.advance(1.9)
        conn.command(b"TOUCH " + msg_id)
        self.clock.advance(1.1)
        self.node.scan_queues()
        self.assertEqual(len(conn.messages()), 1)

    def test_touch_unknown_message_is_not_fatal(self):
        conn = self.consumer(rdy=1)
        conn.command(b"TOUCH 0123456789abcdef")
        self.assertError(conn, b"E_TOUCH_FAILED TOUCH 0123456789abcdef failed ID not in flight", fatal=False)

    def test_cls_answers_close_wait_and_stops_delivery(self):
        """After CLS nothing more is delivered: not at once, and not after the output buffer's
        timeout either (a message delivered after CLS would wait there, unseen until it fires)."""
        conn = self.consumer(rdy=5)
        conn.command(b"CLS")
        self.assertEqual(conn.frames(), [(RESPONSE, b"CLOSE_WAIT")])
        conn.command(b"RDY 5")
        self.publish(b"x")
        self.clock.advance(1.0)
        self.assertEqual(conn.frames(), [])
        self.assertFalse(conn.closed)
        channel = self.node.topics["t"].channels["c"]
        self.assertEqual((conn.client.ready_count, conn.client.in_flight_count, len(channel.in_flight)), (0, 0, 0))
        self.assertEqual(channel.depth(), 1)

    def test_fin_allowed_while_closing(self):
        conn = self.consumer(rdy=1)
        self.publish(b"x")
        [(_, msg_id, _)] = conn.messages()
        conn.command(b"CLS")
        conn.frames()
        conn.command(b"FIN " + msg_id)
        self.assertEqual(conn.frames(), [])
        self.assertEqual(conn.client.finish_count, 1)

    def test_fan_out_to_every_channel(self):
        a = self.consumer(rdy=10, channel=b"a", port=5001, output_buffer_timeout=-1)
        b = self.consumer(rdy=10, channel=b"b", port=5002, output_buffer_timeout=-1)
        self.publish(b"1", b"2")
        got_a, got_b = a.messages(), b.messages()
        self.assertEqual([m[2] for m in got_a], [b"1", b"2"])
        self.assertEqual([m[2] for m in got_b], [b"1", b"2"])
        self.assertEqual([m[1] for m in got_a], [m[1] for m in got_b])
        a.command(b"FIN " + got_a[0][1])
        self.assertEqual(len(self.node.topics["t"].channels["b"].in_flight), 2)

    def test_messages_spread_over_consumers(self):
        consumers = [self.consumer(rdy=100, port=5000 + i, output_buffer_timeout=-1) for i in range(3)]
        self.publish(*[b"%d" % i for i in range(30)])
        counts = [len(c.messages()) for c in consumers]
        self.assertEqual(counts, [10, 10, 10])

    def test_consumer_disconnect_leaves_in_flight_to_time_out(self):
        first = self.consumer(rdy=1, port=5001, msg_timeout=1000)
        self.publish(b"x")
        [(_, msg_id, _)] = first.messages()
        first.lose()
        second = self.consumer(rdy=1, port=5002)
        self.assertEqual(second.messages(), [])
        self.clock.advance(1.0)
        self.node.scan_queues()
        [(attempts, again, _)] = second.messages()
        self.assertEqual((attempts, again), (2, msg_id))


class DeferFanOutTests(ConnCase):
    def test_dpub_is_deferred_on_every_channel(self):
        topic = self.node.get_topic("t")
        channels = [topic.get_channel(name) for name in ("a", "b", "c")]
        conn = self.conn()
        conn.command(b"DPUB t 1000", b"later")
        self.assertOK(conn)
        self.assertEqual([(c.depth(), len(c.deferred)) for c in channels], [(0, 1)] * 3)


# -- properties of the framing parser (hypothesis)
#
# Two fresh nodes per example, each on its own fake clock and with a GUID factory on a fixed clock,
# so that two runs of the same commands give byte-identical message IDs and timestamps.

#: the GUID factories' clock: any fixed time (ns) gives every run the same IDs
_GUID_NS = 1_700_000_000 * 10 ** 9
PROP_MAX_MSG_SIZE = 2048
PROP_MAX_BODY_SIZE = 8192
NON_FATAL_CODES = {b"E_FIN_FAILED", b"E_REQ_FAILED", b"E_TOUCH_FAILED"}
FATAL_CODES = {
    b"E_INVALID", b"E_BAD_PROTOCOL", b"E_BAD_TOPIC", b"E_BAD_CHANNEL", b"E_BAD_BODY", b"E_BAD_MESSAGE",
    b"E_PUB_FAILED", b"E_MPUB_FAILED", b"E_DPUB_FAILED", b"E_SUB_FAILED", b"E_AUTH_DISABLED",
}


def strict_frames(data: bytes) -> list:
    """Every frame in `data`, as (type, data) pairs, failing on anything that is not a whole,
    well-formed frame (size at least 4, a known type, a message at least its header long)."""
    out = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 8, "a partial frame header at the end: %r" % (data[pos:],)
        size, kind = struct.unpack_from(">lL", data, pos)
        assert size >= 4 and kind in (RESPONSE, ERROR, MESSAGE), "bad frame header %r" % (data[pos:pos + 8],)
        assert kind != MESSAGE or size >= 4 + 26, "message frame too short: %r" % (data[pos:pos + 4 + size],)
        assert pos + 4 + size <= len(data), "a partial frame at the end: %r" % (data[pos:],)
        out.append((kind, data[pos + 8:pos + 4 + size]))
        pos += 4 + size
    return out


#: pieces of bodies: anything, and what looks like the protocol (line endings, commands, sizes, magic)
BODY_PIECES = st.one_of(
    st.binary(max_size=24),
    st.sampled_from([b"\n", b"\r\n", b"\r", b" ", b"  V2", b"PUB t\n", b"NOP\n", b"FIN 0123456789abcdef\n",
                     b"RDY 1\r\n", b"CLS\n", b"\x00\x00\x00\x05", b"\xff\xff\xff\xff", b"MPUB t\n\x00\x00\x00\x01"]),
)
BODIES = st.lists(BODY_PIECES, min_size=1, max_size=5).map(b"".join).map(lambda b: b or b"\n")
#: mostly the topic the session subscribes to
TOPICS = st.sampled_from([b"t", b"t", b"u", b"t#ephemeral"])
#: IDs that are never in flight: 16 bytes without a newline, not ending in CR (a line's last CR
#: belongs to its ending, in nsqd as here), and without a space (16 bytes with one are several
#: parameters, a fatal error: among FATAL_LINES)
FOREIGN_IDS = st.binary(min_size=16, max_size=16).filter(
    lambda b: b"\n" not in b and b" " not in b and not b.endswith(b"\r"))
IDENTIFY_BODIES = st.fixed_dictionaries({}, optional={
    "client_id": st.text(max_size=8), "hostname": st.text(max_size=8), "user_agent": st.text(max_size=8),
    "feature_negotiation": st.booleans(),
    "heartbeat_interval": st.sampled_from([1000, 5000, 30000]),
    "msg_timeout": st.sampled_from([1000, 60000]),
    "output_buffer_size": st.sampled_from([-1, 64, 100, 16384]),
    "output_buffer_timeout": st.sampled_from([-1, 25, 100, 1000]),
}).flatmap(lambda fields: st.sampled_from([json.dumps(fields).encode(), json.dumps(fields, indent=1).encode()]))
#: lines after which nothing more is read, in any state
FATAL_LINES = st.sampled_from([
    b"BOGUS\n", b"\n", b"PUB bad!\n", b"PUB t\n" + sized(b""), b"SUB t\n", b"AUTH\n" + sized(b"secret"),
    b"IDENTIFY\n" + sized(b"not json"), b"MPUB t\n" + sized(b"\x00\x00\x00\x00"),
    b"DPUB t 3600001\n", b"X" * (16 * 1024), b"FIN " + b"0" * 15 + b" \n", b"TOUCH 0123456 89abcdef\r\n",
])


@st.composite
def sessions(draw):
    """One connection's commands as (line, line ending, body or None), in an order nsqd accepts
    them; then maybe a command after which nsqd closes, and bytes it must never read.

    RDY never goes down, and CLS and the closing command come only while RDY is still 0: where a
    chunk ends decides when the channel is pumped after a RDY, and so how many messages go out
    before a lower RDY, a CLS or a close (in nsqd, its message pump's timing). Everything else may
    come in any order."""
    state, rdy = "init", 0
    commands = []
    for _ in range(draw(st.integers(0, 14))):
        kinds = ["PUB", "MPUB", "DPUB", "NOP"]
        if state == "init":
            kinds += ["SUB", "IDENTIFY", "SUB"]
        else:
            kinds += ["RDY", "RDY", "FIN", "REQ", "TOUCH"] + (["CLS"] if state == "subscribed" and rdy == 0 else [])
        kind = draw(st.sampled_from(kinds))
        ending = draw(st.sampled_from([b"\n", b"\r\n"]))
        payload = None
        if kind == "PUB":
            line, payload = b"PUB " + draw(TOPICS), draw(BODIES)
        elif kind == "DPUB":
            line = b"DPUB %s %d" % (draw(TOPICS), draw(st.sampled_from([0, 1, 150, 600, 5000])))
            payload = draw(BODIES)
        elif kind == "MPUB":
            line = b"MPUB " + draw(TOPICS)
            payload = mpub_body(draw(st.lists(BODIES, min_size=1, max_size=4)))
        elif kind == "NOP":
            line = b"NOP"
        elif kind == "IDENTIFY":
            line, payload = b"IDENTIFY", draw(IDENTIFY_BODIES)
        elif kind == "SUB":
            line, state = b"SUB t " + draw(st.sampled_from([b"c", b"c#ephemeral"])), "subscribed"
        elif kind == "RDY":
            count = draw(st.integers(rdy, rdy + 3))
            line = b"RDY" if count == 1 and draw(st.booleans()) else b"RDY %d" % count
            rdy = count if state == "subscribed" else rdy
        elif kind == "REQ":
            line = b"REQ %s %d" % (draw(FOREIGN_IDS), draw(st.sampled_from([0, 10, 99999999])))
        elif kind in ("FIN", "TOUCH"):
            line = kind.encode() + b" " + draw(FOREIGN_IDS)
        else:
            line, state = b"CLS", "closing"
        commands.append((line, ending, payload))
    tail = draw(st.none() | st.tuples(FATAL_LINES, st.binary(max_size=40))) if rdy == 0 else None
    return commands, tail


def session_bytes(commands, tail, endings=True, marks=None) -> bytes:
    """The stream after the magic; without `endings`, every line ends in a bare newline. Where
    each line and size starts and ends, and where each body starts, is added to `marks`, if
    given."""
    parts = []
    pos = 0
    for line, ending, payload in commands:
        parts.append(line + (ending if endings else b"\n"))
        if payload is not None:
            parts.append(sized(payload))
        for part in parts[-2 if payload is not None else -1:]:
            if marks is not None:
                marks.extend((pos, pos + len(part) - 1))
            pos += len(part)
        if marks is not None and payload is not None:
            marks.append(pos - len(payload))
    if tail is not None:
        parts.extend(tail)
    return b"".join(parts)


def expected_answers(commands) -> list:
    """What nsqd answers a session's commands, in order (a feature-negotiating IDENTIFY's JSON
    shown as its first byte)."""
    failed = {b"FIN": b"E_FIN_FAILED", b"REQ": b"E_REQ_FAILED", b"TOUCH": b"E_TOUCH_FAILED"}
    out = []
    for line, _, payload in commands:
        params = line.split(b" ")
        if params[0] in (b"PUB", b"DPUB", b"MPUB", b"SUB"):
            out.append((RESPONSE, b"OK"))
        elif params[0] == b"IDENTIFY":
            out.append((RESPONSE, b"{" if json.loads(payload).get("feature_negotiation") else b"OK"))
        elif params[0] == b"CLS":
            out.append((RESPONSE, b"CLOSE_WAIT"))
        elif params[0] in failed:
            out.append((ERROR, b"%s %s %s failed ID not in flight" % (failed[params[0]], params[0], params[1])))
    return out


class ParserPropertyBase(NoTracebacksMixin, TestCase):
    def setUp(self):
        self.watch_tracebacks()
        root = tempfile.mkdtemp(prefix="nsqtx-props-")
        self.addCleanup(shutil.rmtree, root, True)
        self._root = root
        self._nodes = 0

    def fresh_node(self):
        """A node on its own fake clock (and data path), its GUIDs on a fixed clock."""
        self._nodes += 1
        path = os.path.join(self._root, str(self._nodes))
        os.mkdir(path)
        node, clock = make_node(self, data_path=path, max_msg_size=PROP_MAX_MSG_SIZE,
                                max_body_size=PROP_MAX_BODY_SIZE)
        node.guid = GUIDFactory(node.options.node_id, clock=lambda: _GUID_NS)
        return node, clock

    def settle(self, node, clock):
        """The same timers fired in every run, once its input is all in: drains, flush timeouts,
        deferred messages coming due, 1.2 s of heartbeats and in-flight timeouts."""
        clock.advance(0)
        for _ in range(12):
            clock.advance(0.1)
            node.scan_queues()

    def state(self, node, conns) -> tuple:
        """What the node holds (messages queued, deferred, in flight, per topic and channel) and
        what each connection negotiated and counted."""
        topics = []
        for name, topic in sorted(node.topics.items()):
            channels = [(cname, list(ch.queue.memory), list(ch.deferred), len(ch.in_flight), ch.message_count,
                         ch.requeue_count, ch.timeout_count, ch.dropped_count)
                        for cname, ch in sorted(topic.channels.items())]
            topics.append((name, topic.message_count, topic.message_bytes, topic.dropped_count, list(topic.queue.memory),
                           list(topic.held_deferred), channels))
        clients = [(p.state, p.ready_count, p.in_flight_count, p.message_count, p.finish_count, p.requeue_count,
                    p.timeout_count, sorted(p.pub_counts.items()), p.client_id, p.hostname, p.user_agent,
                    p.heartbeat_interval, p.output_buffer_size, p.output_buffer_timeout, p.msg_timeout, p.closed)
                   for p in (conn.client for conn in conns)]
        return topics, clients


class ChunkingPropertyTests(ParserPropertyBase):
    def run_session(self, chunks, observe: bool):
        """Feed `chunks` (magic included) to a fresh node's connection, with another connection
        subscribed to topic t (channel obs) if `observe`; returns everything there is to compare."""
        node, clock = self.fresh_node()
        observer = None
        if observe:
            observer = Conn(node, 5000).magic()
            observer.subscribe(channel=b"obs", rdy=1000)
        conn = Conn(node, 4000)
        for chunk in chunks:
            conn.send(chunk)
        self.settle(node, clock)
        self.assertNoTracebacks()
        frames = strict_frames(conn.transport.value())
        observed = strict_frames(observer.transport.value()) if observer else None
        conns = [conn] + ([observer] if observer else [])
        return {
            # a message may go out before or after answers to commands in the same chunk (the pump
            # runs at a chunk's end; a publish ending a chunk is answered before its messages are
            # queued): each kind keeps its order, the two are compared apart
            "answers": [f for f in frames if f[0] != MESSAGE],
            "messages": [f for f in frames if f[0] == MESSAGE],
            "closed": conn.closed,
            "observer": observed,
            "state": self.state(node, conns),
        }

    @settings(max_examples=80, deadline=None, suppress_health_check=SLOW_IS_FINE)
    @given(session=sessions(), observe=st.booleans(), data=st.data())
    def test_any_chunking_and_line_endings_parse_to_the_same_commands(self, session, observe, data):
        """A stream fed whole with bare newlines, and the same commands with "\\n" or "\\r\\n" as
        drawn, in pieces cut anywhere: the same answers and messages in the same order, and the
        same messages queued, deferred and in flight."""
        commands, tail = session
        whole = MAGIC_V2 + session_bytes(commands, tail, endings=False)
        marks = []
        stream = MAGIC_V2 + session_bytes(commands, tail, marks=marks)
        chunks = data.draw(chunkings(stream, [len(MAGIC_V2) + mark for mark in marks]), label="chunks")
        reference = self.run_session([whole], observe)
        chunked = self.run_session(chunks, observe)
        self.assertEqual(chunked, reference)

        # and the comparison means something: every command was read and answered as nsqd does,
        # the closing one last, and every message published
        answers = [(kind, text[:1] if text[:1] == b"{" else text)
                   for kind, text in reference["answers"] if text != b"_heartbeat_"]
        self.assertEqual(reference["closed"], tail is not None, answers)
        if tail is not None:
            kind, text = answers.pop()
            self.assertEqual((kind, text.split(b" ")[0] in FATAL_CODES), (ERROR, True), text)
        self.assertEqual(answers, expected_answers(commands))
        published = 0
        for line, _, payload in commands:
            name = line.split(b" ")[0]
            if name in (b"PUB", b"DPUB"):
                published += 1
            elif name == b"MPUB":
                published += len(decode_mpub(payload, PROP_MAX_MSG_SIZE, PROP_MAX_BODY_SIZE))
        pub_counts = reference["state"][1][0][7]  # the session connection's, as (topic, count)
        self.assertEqual(sum(count for _, count in pub_counts), published)


#: command-like garbage: the protocol's words with parameters right and wrong (names, numbers, IDs,
#: any bytes, any UTF-8), publishes with bodies whose sizes are right or wrong, and loose bytes
WORDS = st.sampled_from([b"PUB", b"SUB", b"RDY", b"MPUB", b"DPUB", b"FIN", b"REQ", b"TOUCH", b"CLS", b"NOP",
                         b"AUTH", b"IDENTIFY", b"pub", b"", b"FIN0123456789abcdef"])
BODY_WORDS = st.sampled_from([b"PUB", b"MPUB", b"DPUB", b"IDENTIFY", b"AUTH"])
PARAMS = st.one_of(
    st.sampled_from([b"t", b"c", b"t#ephemeral", b"bad!", b"", b"0", b"1", b"-1", b"2500", b"2501", b"3600001",
                     b"99999999999999999999", b"0123456789abcdef", b"0123456789abcde", b"a" * 65]),
    st.binary(max_size=6),
    st.text(max_size=4).map(lambda t: t.encode("utf-8")))
ENDINGS = st.sampled_from([b"\n", b"\r\n", b"\n", b"", b"\r"])
LINES = st.tuples(WORDS, st.lists(PARAMS, max_size=3), ENDINGS).map(lambda t: b" ".join([t[0]] + t[1]) + t[2])
SIZED = st.one_of(
    st.binary(max_size=40).map(sized),
    IDENTIFY_BODIES.map(sized),
    st.sampled_from([b"{}", b"[]", b"null", b'{"heartbeat_interval": -1}', b'{"msg_timeout": 1}', b"{"]).map(sized),
    st.lists(st.binary(max_size=8), max_size=3).map(mpub_body).map(sized),
    st.integers(-2 ** 31, 2 ** 31 - 1).map(lambda n: struct.pack(">l", n)),
    st.integers(0, 40).map(lambda n: struct.pack(">l", n)))
WITH_BODIES = st.tuples(BODY_WORDS, st.lists(PARAMS, max_size=2), ENDINGS, SIZED).map(
    lambda t: b" ".join([t[0]] + t[1]) + t[2] + t[3])
SOUP = st.lists(st.one_of(LINES, WITH_BODIES, SIZED, st.binary(max_size=8)), min_size=1, max_size=10).map(b"".join)


@st.composite
def mutated_sessions(draw):
    """A session (see sessions) with one word of a line replaced or added (any bytes or UTF-8 as
    well as the protocol's names and numbers), and with a few bytes overwritten, cut out or put in."""
    commands, tail = draw(sessions())
    if commands and draw(st.booleans()):
        i = draw(st.integers(0, len(commands) - 1))
        line, ending, payload = commands[i]
        words = line.split(b" ")
        at = draw(st.integers(0, len(words)))
        words[at:at + 1] = [draw(PARAMS)]
        commands = commands[:i] + [(b" ".join(words), ending, payload)] + commands[i + 1:]
    return draw(mutations(session_bytes(commands, tail)))


GARBAGE = st.one_of(st.binary(max_size=300), SOUP, SOUP, mutated_sessions())


class ArbitraryBytesPropertyTests(ParserPropertyBase):
    def check_outcome(self, conn, more=b"junk after\n"):
        """Only whole frames of known kinds; open with no fatal error, or closed right after one
        (nothing written after it, nothing more read); returns the frames."""
        frames = strict_frames(conn.transport.value())
        errors = [text.split(b" ")[0] for kind, text in frames if kind == ERROR]
        self.assertTrue(set(errors) <= NON_FATAL_CODES | FATAL_CODES, frames)
        if conn.closed:
            self.assertTrue(frames, "closed without an error frame")
            kind, text = frames[-1]
            self.assertEqual(kind, ERROR, frames)
            self.assertIn(text.split(b" ")[0], FATAL_CODES, frames)
            errors = errors[:-1]
            conn.transport.clear()
            conn.send(more)
            self.assertEqual(conn.transport.value(), b"")
        self.assertTrue(set(errors) <= NON_FATAL_CODES, frames)
        return frames

    def check_node_serves(self, node):
        other = Conn(node, 4999).magic()
        other.command(b"PUB probe", b"probe")
        self.assertEqual(strict_frames(other.transport.value()), [(RESPONSE, b"OK")])
        self.assertFalse(other.closed)

    def feed(self, chunks):
        node, clock = self.fresh_node()
        conn = Conn(node, 4000)
        for chunk in chunks:
            conn.send(chunk)
        self.assertNoTracebacks()
        return node, conn

    @settings(max_examples=150, deadline=None, suppress_health_check=SLOW_IS_FINE)
    @given(garbage=GARBAGE, data=st.data())
    def test_arbitrary_bytes_after_the_magic_end_in_an_error_frame_or_a_close(self, garbage, data):
        """Any bytes after the magic (random, command-like, or a session slightly broken), in any
        pieces: nothing raised, no traceback logged, only whole frames; the connection open with
        no fatal error, or closed right after one; another connection served as before. And where
        the pieces end changes no answer (messages aside: see sessions), nor whether it closed."""
        stream = MAGIC_V2 + garbage
        chunks = data.draw(chunkings(stream), label="chunks")
        node, conn = self.feed(chunks)
        frames = self.check_outcome(conn)
        self.assertNoTracebacks()
        self.check_node_serves(node)
        if len(chunks) > 1:
            _, whole = self.feed([stream])
            self.assertEqual(([f for f in frames if f[0] != MESSAGE], conn.closed),
                             ([f for f in strict_frames(whole.transport.value()) if f[0] != MESSAGE], whole.closed))

    @settings(max_examples=40, deadline=None, suppress_health_check=SLOW_IS_FINE)
    @given(garbage=GARBAGE, data=st.data())
    def test_arbitrary_bytes_without_the_magic_are_refused(self, garbage, data):
        """Four bytes that are not the magic: E_BAD_PROTOCOL and a close, whatever follows; fewer:
        nothing yet. Nothing raised or logged, and another connection served."""
        chunks = data.draw(chunkings(garbage), label="chunks")
        node, conn = self.feed(chunks)
        frames = self.check_outcome(conn)
        if len(garbage) >= 4 and garbage[:4] != MAGIC_V2:
            self.assertEqual((frames, conn.closed), ([(ERROR, b"E_BAD_PROTOCOL")], True))
        elif len(garbage) < 4:
            self.assertEqual((frames, conn.closed), ([], False))
        self.assertNoTracebacks()
        self.check_node_serves(node)


@st.composite
def publishes(draw):
    """The magic, a publish whose body is anything up to the limit (the limit itself included),
    and maybe a second command right behind it; with where its parts start, the bodies
    published, in the order a channel then holds them (a DPUB's comes due after the PUB behind
    it), and the number of OKs due."""
    kind = draw(st.sampled_from([b"PUB", b"DPUB", b"MPUB"]))
    limit = PROP_MAX_MSG_SIZE
    one = st.one_of(st.binary(min_size=1, max_size=300), st.binary(min_size=limit, max_size=limit),
                    st.integers(1, limit).map(lambda n: bytes(range(256)) * (n // 256) + bytes(range(n % 256))))
    if kind == b"MPUB":
        bodies = draw(st.lists(one, min_size=1, max_size=3))
        line, payload = b"MPUB t", mpub_body(bodies)
    else:
        bodies = [draw(one)]
        line, payload = (b"PUB t" if kind == b"PUB" else b"DPUB t 100"), bodies[0]
    after = draw(st.sampled_from([b"", b"NOP\n", b"PUB t\n" + sized(b"next")]))
    # where the size, the body (MPUB: each inner size and body) and what follows start
    size_at = len(MAGIC_V2) + len(line) + 1
    marks = [size_at, size_at + 4, size_at + 4 + len(payload)]
    if kind == b"MPUB":
        pos = size_at + 8
        for one_body in bodies:
            marks.extend((pos, pos + 4))
            pos += 4 + len(one_body)
    oks = 1
    if after.startswith(b"PUB"):
        bodies = [b"next"] + bodies if kind == b"DPUB" else bodies + [b"next"]
        oks = 2
    return MAGIC_V2 + line + b"\n" + sized(payload) + after, marks, bodies, oks


class BodyChunkingPropertyTests(ParserPropertyBase):
    @settings(max_examples=50, deadline=None, suppress_health_check=SLOW_IS_FINE)
    @given(publish=publishes(), data=st.data())
    def test_a_declared_body_in_any_chunking_is_read_as_whole(self, publish, data):
        """PUB, DPUB and MPUB bodies up to the limit, cut anywhere (inside the size too): each
        answered OK once, and the channel holds the same messages as when the stream came whole."""
        stream, marks, bodies, oks = publish
        runs = []
        for chunks in ([stream], data.draw(chunkings(stream, marks), label="chunks")):
            node, clock = self.fresh_node()
            channel = node.get_topic("t").get_channel("c")
            conn = Conn(node, 4000)
            for chunk in chunks:
                conn.send(chunk)
            self.settle(node, clock)
            self.assertNoTracebacks()
            self.assertEqual((strict_frames(conn.transport.value()), conn.closed), ([(RESPONSE, b"OK")] * oks, False))
            self.assertEqual([body(message) for message in queued(channel.queue.memory)], bodies)
            runs.append(list(channel.queue.memory))
        self.assertEqual(runs[0], runs[1])
