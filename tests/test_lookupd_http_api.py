"""nsqtx.lookupd.http_api against Go nsqlookupd 1.3's http.go (and http_test.go): routes, status codes,
JSON field names and order, error strings.

Requests go in-process, StubTreq over the site the lookupd listens with on its fake reactor; nodes
register over protocol V1 connections on StringTransports, as nsqd would. One test goes over real
sockets.
"""
from __future__ import annotations

import json
import socket

import treq
from twisted.internet import defer, reactor as global_reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from nsqtx.lookupd.node import NSQLookupd
from nsqtx.lookupd.options import LookupdOptions
from nsqtx.lookupd.registration_db import CLIENT, ZERO_TIME_NS, channel_registration, topic_registration
from tests.support import V1_HEADER, HTTPTestMixin, V1Conn, logged_until, make_lookupd

START_NS = 1000 * 10 ** 9


class LookupdAPICase(HTTPTestMixin, TestCase):
    options = {}

    def setUp(self):
        self.lookupd, self.clock = make_lookupd(self, **self.options)
        self.db = self.lookupd.db
        self.serve_http(self.clock, 4161)

    def node(self, port=4000, *registrations, **identity) -> V1Conn:
        """An nsqd identified over V1 from 10.0.0.1:`port` (broadcasting nsqd.test, TCP `port` + 150,
        HTTP `port` + 151) with these registrations ("topic" or "topic channel")."""
        conn = V1Conn(self.lookupd, port).magic()
        identity.setdefault("tcp_port", port + 150)
        identity.setdefault("http_port", port + 151)
        conn.identify(**identity)
        for registration in registrations:
            conn.command(b"REGISTER " + registration.encode())
        responses = conn.responses()
        self.assertEqual((responses[1:], conn.closed), ([b"OK"] * len(registrations), False))
        return conn

    def peer(self, conn, port=4000) -> dict:
        """A node as /lookup shows it."""
        return {"remote_address": conn.id, "hostname": "nsqd.test", "broadcast_address": "nsqd.test",
                "tcp_port": port + 150, "http_port": port + 151, "version": "1.3.0"}


class PingInfoTests(LookupdAPICase):
    def test_ping_is_plain_ok(self):
        response = self.get("/ping")
        self.assertEqual((response.code, response.body), (200, b"OK"))
        self.assertEqual(response.headers.get(b"content-type"), b"text/plain; charset=utf-8")
        self.assertNotIn(b"x-nsq-content-type", response.headers)

    def test_info(self):
        self.assertJSON(self.get("/info"), b'{"version":"1.3.0"}')


class LookupTests(LookupdAPICase):
    def test_missing_and_unknown_topic(self):
        self.assertError(self.get("/lookup"), 400, "MISSING_ARG_TOPIC")
        self.assertError(self.get("/lookup?topic=nope"), 404, "TOPIC_NOT_FOUND")

    def test_query_go_cannot_parse(self):
        self.assertError(self.get("/lookup?topic=t;x"), 400, "INVALID_REQUEST")

    def test_channels_and_producers_in_go_s_order(self):
        a = self.node(4000, "t c1", "t c2")
        self.node(4001, "other")
        response = self.get("/lookup?topic=t")
        self.assertJSON(response, (
            b'{"channels":["c1","c2"],"producers":[{"remote_address":"10.0.0.1:4000","hostname":"nsqd.test",'
            b'"broadcast_address":"nsqd.test","tcp_port":4150,"http_port":4151,"version":"1.3.0"}]}'))
        self.assertEqual(response.json()["producers"], [self.peer(a)])

    def test_a_topic_without_producers_is_found(self):
        self.post("/topic/create?topic=t")
        self.assertJSON(self.get("/lookup?topic=t"), b'{"channels":[],"producers":[]}')

    def test_the_accept_header_changes_nothing(self):
        """Go 1.3 answers every client in the one format clients have asked for with
        "Accept: application/vnd.nsq; version=1.0" since NSQ 1.0."""
        self.node(4000, "t c")
        plain = self.get("/lookup?topic=t")
        negotiated = self.get("/lookup?topic=t", headers={"Accept": ["application/vnd.nsq; version=1.0"]})
        self.assertEqual((negotiated.code, negotiated.body), (plain.code, plain.body))
        self.assertEqual(negotiated.headers.get(b"x-nsq-content-type"), V1_HEADER)

    def test_inactive_producers_are_left_out(self):
        a, b = self.node(4000, "t"), self.node(4001, "t")
        self.clock.advance(200)
        b.command(b"PING")
        self.clock.advance(100.001)
        self.assertEqual(self.get("/lookup?topic=t").json()["producers"], [self.peer(b, 4001)])
        a.command(b"PING")
        self.assertEqual(len(self.get("/lookup?topic=t").json()["producers"]), 2)

    def test_a_stopped_node_vanishes(self):
        a = self.node(4000, "t c")
        a.lose()
        self.assertJSON(self.get("/lookup?topic=t"), b'{"channels":["c"],"producers":[]}')

    def test_wildcard_topic_finds_every_topic_as_go_s_does(self):
        a, b = self.node(4000, "t1 c1"), self.node(4001, "t2 c2")
        response = self.get("/lookup?topic=*").json()
        self.assertEqual(response["channels"], ["c1", "c2"])
        self.assertEqual(response["producers"], [self.peer(a), self.peer(b, 4001)])


