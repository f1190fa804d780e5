"""The HTTP API (nsqtx.http_api and the http_params, http_responses and http_site modules beside it) and
the stats it serves (nsqtx.stats), against Go nsqd 1.3's http.go.

Requests go in-process: StubTreq over the site the node itself listens with (taken from the fake
reactor's listenTCP call), or raw HTTP bytes into that site's protocol when the test is about the
wire (chunked bodies, undecodable paths). One test goes over a real socket.
"""
from __future__ import annotations

import gc
import json
import socket
import struct
import sys
import time

import treq
from treq.testing import StubTreq
from twisted.internet import defer, reactor as global_reactor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import HTTPConnectionPool

from nsqtx import log as nsqlog
from nsqtx.disk_worker import InlineWorker
from nsqtx.diskqueue import DiskQueue
from nsqtx.http_api import make_site
from nsqtx.node import NSQD
from nsqtx.options import Options
from tests.support import (MESSAGE, RESPONSE, V1_HEADER, Conn, HTTPTestMixin, body as message_body, data_dir, message_id,
                           mpub_body, parse_http_response, queued)

START = 1000.0


class APITestCase(HTTPTestMixin, TestCase):
    options = {}

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.clock.advance(START)
        options = dict(tcp_address="127.0.0.1:4150", http_address="127.0.0.1:4151", data_path=data_dir(self))
        options.update(self.options)
        self.node = NSQD(Options(**options), reactor=self.clock, disk_worker=InlineWorker())
        self.node.startService()
        self.addCleanup(self.stop_node)
        # PUT /config/log_level changes the process-wide level: put it back
        self.addCleanup(nsqlog.set_log_level, "info")
        self.serve_http(self.clock, 4151)

    def stop_node(self):
        """Stop the node, which frees its data path's lock, without waiting for its clients: on
        StringTransports they never go."""
        self.node.stopService()

    # -- node helpers

    def consumer(self, topic=b"t", channel=b"c", rdy=None, port=4000, **identify) -> Conn:
        conn = Conn(self.node, port).magic()
        if identify:
            conn.identify(**identify)
        conn.subscribe(topic, channel, rdy)
        conn.frames()
        return conn

    def bodies(self, queue):
        return [message_body(data) for data in queued(queue)]

    def stats(self, query: str = "") -> dict:
        response = self.get("/stats?format=json" + query)
        self.assertEqual(response.code, 200)
        return response.json()


def chunked(path: bytes, chunks) -> bytes:
    """A POST whose body is sent chunked, i.e. without a Content-Length."""
    out = [b"POST " + path + b" HTTP/1.1\r\nHost: nsqd.test\r\nConnection: close\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n"]
    for chunk in chunks:
        out.append(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    out.append(b"0\r\n\r\n")
    return b"".join(out)


# -- /ping, /info


class PingTests(APITestCase):
    def test_healthy_node_answers_plain_ok(self):
        response = self.get("/ping")
        self.assertEqual((response.code, response.body), (200, b"OK"))
        self.assertEqual(response.headers[b"content-type"], b"text/plain; charset=utf-8")
        # PlainText routes are not V1: no X-NSQ-Content-Type
        self.assertNotIn(b"x-nsq-content-type", response.headers)

    def test_unhealthy_node_answers_500_with_the_health_text(self):
        self.node.health.failed(IOError("disk full"))
        response = self.get("/ping")
        self.assertEqual((response.code, response.body), (500, b"NOK - disk full"))
        self.assertNotIn(b"x-nsq-content-type", response.headers)


class InfoTests(APITestCase):
    options = dict(broadcast_address="nsq-1.example", max_heartbeat_interval=30.5,
                   max_output_buffer_size=12345, max_output_buffer_timeout=0.25, max_deflate_level=4)

    def test_fields_values_and_order_are_nsqds(self):
        response = self.get("/info")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers[b"content-type"], b"application/json; charset=utf-8")
        self.assertEqual(response.headers[b"x-nsq-content-type"], V1_HEADER)
        info = response.json()
        self.assertEqual(list(info), [
            "version", "broadcast_address", "hostname", "http_port", "tcp_port", "start_time",
            "max_heartbeat_interval", "max_output_buffer_size", "max_output_buffer_timeout",
            "max_deflate_level", "topology_zone", "topology_region"])
        self.assertEqual(info, {
            "version": "1.3.0",
            "broadcast_address": "nsq-1.example",
            "hostname": socket.gethostname(),
            "http_port": 4151,
            "tcp_port": 4150,
            "start_time": 1000,
            # Go's time.Duration marshals as integer nanoseconds
            "max_heartbeat_interval": 30500000000,
            "max_output_buffer_size": 12345,
            "max_output_buffer_timeout": 250000000,
            "max_deflate_level": 4,
            "topology_zone": "",
            "topology_region": "",
        })

    def test_ports_are_minus_one_while_not_listening(self):
        node = NSQD(Options(data_path=data_dir(self)), reactor=MemoryReactorClock(), disk_worker=InlineWorker())
        self.http = StubTreq(make_site(node).resource)
        info = self.get("/info").json()
        self.assertEqual((info["tcp_port"], info["http_port"], info["start_time"]), (-1, -1, 0))


# -- /pub


class PubTests(APITestCase):
    options = dict(max_msg_size=10, max_body_size=40, max_req_timeout=60.0)

    def test_pub_queues_the_body_on_the_topic(self):
        self.assertOK(self.post("/pub?topic=t", b"hello"))
        topic = self.node.topics["t"]
        self.assertEqual(self.bodies(topic.queue.memory), [b"hello"])
        self.assertEqual((topic.message_count, topic.message_bytes), (1, 5))
        self.assertEqual(self.post("/pub?topic=t", b"again").headers[b"content-type"],
                         b"text/plain; charset=utf-8")

    def test_pub_reaches_a_subscribed_consumer(self):
        conn = self.consumer(rdy=1)
        self.assertOK(self.post("/pub?topic=t", b"hi"))
        self.assertEqual([body for _, _, body in conn.messages()], [b"hi"])

    def test_message_gets_an_id_and_the_publish_time(self):
        self.post("/pub?topic=t", b"a")
        self.post("/pub?topic=t", b"b")
        first, second = queued(self.node.topics["t"].queue.memory)
        self.assertEqual(len(message_id(first)), 16)
        self.assertNotEqual(message_id(first), message_id(second))
        self.assertEqual(struct.unpack(">qH", first[:10]), (int(START * 1e9), 0))

    def test_body_of_exactly_max_msg_size_is_accepted(self):
        self.assertOK(self.post("/pub?topic=t", b"x" * 10))

    def test_declared_length_over_max_msg_size_is_413(self):
        self.assertError(self.post("/pub?topic=t", b"x" * 11), 413, "MSG_TOO_BIG")
        self.assertNotIn("t", self.node.topics)

    def test_chunked_body_over_max_msg_size_is_413(self):
        response = self.raw(chunked(b"/pub?topic=t", [b"x" * 6, b"x" * 6]))
        self.assertError(response, 413, "MSG_TOO_BIG")
        response = self.raw(chunked(b"/pub?topic=t", [b"x" * 6, b"x" * 4]))
        self.assertEqual((response.code, response.body), (200, b"OK"))
        self.assertEqual(self.bodies(self.node.topics["t"].queue.memory), [b"x" * 10])

    def test_empty_body_is_400_before_the_topic_is_looked_at(self):
        self.assertError(self.post("/pub?topic=t", b""), 400, "MSG_EMPTY")
        self.assertError(self.post("/pub", b""), 400, "MSG_EMPTY")
        self.assertNotIn("t", self.node.topics)

    def test_missing_topic(self):
        self.assertError(self.post("/pub", b"x"), 400, "MISSING_ARG_TOPIC")
        self.assertError(self.post("/pub?topics=t", b"x"), 400, "MISSING_ARG_TOPIC")

    def test_invalid_topic(self):
        for query in ("topic=", "topic", "topic=bad!name", "topic=" + "x" * 65, "topic=a%20b"):
            self.assertError(self.post("/pub?" + query, b"x"), 400, "INVALID_TOPIC")
        self.assertEqual(self.node.topics, {})

    def test_first_topic_value_counts(self):
        self.assertOK(self.post("/pub?topic=a&topic=b", b"x"))
        self.assertEqual(list(self.node.topics), ["a"])

    def test_query_go_cannot_parse_is_400_invalid_request(self):
        for query in ("topic=t%zz", "topic=t%4", "topic=t;x=1", "topic=t&%=1"):
            self.assertError(self.post("/pub?" + query, b"x"), 400, "INVALID_REQUEST")
        self.assertEqual(self.node.topics, {})

    def test_body_is_never_parsed_as_a_form(self):
        body = b"--zz\r\nbad"
        response = self.raw(b"POST /pub?topic=t HTTP/1.1\r\nHost: nsqd.test\r\nConnection: close\r\n"
                            b"Content-Type: multipart/form-data\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.assertEqual((response.code, response.body), (200, b"OK"))
        self.assertEqual(self.bodies(self.node.topics["t"].queue.memory), [body])

    def test_responses_carry_their_length(self):
        response = self.raw(b"POST /pub?topic=t HTTP/1.1\r\nHost: nsqd.test\r\nContent-Length: 1\r\n\r\nx")
        self.assertEqual((response.headers[b"content-length"], response.body), (b"2", b"OK"))
        self.assertNotIn(b"transfer-encoding", response.headers)

    def test_escaped_topic_name_is_decoded(self):
        self.assertOK(self.post("/pub?topic=%74op%2Eic", b"x"))
        self.assertEqual(list(self.node.topics), ["top.ic"])

    def test_defer_holds_the_message_for_that_many_milliseconds(self):
        self.node.get_topic("t").get_channel("c")
        self.assertOK(self.post("/pub?topic=t&defer=1500", b"later"))
        channel = self.node.topics["t"].channels["c"]
        self.assertEqual((channel.depth(), len(channel.deferred)), (0, 1))
        self.clock.advance(1.4)
        self.assertEqual(channel.depth(), 0)
        self.clock.advance(0.2)
        self.assertEqual((self.bodies(channel.queue.memory), len(channel.deferred)), ([b"later"], 0))

    def test_defer_applies_to_every_channel(self):
        topic = self.node.get_topic("t")
        first, second = topic.get_channel("a"), topic.get_channel("b")
        self.assertOK(self.post("/pub?topic=t&defer=1000", b"later"))
        self.assertEqual([(c.depth(), len(c.deferred)) for c in (first, second)], [(0, 1), (0, 1)])

    def test_defer_bounds(self):
        self.node.get_topic("t").get_channel("c")
        self.assertOK(self.post("/pub?topic=t&defer=0", b"x"))
        self.assertOK(self.post("/pub?topic=t&defer=60000", b"x"))
        self.assertOK(self.post("/pub?topic=t&defer=%2B5", b"x"))
        channel = self.node.topics["t"].channels["c"]
        self.assertEqual((channel.depth(), len(channel.deferred)), (1, 2))

    def test_invalid_defer_is_400_and_queues_nothing(self):
        for value in ("60001", "-1", "abc", "1.5", "", "%205", "1_000", "99999999999999999999"):
            self.assertError(self.post("/pub?topic=t&defer=" + value, b"x"), 400, "INVALID_DEFER")
        # nsqd has created the topic by the time it looks at defer
        self.assertEqual((self.node.topics["t"].depth(), self.node.topics["t"].message_count), (0, 0))

    def test_http_publishing_is_no_producer_in_stats(self):
        self.post("/pub?topic=t", b"x")
        self.assertIsNone(self.stats()["producers"])


class PubQueueFullTests(APITestCase):
    options = dict(mem_queue_size=1)

    def test_ephemeral_drops_beyond_memory_are_counted(self):
        self.node.get_topic("e#ephemeral").get_channel("c#ephemeral")
        self.assertOK(self.post("/mpub?topic=e%23ephemeral", b"1\n2\n3"))
        [topic] = self.stats()["topics"]
        self.assertEqual((topic["channels"][0]["depth"], topic["channels"][0]["dropped_count"]), (1, 2))
        self.node.get_topic("held#ephemeral")
        self.assertOK(self.post("/mpub?topic=held%23ephemeral", b"1\n2"))
        held = [t for t in self.stats()["topics"] if t["topic_name"] == "held#ephemeral"][0]
        self.assertEqual((held["depth"], held["backend_depth"], held["dropped_count"]), (1, 0, 1))

    def fail_disk_writes(self):
        def disk_full(queue, records):
            raise OSError(28, "No space left on device")

        self.patch(DiskQueue, "put", disk_full)

    def test_beyond_memory_goes_to_disk(self):
        self.assertOK(self.post("/pub?topic=t", b"1"))
        self.assertOK(self.post("/mpub?topic=t", b"2\n3"))
        topic = self.node.topics["t"]
        self.assertEqual((topic.depth(), topic.backend_depth()), (3, 2))
        self.assertEqual(self.stats()["topics"][0]["backend_depth"], 2)

    def test_disk_failure_is_503_pub_failed_and_unhealthy(self):
        self.assertOK(self.post("/pub?topic=t", b"1"))
        self.fail_disk_writes()
        self.assertError(self.post("/pub?topic=t", b"2"), 503, "PUB_FAILED")
        self.assertEqual(self.bodies(self.node.topics["t"].queue.memory), [b"1"])
        self.assertEqual(self.get("/ping").code, 500)
        self.assertIn("No space left on device", self.stats()["health"])

    def test_disk_failure_refuses_the_mpub(self):
        self.fail_disk_writes()
        self.assertError(self.post("/mpub?topic=t", b"1\n2"), 503, "MPUB_FAILED")

    def test_exiting_topic_is_503_exiting(self):
        self.node.get_topic("t").close()
        self.assertError(self.post("/pub?topic=t", b"1"), 503, "EXITING")
        self.assertError(self.post("/mpub?topic=t", b"1"), 503, "EXITING")


# -- /mpub


class MPubTests(APITestCase):
    options = dict(max_msg_size=10, max_body_size=40)

    def published(self):
        return self.bodies(self.node.topics["t"].queue.memory)

    def test_text_is_one_message_per_line_skipping_empty_lines(self):
        self.assertOK(self.post("/mpub?topic=t", b"one\ntwo\n\nthree\n"))
        self.assertEqual(self.published(), [b"one", b"two", b"three"])
        self.assertEqual(self.node.topics["t"].message_count, 3)

    def test_only_the_newline_is_stripped(self):
        self.assertOK(self.post("/mpub?topic=t", b"a\r\n b \nc"))
        self.assertEqual(self.published(), [b"a\r", b" b ", b"c"])

    def test_empty_body_publishes_nothing(self):
        self.assertOK(self.post("/mpub?topic=t", b""))
        self.assertOK(self.post("/mpub?topic=t", b"\n\n"))
        self.assertEqual(self.published(), [])

    def test_text_line_over_max_msg_size_refuses_everything(self):
        self.assertError(self.post("/mpub?topic=t", b"ok\n" + b"x" * 11 + b"\nok"), 413, "MSG_TOO_BIG")
        self.assertEqual(self.published(), [])
        self.assertOK(self.post("/mpub?topic=t", b"x" * 10 + b"\n"))

    def test_body_of_exactly_max_body_size_is_accepted(self):
        body = b"x" * 9 + b"\n" + b"x" * 10 + b"\n" + b"x" * 10 + b"\n\n\n" + b"x" * 6
        self.assertEqual(len(body), 40)
        self.assertOK(self.post("/mpub?topic=t", body))
        self.assertEqual(len(self.published()), 4)

    def test_declared_length_over_max_body_size_is_413(self):
        self.assertError(self.post("/mpub?topic=t", b"x\n" * 21), 413, "BODY_TOO_BIG")
        self.assertNotIn("t", self.node.topics)

    def test_chunked_body_over_max_body_size_is_413(self):
        response = self.raw(chunked(b"/mpub?topic=t", [b"abc\n" * 5, b"abc\n" * 6]))
        self.assertError(response, 413, "BODY_TOO_BIG")
        self.assertEqual(self.published(), [])

    def test_missing_and_invalid_topic(self):
        self.assertError(self.post("/mpub", b"x"), 400, "MISSING_ARG_TOPIC")
        self.assertError(self.post("/mpub?topic=a/b", b"x"), 400, "INVALID_TOPIC")
        self.assertError(self.post("/mpub?topic=t&x=%", b"x"), 400, "INVALID_REQUEST")

    def test_binary(self):
        for value in ("true", "1"):
            self.assertOK(self.post("/mpub?topic=t&binary=" + value, mpub_body([b"a\nb", b"c"])))
        self.assertEqual(self.published(), [b"a\nb", b"c"] * 2)

    def test_unrecognised_binary_value_means_binary(self):
        self.assertOK(self.post("/mpub?topic=t&binary=non_normalized", mpub_body([b"x", b"y"])))
        self.assertEqual(self.published(), [b"x", b"y"])

    def test_binary_false_means_text(self):
        self.assertOK(self.post("/mpub?topic=t&binary=0", b"x\ny"))
        self.assertOK(self.post("/mpub?topic=t&binary=false", b"z"))
        self.assertEqual(self.published(), [b"x", b"y", b"z"])

    def test_binary_ignores_bytes_after_the_last_message(self):
        self.assertOK(self.post("/mpub?topic=t&binary=true", mpub_body([b"x"]) + b"junk"))
        self.assertEqual(self.published(), [b"x"])

    def test_bad_binary_bodies_are_413_with_the_protocol_code(self):
        cases = [
            (b"\x00\x00", "BAD_BODY"),  # no count
            (struct.pack(">l", 0), "BAD_BODY"),  # count 0
            (struct.pack(">l", -1), "BAD_BODY"),
            (struct.pack(">l", 8), "BAD_BODY"),  # more than (max_body - 4) / 5 messages
            (struct.pack(">l", 2) + struct.pack(">l", 1) + b"x", "BAD_MESSAGE"),  # second size missing
            (struct.pack(">ll", 1, 0), "BAD_MESSAGE"),  # empty message
            (struct.pack(">ll", 1, 11) + b"x" * 11, "BAD_MESSAGE"),  # over max_msg_size
            (struct.pack(">ll", 1, 5) + b"abc", "BAD_MESSAGE"),  # body cut short
        ]
        for body, code in cases:
            self.assertError(self.post("/mpub?topic=t&binary=true", body), 413, code)
        self.assertEqual(self.published(), [])

    def test_binary_body_over_max_body_size_is_413(self):
        body = mpub_body([b"x" * 10] * 3)
        self.assertEqual(len(body), 46)
        self.assertError(self.post("/mpub?topic=t&binary=true", body), 413, "BODY_TOO_BIG")
        self.assertError(self.raw(chunked(b"/mpub?topic=t&binary=true", [body])), 413, "BODY_TOO_BIG")


class BoundedBodyTests(APITestCase):
    options = dict(max_msg_size=100, max_body_size=1000)

    def test_site_stores_at_most_max_body_size_plus_one(self):
        proto = self.site.buildProtocol(IPv4Address("TCP", "10.0.0.9", 5000))
        transport = StringTransport()
        proto.makeConnection(transport)
        request = chunked(b"/mpub?topic=t", [b"x" * 700] * 10)
        proto.dataReceived(request[:-5])
        # Site's protocol wraps the HTTPChannel that holds the request being received
        [receiving] = proto._channel.requests
        self.assertEqual(receiving.content.tell(), 1001)
        proto.dataReceived(request[-5:])
        self.assertError(parse_http_response(transport.value()), 413, "BODY_TOO_BIG")
        proto.connectionLost(Failure(ConnectionDone()))


# -- topics and channels


class TopicTests(APITestCase):
    def test_create(self):
        self.assertEmpty200(self.post("/topic/create?topic=t"))
        self.assertIn("t", self.node.topics)
        self.assertEmpty200(self.post("/topic/create?topic=t"))
        self.assertError(self.post("/topic/create"), 400, "MISSING_ARG_TOPIC")
        self.assertError(self.post("/topic/create?topic=b@d"), 400, "INVALID_TOPIC")
        self.assertEqual(list(self.node.topics), ["t"])

    def test_delete(self):
        self.node.get_topic("t").get_channel("c")
        self.assertError(self.post("/topic/delete"), 400, "MISSING_ARG_TOPIC")
        self.assertError(self.post("/topic/delete?topic=other"), 404, "TOPIC_NOT_FOUND")
        # nsqd does not check the name here
        self.assertError(self.post("/topic/delete?topic=b@d"), 404, "TOPIC_NOT_FOUND")
        self.assertEmpty200(self.post("/topic/delete?topic=t"))
        self.assertEqual(self.node.topics, {})
        self.assertEqual(self.stats()["topics"], [])

    def test_delete_disconnects_the_topics_consumers(self):
        conn = self.consumer()
        self.assertEmpty200(self.post("/topic/delete?topic=t"))
        self.assertTrue(conn.closed)

    def test_empty(self):
        self.post("/mpub?topic=t", b"1\n2")
        self.assertError(self.post("/topic/empty"), 400, "MISSING_ARG_TOPIC")
        self.assertError(self.post("/topic/empty?topic=t$"), 400, "INVALID_TOPIC")
        self.assertError(self.post("/topic/empty?topic=nope"), 404, "TOPIC_NOT_FOUND")
        self.assertEqual(self.node.topics["t"].depth(), 2)
        self.assertEmpty200(self.post("/topic/empty?topic=t"))
        self.assertEqual(self.node.topics["t"].depth(), 0)
        self.assertEqual(self.stats()["topics"][0]["depth"], 0)

    def test_pause_holds_messages_and_unpause_releases_them(self):
        channel = self.node.get_topic("t").get_channel("c")
        self.assertError(self.post("/topic/pause"), 400, "MISSING_ARG_TOPIC")
        self.assertError(self.post("/topic/pause?topic=nope"), 404, "TOPIC_NOT_FOUND")
        self.assertEmpty200(self.post("/topic/pause?topic=t"))
        self.assertTrue(self.node.topics["t"].paused)
        self.post("/pub?topic=t", b"held")
        self.assertEqual((self.node.topics["t"].depth(), channel.depth()), (1, 0))
        topic_stats = self.stats()["topics"][0]
        self.assertEqual((topic_stats["paused"], topic_stats["depth"]), (True, 1))

        self.assertError(self.post("/topic/unpause"), 400, "MISSING_ARG_TOPIC")
        self.assertError(self.post("/topic/unpause?topic=nope"), 404, "TOPIC_NOT_FOUND")
        self.assertEmpty200(self.post("/topic/unpause?topic=t"))
        self.assertFalse(self.node.topics["t"].paused)
        self.clock.advance(0)
        self.assertEqual(self.bodies(channel.queue.memory), [b"held"])
        self.assertFalse(self.stats()["topics"][0]["paused"])


class ChannelTests(APITestCase):
    def setUp(self):
        APITestCase.setUp(self)
        self.topic = self.node.get_topic("t")

    def test_argument_errors_are_go_s_topic_channel_args_codes(self):
        for route in ("create", "delete", "empty", "pause", "unpause"):
            path = "/channel/" + route
            self.assertError(self.post(path), 400, "MISSING_ARG_TOPIC")
            self.assertError(self.post(path + "?topic=b@d&channel=c"), 400, "INVALID_ARG_TOPIC")
            self.assertError(self.post(path + "?topic=t"), 400, "MISSING_ARG_CHANNEL")
            self.assertError(self.post(path + "?topic=t&channel=b@d"), 400, "INVALID_ARG_CHANNEL")
            self.assertError(self.post(path + "?topic=nope&channel=c"), 404, "TOPIC_NOT_FOUND")
            self.assertError(self.post(path + "?topic=t&channel=c;"), 400, "INVALID_REQUEST")
        self.assertEqual(list(self.node.topics), ["t"])
        self.assertEqual(self.topic.channels, {})

    def test_create(self):
        self.post("/pub?topic=t", b"waiting")
        self.assertEmpty200(self.post("/channel/create?topic=t&channel=c"))
        # the first channel takes what the topic held (on the next reactor turn)
        self.clock.advance(0)
        self.assertEqual(self.bodies(self.topic.channels["c"].queue.memory), [b"waiting"])
        self.assertEmpty200(self.post("/channel/create?topic=t&channel=c%23ephemeral"))
        self.assertEqual(sorted(self.topic.channels), ["c", "c#ephemeral"])
        self.assertEqual([c["channel_name"] for c in self.stats()["topics"][0]["channels"]],
                         ["c", "c#ephemeral"])

    def test_delete(self):
        self.topic.get_channel("c")
        self.assertError(self.post("/channel/delete?topic=t&channel=other"), 404, "CHANNEL_NOT_FOUND")
        self.assertEmpty200(self.post("/channel/delete?topic=t&channel=c"))
        self.assertEqual(self.topic.channels, {})
        self.assertError(self.post("/channel/delete?topic=t&channel=c"), 404, "CHANNEL_NOT_FOUND")

    def test_empty_drops_queued_and_in_flight_messages(self):
        conn = self.consumer(rdy=1)
        self.post("/mpub?topic=t", b"1\n2\n3")
        channel = self.topic.channels["c"]
        self.assertEqual((channel.depth(), len(channel.in_flight)), (2, 1))
        self.assertError(self.post("/channel/empty?topic=t&channel=other"), 404, "CHANNEL_NOT_FOUND")
        self.assertEmpty200(self.post("/channel/empty?topic=t&channel=c"))
        self.assertEqual((channel.depth(), len(channel.in_flight)), (0, 0))
        stats = self.stats()["topics"][0]["channels"][0]
        self.assertEqual((stats["depth"], stats["in_flight_count"]), (0, 0))
        self.assertFalse(conn.closed)

    def test_empty_with_messages_in_flight_frees_every_consumer_for_the_next_publish(self):
        """Emptying drops what was in flight to each consumer, so its RDY is whole again: the next
        publish is delivered, not held until the consumer reconnects."""
        first = self.consumer(rdy=2, port=4001, output_buffer_timeout=-1)
        second = self.consumer(rdy=2, port=4002, output_buffer_timeout=-1)
        self.post("/mpub?topic=t", b"1\n2\n3\n4")
        self.assertEqual((len(first.messages()), len(second.messages())), (2, 2))
        self.assertEmpty200(self.post("/channel/empty?topic=t&channel=c"))
        clients = self.stats()["topics"][0]["channels"][0]["clients"]
        self.assertEqual([client["in_flight_count"] for client in clients], [0, 0])
        self.post("/mpub?topic=t", b"5\n6\n7\n8")
        self.assertEqual(sorted(body for conn in (first, second) for _, _, body in conn.messages()),
                         [b"5", b"6", b"7", b"8"])

    def test_pause_stops_delivery_and_unpause_resumes_it(self):
        conn = self.consumer(rdy=5)
        self.assertError(self.post("/channel/pause?topic=t&channel=other"), 404, "CHANNEL_NOT_FOUND")
        self.assertEmpty200(self.post("/channel/pause?topic=t&channel=c"))
        channel = self.topic.channels["c"]
        self.assertTrue(channel.paused)
        self.post("/pub?topic=t", b"m")
        self.assertEqual(conn.messages(), [])
        self.assertTrue(self.stats()["topics"][0]["channels"][0]["paused"])

        self.assertError(self.post("/channel/unpause?topic=t&channel=other"), 404, "CHANNEL_NOT_FOUND")
        self.assertEmpty200(self.post("/channel/unpause?topic=t&channel=c"))
        self.assertFalse(channel.paused)
        self.clock.advance(1)  # the output buffer's flush timer
        self.assertEqual([body for _, _, body in conn.messages()], [b"m"])
        self.assertFalse(self.stats()["topics"][0]["channels"][0]["paused"])


# -- /stats


class StatsJSONTests(APITestCase):
    def test_empty_node_starts_as_go_s_test_expects(self):
        response = self.get("/stats?format=json")
        self.assertEqual(response.headers[b"content-type"], b"application/json; charset=utf-8")
        self.assertEqual(response.headers[b"x-nsq-content-type"], V1_HEADER)
        self.assertTrue(response.body.startswith(
            b'{"version":"1.3.0","health":"OK","start_time":1000,"topics":[],"memory":{'), response.body)
        self.assertTrue(response.body.endswith(b'},"producers":null}'), response.body)

    def test_topics_channels_and_clients(self):
        consumer = self.consumer(b"beta", b"ch", rdy=2, port=4000, client_id="c1", hostname="worker",
                                 user_agent="ua/1")
        self.post("/pub?topic=beta&defer=5000", b"later")
        self.node.get_topic("beta").get_channel("aa")
        producer = Conn(self.node, 4001).magic()
        producer.command(b"PUB beta", b"hello")
        producer.command(b"MPUB alpha", mpub_body([b"x", b"yy"]))
        self.assertEqual([kind for kind, _ in producer.frames()], [RESPONSE, RESPONSE])
        self.clock.advance(3)
        self.assertEqual([kind for kind, _ in consumer.frames()], [MESSAGE])

        stats = self.stats()
        self.assertEqual([t["topic_name"] for t in stats["topics"]], ["alpha", "beta"])
        alpha, beta = stats["topics"]
        no_latency = {"count": 0, "percentiles": None}
        self.assertEqual(alpha, {
            "topic_name": "alpha", "channels": [], "depth": 2, "backend_depth": 0, "message_count": 2,
            "message_bytes": 3, "paused": False, "dropped_count": 0, "e2e_processing_latency": no_latency})
        self.assertEqual(list(beta), ["topic_name", "channels", "depth", "backend_depth", "message_count",
                                      "message_bytes", "paused", "dropped_count", "e2e_processing_latency"])
        self.assertEqual((beta["depth"], beta["message_count"], beta["message_bytes"]), (0, 2, 10))
        aa, ch = beta["channels"]
        self.assertEqual(aa, {
            "channel_name": "aa", "depth": 1, "backend_depth": 0, "in_flight_count": 0, "deferred_count": 0,
            "message_count": 1, "requeue_count": 0, "timeout_count": 0, "dropped_count": 0, "client_count": 0,
            "clients": [], "paused": False, "e2e_processing_latency": no_latency})
        self.assertEqual(list(ch), list(aa))
        self.assertEqual((ch["depth"], ch["in_flight_count"], ch["deferred_count"], ch["client_count"],
                          ch["message_count"]), (0, 1, 1, 1, 2))
        client = ch["clients"][0]
        self.assertEqual(list(client), [
            "client_id", "hostname", "version", "remote_address", "state", "ready_count",
            "in_flight_count", "message_count", "finish_count", "requeue_count", "connect_ts",
            "sample_rate", "deflate", "snappy", "user_agent", "topology_zone", "topology_region", "tls",
            "tls_cipher_suite", "tls_version", "tls_negotiated_protocol",
            "tls_negotiated_protocol_is_mutual"])
        self.assertEqual(client, {
            "client_id": "c1", "hostname": "worker", "version": "V2", "remote_address": "10.0.0.1:4000",
            "state": 3, "ready_count": 2, "in_flight_count": 1, "message_count": 1, "finish_count": 0,
            "requeue_count": 0, "connect_ts": 1000, "sample_rate": 0, "deflate": False, "snappy": False,
            "user_agent": "ua/1", "topology_zone": "", "topology_region": "", "tls": False,
            "tls_cipher_suite": "", "tls_version": "", "tls_negotiated_protocol": "",
            "tls_negotiated_protocol_is_mutual": False})

        [producer_stats] = stats["producers"]
        self.assertEqual(producer_stats["remote_address"], "10.0.0.1:4001")
        self.assertEqual(producer_stats["state"], 0)
        self.assertEqual(producer_stats["pub_counts"], [{"topic": "alpha", "count": 2},
                                                        {"topic": "beta", "count": 1}])
        self.assertEqual(list(producer_stats)[17:19], ["pub_counts", "tls"])

    def test_counters_follow_fin_req_and_timeouts(self):
        conn = self.consumer(rdy=3, msg_timeout=1000)
        self.post("/mpub?topic=t", b"1\n2\n3")
        ids = [msg_id for _, msg_id, _ in conn.messages()]
        conn.command(b"FIN " + ids[0])
        conn.command(b"REQ " + ids[1] + b" 10000")
        self.clock.advance(1.5)  # the third message times out, and is delivered again
        channel = self.stats()["topics"][0]["channels"][0]
        self.assertEqual((channel["message_count"], channel["requeue_count"], channel["timeout_count"]),
                         (3, 1, 1))
        self.assertEqual((channel["depth"], channel["in_flight_count"], channel["deferred_count"]), (0, 1, 1))
        client = channel["clients"][0]
        self.assertEqual((client["finish_count"], client["requeue_count"], client["message_count"],
                          client["in_flight_count"]), (1, 1, 4, 1))

    def test_in_flight_count_keeps_what_a_gone_consumer_had_until_it_times_out(self):
        """A channel's in_flight_count is what is in flight, also to consumers that left (their
        messages time out later), not the sum over the consumers still connected."""
        staying = self.consumer(rdy=2, port=4001, msg_timeout=5000, output_buffer_timeout=-1)
        leaving = self.consumer(rdy=3, port=4002, msg_timeout=5000, output_buffer_timeout=-1)
        self.post("/mpub?topic=t", b"1\n2\n3\n4\n5")
        self.assertEqual((len(staying.messages()), len(leaving.messages())), (2, 3))
        leaving.lose()
        channel = self.stats()["topics"][0]["channels"][0]
        self.assertEqual((channel["in_flight_count"], channel["client_count"]), (5, 1))
        self.assertEqual(channel["clients"][0]["in_flight_count"], 2)
        self.clock.advance(5)
        # all five timed out; the consumer still there took two of them again
        channel = self.stats()["topics"][0]["channels"][0]
        self.assertEqual((channel["in_flight_count"], channel["depth"], channel["timeout_count"]), (2, 3, 5))

    def test_depth_counts_what_waits_on_disk(self):
        self.node.options.mem_queue_size = 2
        self.node.get_topic("t").get_channel("c")
        self.post("/mpub?topic=t", b"1\n2\n3\n4\n5")
        self.post("/mpub?topic=held", b"1\n2\n3")
        topics = self.stats()["topics"]
        held, t = topics
        channel = t["channels"][0]
        self.assertEqual((channel["depth"], channel["backend_depth"]), (5, 3))
        self.assertEqual((held["depth"], held["backend_depth"]), (3, 1))

    def test_include_clients_false(self):
        self.consumer()
        producer = Conn(self.node, 4001).magic()
        producer.command(b"PUB t", b"x")
        for value in ("false", "0"):
            stats = self.stats("&include_clients=" + value)
            channel = stats["topics"][0]["channels"][0]
            self.assertEqual((channel["clients"], channel["client_count"]), (None, 1))
            self.assertIsNone(stats["producers"])
        for value in ("true", "1", "yes", ""):
            stats = self.stats("&include_clients=" + value)
            self.assertEqual(len(stats["topics"][0]["channels"][0]["clients"]), 1)
            self.assertEqual(len(stats["producers"]), 1)

    def test_include_mem(self):
        self.assertIn("memory", self.stats())
        self.assertIn("memory", self.stats("&include_mem=true"))
        self.assertIn("memory", self.stats("&include_mem=maybe"))
        self.assertNotIn("memory", self.stats("&include_mem=false"))
        self.assertNotIn("memory", self.stats("&include_mem=0"))

    def test_topic_and_channel_filters(self):
        for topic, channel in (("a", "c1"), ("a", "c2"), ("b", "c1"), ("c", "c3")):
            self.node.get_topic(topic).get_channel(channel)
        names = lambda stats: [(t["topic_name"], [c["channel_name"] for c in t["channels"]])  # noqa: E731
                               for t in stats["topics"]]
        self.assertEqual(names(self.stats("&topic=a")), [("a", ["c1", "c2"])])
        self.assertEqual(names(self.stats("&channel=c1")), [("a", ["c1"]), ("b", ["c1"])])
        self.assertEqual(names(self.stats("&topic=a&channel=c2")), [("a", ["c2"])])
        self.assertEqual(names(self.stats("&topic=b&channel=c2")), [])
        # Go returns a nil topic list for a topic it does not have
        self.assertIsNone(self.stats("&topic=nope")["topics"])

    def test_producer_pub_counts_follow_the_topic_filter(self):
        self.node.get_topic("other")
        producer = Conn(self.node, 4001).magic()
        producer.command(b"PUB t", b"x")
        producer.command(b"PUB u", b"x")
        self.assertEqual(self.stats("&topic=t")["producers"][0]["pub_counts"], [{"topic": "t", "count": 1}])
        # still a producer, but with nothing published to this topic: pub_counts is left out
        self.assertNotIn("pub_counts", self.stats("&topic=other")["producers"][0])

    def test_health(self):
        self.node.health.failed("failed to persist metadata")
        self.assertEqual(self.stats()["health"], "NOK - failed to persist metadata")

    def test_strings_are_escaped_as_go_does(self):
        self.consumer(hostname="<a&b>\u2028")
        raw = self.get("/stats?format=json").body
        self.assertIn(b'"hostname":"\\u003ca\\u0026b\\u003e\\u2028"', raw)
        self.assertEqual(json.loads(raw)["topics"][0]["channels"][0]["clients"][0]["hostname"], "<a&b>\u2028")

    def test_stats_query_must_parse(self):
        self.assertError(self.get("/stats?format=json&topic=%G0"), 400, "INVALID_REQUEST")


class MemoryStatsTests(APITestCase):
    def memory(self):
        return self.stats()["memory"]

    def test_only_measurable_fields_are_reported(self):
        memory = self.memory()
        for never in ("heap_idle_bytes", "heap_released_bytes", "next_gc_bytes"):
            self.assertNotIn(never, memory)
        self.assertTrue(all(isinstance(value, int) for value in memory.values()), memory)

    def test_cpython_gc_runs_and_pauses(self):
        if not hasattr(sys, "getallocatedblocks"):
            raise SkipTest("CPython's gc statistics")
        before = self.memory()["gc_total_runs"]
        gc.collect()
        memory = self.memory()
        self.assertGreater(memory["gc_total_runs"], before)
        self.assertGreater(memory["heap_objects"], 0)
        # the site started timing collections; the one above was timed
        self.assertGreaterEqual(memory["gc_pause_usec_100"], memory["gc_pause_usec_99"])
        self.assertGreaterEqual(memory["gc_pause_usec_99"], memory["gc_pause_usec_95"])
        self.assertGreaterEqual(memory["gc_pause_usec_95"], 0)

    def test_heap_in_use_only_while_tracemalloc_traces(self):
        try:
            import tracemalloc
            if tracemalloc.is_tracing():
                raise SkipTest("tracemalloc already tracing")
            tracemalloc.start()
        except (ImportError, RuntimeError, NotImplementedError):
            raise SkipTest("no tracemalloc here")
        self.addCleanup(tracemalloc.stop)
        self.assertGreater(self.memory()["heap_in_use_bytes"], 0)
        tracemalloc.stop()
        self.assertNotIn("heap_in_use_bytes", self.memory())


class StatsTextTests(APITestCase):
    def expected_start_time(self) -> str:
        text = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(START))
        return text[:-5] + "Z" if text.endswith("+0000") else text[:-2] + ":" + text[-2:]

    def text(self, query: str = "") -> str:
        response = self.get("/stats?include_mem=false" + query)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers[b"content-type"], b"text/plain; charset=utf-8")
        self.assertEqual(response.headers[b"x-nsq-content-type"], V1_HEADER)
        return response.body.decode()

    def test_empty_node(self):
        self.clock.advance(3723.5)
        lines = self.text().split("\n")
        self.assertTrue(lines[0].startswith("nsqd v1.3.0 (built w/"), lines[0])
        self.assertEqual(lines[1:], [
            "start_time " + self.expected_start_time(),
            "uptime 1h2m3.5s",
            "",
            "Health: OK",
            "",
            "Topics: None",
            "",
            "Producers: None",
            "",
        ])

    def test_topics_channels_consumers_and_producers(self):
        self.consumer(b"alpha", b"ch", rdy=1, port=4000, hostname="worker", user_agent="ua/1")
        self.node.get_topic("alpha").get_channel("zz").pause()
        self.node.get_topic("beta").pause()
        producer = Conn(self.node, 4001).magic()
        producer.identify(hostname="pub-host")
        producer.command(b"MPUB alpha", mpub_body([b"1", b"2", b"3"]))
        producer.command(b"PUB beta", b"4")
        self.post("/pub?topic=beta&defer=1", b"5")
        self.node.health.failed("oops")
        self.clock.advance(45.25)
        self.assertEqual(self.text().split("\n")[1:], [
            "start_time " + self.expected_start_time(),
            "uptime 45.25s",
            "",
            "Health: NOK - oops",
            "",
            "Topics:",
            "   [alpha          ] depth: 0     be-depth: 0     msgs: 3        e2e%: ",
            "      [ch                       ] depth: 2     be-depth: 0     inflt: 1    def: 0    "
            "re-q: 0     timeout: 0     msgs: 3        e2e%: ",
            "        [V2 worker:4000 ua/1     ] state: 3 inflt: 1    rdy: 1    fin: 0        re-q: 0        "
            "msgs: 1        connected: 45s",
            "   *P [zz                       ] depth: 3     be-depth: 0     inflt: 0    def: 0    "
            "re-q: 0     timeout: 0     msgs: 3        e2e%: ",
            "",
            "*P [beta           ] depth: 2     be-depth: 0     msgs: 2        e2e%: ",
            "",
            "Producers:",
            "   [V2 pub-host:4001        ] msgs: 4        topics: alpha=3,beta=1 connected: 45s",
            "",
        ])

    def test_memory_section(self):
        lines = self.get("/stats").body.decode().split("\n")
        start = lines.index("Memory:") + 1
        section = lines[start:lines.index("", start)]
        memory = self.stats()["memory"]
        self.assertEqual([line.split("\t")[0].strip() for line in section], list(memory))
        for line in section:
            name, value = line.split("\t")
            self.assertEqual(len(name), 3 + 25)
            self.assertTrue(value.isdigit(), line)

    def test_text_is_the_default_for_any_other_format(self):
        for query in ("", "&format=text", "&format=JSON"):
            self.assertTrue(self.text(query).startswith("nsqd v1.3.0"))

    def test_filters_apply_to_text(self):
        self.node.get_topic("a")
        self.node.get_topic("b")
        text = self.text("&topic=b")
        self.assertIn("[b              ]", text)
        self.assertNotIn("[a              ]", text)
        self.assertIn("Topics: None", self.text("&topic=nope"))