class TombstoneTests(LookupdAPICase):
    def test_a_tombstoned_producer_is_left_out_of_lookup_for_its_lifetime(self):
        a, b = self.node(4000, "t", "u"), self.node(4001, "t")
        self.assertEmpty200(self.post("/topic/tombstone?topic=t&node=nsqd.test:4151"))
        self.assertEqual(self.get("/lookup?topic=t").json()["producers"], [self.peer(b, 4001)])
        # in that topic only
        self.assertEqual(self.get("/lookup?topic=u").json()["producers"], [self.peer(a)])
        self.clock.advance(44.999)
        self.assertEqual(len(self.get("/lookup?topic=t").json()["producers"]), 1)
        self.clock.advance(0.001)
        self.assertEqual(len(self.get("/lookup?topic=t").json()["producers"]), 2)

    def test_nodes_lists_tombstoned_producers_with_their_tombstones(self):
        self.node(4000, "t", "u")
        self.post("/topic/tombstone?topic=u&node=nsqd.test:4151")
        [node] = self.get("/nodes").json()["producers"]
        self.assertEqual((node["topics"], node["tombstones"]), (["t", "u"], [False, True]))
        self.clock.advance(45)
        [node] = self.get("/nodes").json()["producers"]
        self.assertEqual(node["tombstones"], [False, False])

    def test_arguments(self):
        self.assertError(self.post("/topic/tombstone"), 400, "MISSING_ARG_TOPIC")
        self.assertError(self.post("/topic/tombstone?topic=t"), 400, "MISSING_ARG_NODE")
        self.assertError(self.post("/topic/tombstone?topic=t&node=%zz"), 400, "INVALID_REQUEST")
        # no such node, no such topic: nothing to do, as in Go
        self.assertEmpty200(self.post("/topic/tombstone?topic=t&node=elsewhere:1"))