# -- /config


class ConfigTests(APITestCase):
    options = dict(msg_timeout=42.5, node_id=7)

    def test_get_values_as_go_encodes_them(self):
        self.assertEqual(self.get("/config/msg_timeout").body, b"42500000000")
        self.assertEqual(self.get("/config/mem_queue_size").body, b"10000")
        self.assertEqual(self.get("/config/id").body, b"7")
        self.assertEqual(self.get("/config/nsqlookupd_tcp_addresses").body, b"[]")
        # strings are text, not JSON
        response = self.get("/config/tcp_address")
        self.assertEqual((response.code, response.body), (200, b"127.0.0.1:4150"))
        self.assertEqual(response.headers[b"content-type"], b"text/plain; charset=utf-8")
        # lg.LogLevel is an int: info is 2
        self.assertEqual(self.get("/config/log_level").body, b"2")

    def test_options_accepted_without_effect_answer_as_go(self):
        """Answers of Go nsqd 1.3 at its defaults."""
        response = self.get("/config/log_prefix")
        self.assertEqual((response.code, response.body), (200, b"[nsqd] "))
        self.assertEqual(response.headers[b"content-type"], b"text/plain; charset=utf-8")
        for name, body in (("http_client_connect_timeout", b"2000000000"),
                           ("http_client_request_timeout", b"5000000000"),
                           ("queue_scan_selection_count", b"20"), ("queue_scan_worker_pool_max", b"4")):
            response = self.get("/config/" + name)
            self.assertEqual((response.code, response.body), (200, body), name)
            self.assertEqual(response.headers[b"content-type"], b"application/json; charset=utf-8")

    def test_unknown_options(self):
        # Go has no config name for the options without a flag (queue_scan_dirty_percent, ...)
        for name in ("nope", "node_id", "queue_scan_interval", "client_timeout", "queue_scan_dirty_percent",
                     "validate", "__dict__"):
            self.assertError(self.get("/config/" + name), 400, "INVALID_OPTION")

    def test_tls_compression_and_auth_options_as_nsqd_answers_them(self):
        for name, body in (("tls_required", b"0"), ("tls_cert", b""), ("tls_min_version", b"769"),
                           ("https_address", b"0.0.0.0:4152"), ("snappy", b"true"), ("deflate", b"true"),
                           ("max_deflate_level", b"6"), ("auth_http_addresses", b"[]")):
            response = self.get("/config/" + name)
            self.assertEqual((response.code, response.body), (200, body), name)

    def test_options_of_missing_features_come_with_them(self):
        for name in ("statsd_address", "statsd_prefix", "statsd_interval", "e2e_processing_latency_percentiles",
                     "e2e_processing_latency_window_time"):
            self.assertError(self.get("/config/" + name), 400, "INVALID_OPTION")

    def test_put_log_level(self):
        response = self.request("PUT", "/config/log_level", b"DEBUG")
        self.assertEqual((response.code, response.body), (200, b"1"))
        self.assertEqual(self.node.options.log_level, "debug")
        self.assertTrue(nsqlog.debug_enabled())
        self.assertEqual(self.get("/config/log_level").body, b"1")

    def test_put_errors(self):
        self.assertError(self.request("PUT", "/config/log_level", b"loud"), 400, "INVALID_VALUE")
        self.assertError(self.request("PUT", "/config/log_level", b"debug\n"), 400, "INVALID_VALUE")
        self.assertError(self.request("PUT", "/config/log_level", b""), 413, "INVALID_VALUE")
        self.assertError(self.request("PUT", "/config/log_level", b"x" * (1024 * 1024 + 1)), 413,
                         "INVALID_VALUE")
        self.assertError(self.request("PUT", "/config/msg_timeout", b"1s"), 400, "INVALID_OPTION")
        for bad in (b'"127.0.0.1:4160"', b"[4160]", b'["no port"]', b"[", b"null"):
            self.assertError(self.request("PUT", "/config/nsqlookupd_tcp_addresses", bad), 400, "INVALID_VALUE")
        self.assertEqual(self.node.lookup_peers, {})
        self.assertEqual(self.node.options.log_level, "info")

    def test_put_lookupd_addresses_changes_the_peers(self):
        response = self.request("PUT", "/config/nsqlookupd_tcp_addresses", b'["127.0.0.1:4160", "127.0.0.2:4160"]')
        self.assertEqual((response.code, response.json()), (200, ["127.0.0.1:4160", "127.0.0.2:4160"]))
        first = self.node.lookup_peers["127.0.0.1:4160"]
        self.assertTrue(first.running)
        response = self.request("PUT", "/config/nsqlookupd_tcp_addresses", b'["127.0.0.2:4160", "127.0.0.3:4160"]')
        self.assertEqual(response.json(), ["127.0.0.2:4160", "127.0.0.3:4160"])
        self.assertEqual(list(self.node.lookup_peers), ["127.0.0.2:4160", "127.0.0.3:4160"])
        self.assertFalse(first.running)
        self.assertEqual(self.get("/config/nsqlookupd_tcp_addresses").json(), ["127.0.0.2:4160", "127.0.0.3:4160"])

    def test_broadcast_ports_are_the_bound_ones_unless_given(self):
        self.assertEqual((self.get("/config/broadcast_tcp_port").json(), self.get("/config/broadcast_http_port").json()),
                         (4150, 4151))
        self.node.options.broadcast_tcp_port = 5150
        self.assertEqual(self.get("/config/broadcast_tcp_port").json(), 5150)
        self.assertFalse(nsqlog.debug_enabled())