class ListTests(LookupdAPICase):
    def test_topics(self):
        self.assertJSON(self.get("/topics"), b'{"topics":[]}')
        self.node(4000, "t1 c", "t2")
        self.post("/topic/create?topic=t3")
        self.assertJSON(self.get("/topics"), b'{"topics":["t1","t2","t3"]}')

    def test_channels(self):
        self.assertError(self.get("/channels"), 400, "MISSING_ARG_TOPIC")
        self.assertJSON(self.get("/channels?topic=t"), b'{"channels":[]}')
        self.node(4000, "t c1", "t c2", "u c3")
        self.assertJSON(self.get("/channels?topic=t"), b'{"channels":["c1","c2"]}')
        # Go checks no name here: its wildcard lists every topic's channels
        self.assertJSON(self.get("/channels?topic=*"), b'{"channels":["c1","c2","c3"]}')

    def test_nodes(self):
        self.assertJSON(self.get("/nodes"), b'{"producers":[]}')
        self.node(4000, "t c", "u")
        self.node(4001)
        self.assertJSON(self.get("/nodes"), (
            b'{"producers":[{"remote_address":"10.0.0.1:4000","hostname":"nsqd.test","broadcast_address":"nsqd.test",'
            b'"tcp_port":4150,"http_port":4151,"version":"1.3.0","tombstones":[false,false],"topics":["t","u"]},'
            b'{"remote_address":"10.0.0.1:4001","hostname":"nsqd.test","broadcast_address":"nsqd.test",'
            b'"tcp_port":4151,"http_port":4152,"version":"1.3.0","tombstones":[],"topics":[]}]}'))

    def test_nodes_leaves_out_inactive_and_gone_nodes(self):
        a, b = self.node(4000, "t"), self.node(4001, "t")
        self.clock.advance(300.001)
        b.command(b"PING")
        self.assertEqual([n["remote_address"] for n in self.get("/nodes").json()["producers"]], [b.id])
        b.lose()
        self.assertJSON(self.get("/nodes"), b'{"producers":[]}')
        # an inactive node keeps its registrations: a PING makes it active again
        self.assertEqual(self.db.lookup_registrations(a.id), [CLIENT, topic_registration("t")])

    def test_debug(self):
        self.assertJSON(self.get("/debug"), b"{}")
        self.node(4000, "t c")
        self.post("/topic/create?topic=empty")
        self.db.tombstone(self.db.producer(topic_registration("t"), "10.0.0.1:4000"))
        record = {"broadcast_address": "nsqd.test", "hostname": "nsqd.test", "http_port": 4151, "id": "10.0.0.1:4000",
                  "last_update": START_NS, "tcp_port": 4150, "tombstoned": False, "tombstoned_at": ZERO_TIME_NS,
                  "version": "1.3.0"}
        response = self.get("/debug")
        self.assertEqual(response.code, 200)
        # Go maps: keys sorted at both levels; a registration without producers is not shown
        self.assertEqual(json.loads(response.body, object_pairs_hook=list), [
            ("channel:t:c", [list(record.items())]),
            ("client::", [list(record.items())]),
            ("topic:t:", [list(dict(record, tombstoned=True, tombstoned_at=START_NS).items())]),
        ])


class ChangeTests(LookupdAPICase):
    def test_create_topic(self):
        self.assertError(self.post("/topic/create"), 400, "MISSING_ARG_TOPIC")
        self.assertError(self.post("/topic/create?topic=sampletopicA$"), 400, "INVALID_ARG_TOPIC")
        self.assertError(self.post("/topic/create?topic=*"), 400, "INVALID_ARG_TOPIC")
        self.assertEmpty200(self.post("/topic/create?topic=t"))
        self.assertEqual(self.db.registrations, {topic_registration("t"): {}})

    def test_create_keeps_the_producers(self):
        a = self.node(4000, "t")
        self.assertEmpty200(self.post("/topic/create?topic=t"))
        self.assertEqual(self.get("/lookup?topic=t").json()["producers"], [self.peer(a)])

    def test_delete_topic_takes_its_channels_and_producers(self):
        self.assertError(self.post("/topic/delete"), 400, "MISSING_ARG_TOPIC")
        self.node(4000, "t c1", "t c2", "u c1")
        self.assertEmpty200(self.post("/topic/delete?topic=t"))
        self.assertEqual(self.get("/topics").json(), {"topics": ["u"]})
        self.assertError(self.get("/lookup?topic=t"), 404, "TOPIC_NOT_FOUND")
        self.assertEqual(self.get("/channels?topic=u").json(), {"channels": ["c1"]})
        # deleting what is not there is no error
        self.assertEmpty200(self.post("/topic/delete?topic=t"))

    def test_channels(self):
        self.assertEmpty200(self.post("/channel/create?topic=t&channel=c"))
        self.assertEqual(list(self.db.registrations), [channel_registration("t", "c"), topic_registration("t")])
        self.assertEmpty200(self.post("/channel/delete?topic=t&channel=c"))
        self.assertEqual(list(self.db.registrations), [topic_registration("t")])
        self.assertError(self.post("/channel/delete?topic=t&channel=c"), 404, "CHANNEL_NOT_FOUND")

    def test_channel_arguments_are_go_s_topic_channel_args(self):
        for path in ("/channel/create", "/channel/delete"):
            self.assertError(self.post(path), 400, "MISSING_ARG_TOPIC")
            self.assertError(self.post(path + "?topic=b@d"), 400, "INVALID_ARG_TOPIC")
            self.assertError(self.post(path + "?topic=t"), 400, "MISSING_ARG_CHANNEL")
            self.assertError(self.post(path + "?topic=t&channel=b@d"), 400, "INVALID_ARG_CHANNEL")
            self.assertError(self.post(path + "?topic=t&channel=c&%"), 400, "INVALID_REQUEST")
        self.assertEqual(self.db.registrations, {})

    def test_a_request_body_is_ignored(self):
        self.assertEmpty200(self.post("/topic/create?topic=t", b"x" * 100000))
        self.assertEqual(list(self.db.registrations), [topic_registration("t")])


class RouterTests(LookupdAPICase):
    def test_unknown_path_is_json_404(self):
        for path in ("/nope", "/debug/pprof", "/stats"):
            self.assertError(self.get(path), 404, "NOT_FOUND")

    def test_wrong_method_is_json_405(self):
        for method, path in (("POST", "/lookup?topic=t"), ("GET", "/topic/create?topic=t"), ("POST", "/ping"),
                             ("PUT", "/topic/delete?topic=t"), ("DELETE", "/nodes")):
            self.assertError(self.request(method, path), 405, "METHOD_NOT_ALLOWED")
        self.assertEqual(self.db.registrations, {})
        self.assertEqual(self.request("GET", "/topic/tombstone").headers[b"allow"], b"OPTIONS, POST")

    def test_path_that_is_not_utf8_is_json_404(self):
        response = self.raw(b"GET /%ff HTTP/1.1\r\nHost: lookupd.test\r\nConnection: close\r\n\r\n")
        self.assertError(response, 404, "NOT_FOUND")

    def test_unexpected_failure_is_500_internal_error_without_traceback(self):
        def broken(*args):
            raise RuntimeError("boom")
        self.db.find_registrations = broken
        response = self.get("/topics")
        self.assertError(response, 500, "INTERNAL_ERROR")
        self.assertNotIn(b"boom", response.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class SocketTests(TestCase):
    @defer.inlineCallbacks
    def test_a_node_registered_over_tcp_is_found_over_http(self):
        lookupd = NSQLookupd(LookupdOptions(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0"))
        lookupd.startService()
        self.addCleanup(lookupd.stopService)
        pool = HTTPConnectionPool(global_reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        node = socket.create_connection(("127.0.0.1", lookupd.tcp_port))
        self.addCleanup(node.close)
        body = json.dumps({"version": "1.3.0", "tcp_port": 4150, "http_port": 4151,
                           "broadcast_address": "nsqd.test"}).encode()
        node.sendall(b"  V1IDENTIFY\n" + len(body).to_bytes(4, "big") + body + b"REGISTER t c\n")
        yield logged_until(lambda: lookupd.db.find_producers("channel", "t", "c"))

        base = "http://127.0.0.1:%d" % lookupd.http_port
        response = yield treq.get(base + "/lookup?topic=t", pool=pool)
        found = yield treq.json_content(response)
        self.assertEqual(found["channels"], ["c"])
        [producer] = found["producers"]
        self.assertEqual((producer["broadcast_address"], producer["tcp_port"], producer["remote_address"]),
                         ("nsqd.test", 4150, "127.0.0.1:%d" % node.getsockname()[1]))