# -- the router


class RouterTests(APITestCase):
    """What nsqd's router (httprouter 1.3) answers around the routes; each request below was also
    sent to a Go nsqd 1.3.0, which answered the same status, Location, Allow and body."""

    def test_unknown_path_is_json_404(self):
        self.assertError(self.get("/not_found"), 404, "NOT_FOUND")
        self.assertError(self.post("/topic/nope?topic=t"), 404, "NOT_FOUND")

    def test_wrong_method_is_json_405(self):
        for method, path in (("POST", "/stats"), ("GET", "/pub?topic=t"), ("POST", "/ping"),
                             ("GET", "/topic/create?topic=t"), ("DELETE", "/channel/delete"),
                             ("POST", "/config/log_level")):
            response = self.request(method, path)
            self.assertError(response, 405, "METHOD_NOT_ALLOWED")
        self.assertEqual(self.node.topics, {})

    def test_allow_names_the_paths_methods_and_options_as_httprouter(self):
        for method, path, allow in (("GET", "/pub", b"OPTIONS, POST"), ("POST", "/ping", b"GET, OPTIONS"),
                                    ("DELETE", "/config/x", b"GET, OPTIONS, PUT"),
                                    ("POST", "/config/x", b"GET, OPTIONS, PUT")):
            response = self.route(method, path)
            self.assertError(response, 405, "METHOD_NOT_ALLOWED")
            self.assertEqual(response.headers[b"allow"], allow, (method, path))

    def test_head_has_no_routes_as_in_nsqd(self):
        response = self.route("HEAD", "/ping")
        self.assertEqual((response.code, response.body), (405, b""))
        self.assertEqual(response.headers[b"allow"], b"GET, OPTIONS")
        self.assertEqual(response.headers[b"content-length"], b"32")
        self.assertEqual(self.route("HEAD", "/nope").code, 404)

    def test_options_answers_the_allowed_methods(self):
        for path, allow in (("/ping", b"GET, OPTIONS"), ("/pub?topic=t", b"OPTIONS, POST"),
                            ("/config/msg_timeout", b"GET, OPTIONS, PUT")):
            response = self.route("OPTIONS", path)
            self.assertEqual((response.code, response.body, response.headers[b"allow"]), (200, b"", allow))
            self.assertEqual(response.headers[b"content-length"], b"0")
            self.assertNotIn(b"content-type", response.headers)
            self.assertNotIn(b"x-nsq-content-type", response.headers)
        self.assertError(self.route("OPTIONS", "/nope"), 404, "NOT_FOUND")
        self.assertEqual(self.node.topics, {})

    def test_trailing_slash_redirects_get_301(self):
        for path, location in (("/ping/", b"/ping"), ("/info/", b"/info"),
                               ("/stats/?format=json", b"/stats?format=json"),
                               ("/config/msg_timeout/", b"/config/msg_timeout"), ("/ping/?", b"/ping?")):
            response = self.route("GET", path)
            self.assertEqual((response.code, response.headers[b"location"]), (301, location), path)
            self.assertEqual(response.body, b'<a href="%s">Moved Permanently</a>.\n\n' % location)
            self.assertEqual(response.headers[b"content-type"], b"text/html; charset=utf-8")
            self.assertNotIn(b"x-nsq-content-type", response.headers)

    def test_trailing_slash_redirects_other_methods_307(self):
        for method, path, location in (("POST", "/pub/?topic=t", b"/pub?topic=t"),
                                       ("POST", "/topic/create/?topic=t", b"/topic/create?topic=t"),
                                       ("PUT", "/config/log_level/", b"/config/log_level")):
            response = self.route(method, path)
            self.assertEqual((response.code, response.headers[b"location"], response.body), (307, location, b""))
            self.assertNotIn(b"content-type", response.headers)
        self.assertEqual(self.node.topics, {})

    def test_cleaned_and_case_folded_paths_redirect(self):
        for method, path, code, location in (
                ("GET", "//ping", 301, b"/ping"), ("GET", "/PING", 301, b"/ping"),
                ("GET", "/Ping/", 301, b"/ping"),
                ("GET", "/stats/../info", 301, b"/info"), ("GET", "/./info", 301, b"/info"),
                ("GET", "/CONFIG/Msg_Timeout", 301, b"/config/Msg_Timeout"),
                ("POST", "/Topic//Create?topic=t", 307, b"/topic/create?topic=t"),
                ("GET", "///ping", 301, b"/ping"), ("GET", "/config//x", 301, b"/config/x"),
                ("GET", "/ping/%C3%A9/..", 301, b"/ping"),
                ("GET", "/PING?q=%C3%A9&x=%2F", 301, b"/ping?q=%C3%A9&x=%2F"),
                ("GET", "/Config/%C3%A9%20x", 301, b"/config/%C3%A9%20x")):
            response = self.route(method, path)
            self.assertEqual((response.code, response.headers[b"location"]), (code, location), path)
        self.assertEqual(self.route("GET", "/PING?x=<>\"'&").body,
                         b'<a href="/ping?x=&lt;&gt;&#34;&#39;&amp;">Moved Permanently</a>.\n\n')

    def test_no_redirect_to_another_methods_route(self):
        for method, path in (("POST", "/ping/"), ("GET", "/pub/"), ("DELETE", "/ping/"), ("OPTIONS", "/ping/"),
                             ("GET", "/"), ("GET", "/config/"), ("GET", "/config//"), ("PUT", "/ping/")):
            self.assertError(self.route(method, path), 404, "NOT_FOUND")
        self.assertEqual(self.route("HEAD", "/ping/").code, 404)

    def test_path_that_is_not_utf8_is_json_404(self):
        response = self.raw(b"GET /%ff HTTP/1.1\r\nHost: nsqd.test\r\nConnection: close\r\n\r\n")
        self.assertError(response, 404, "NOT_FOUND")

    def test_unexpected_failure_is_500_internal_error_without_traceback(self):
        def broken(name):
            raise RuntimeError("boom")
        self.node.get_topic = broken
        response = self.post("/topic/create?topic=t")
        self.assertError(response, 500, "INTERNAL_ERROR")
        self.assertNotIn(b"boom", response.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


# -- a real socket


class SocketTests(TestCase):
    @defer.inlineCallbacks
    def test_publish_and_read_stats_over_http(self):
        node = NSQD(Options(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0", data_path=data_dir(self)))
        node.startService()
        self.addCleanup(node.stopService)
        pool = HTTPConnectionPool(global_reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        base = "http://127.0.0.1:%d" % node.http_port
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        response = yield treq.post(base + "/pub?topic=t", data=b"hi", pool=pool)
        self.assertEqual((response.code, (yield treq.content(response))), (200, b"OK"))
        self.assertEqual(response.headers.getRawHeaders(b"X-NSQ-Content-Type"), [V1_HEADER])

        response = yield treq.get(base + "/stats?format=json", pool=pool)
        stats = yield treq.json_content(response)
        [topic] = stats["topics"]
        self.assertEqual((topic["topic_name"], topic["depth"], topic["message_count"]), ("t", 1, 1))
        self.assertEqual(stats["start_time"], int(node.start_time))

        response = yield treq.get(base + "/info", pool=pool)
        info = yield treq.json_content(response)
        self.assertEqual((info["http_port"], info["tcp_port"]), (node.http_port, node.tcp_port))
        # one log line per request, none for /pub, as nsqd (no second access-log line from twisted.web)
        logged = [text for text in map(formatEvent, events) if "GET /" in text or "POST /" in text]
        self.assertEqual([line.split(" (")[0] for line in logged], ["200 GET /stats?format=json", "200 GET /info"])

        response = yield treq.get(base + "/nope", pool=pool)
        self.assertEqual((response.code, (yield treq.content(response))), (404, b'{"message":"NOT_FOUND"}'))
