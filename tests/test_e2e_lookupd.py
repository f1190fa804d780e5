"""End to end: an embedded nsqtx nsqd registering with an embedded nsqtx-lookupd over real loopback
sockets (nsqd's side is nsqtx.lookup_peer), seen through lookupd's HTTP API as consumers and nsqadmin
see it. Each wait is for an event the servers log (a registration, a connection's end), bounded by
trial's timeout."""
from __future__ import annotations

import treq
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from nsqtx.lookupd.node import NSQLookupd
from nsqtx.lookupd.options import LookupdOptions
from nsqtx.lookupd.registration_db import CLIENT
from tests.support import logged_until, start_real_node


def start_lookupd(case, tcp_port: int = 0) -> NSQLookupd:
    lookupd = NSQLookupd(LookupdOptions(tcp_address="127.0.0.1:%d" % tcp_port, http_address="127.0.0.1:0",
                                        broadcast_address="127.0.0.1"))
    lookupd.startService()
    case.addCleanup(lambda: lookupd.stopService() if lookupd.running else None)
    return lookupd


def registered_node(case, lookupd):
    """A real nsqd registering with `lookupd`, once lookupd has it as a client."""
    node = start_real_node(case, broadcast_address="127.0.0.1",
                           nsqlookupd_tcp_addresses=["127.0.0.1:%d" % lookupd.tcp_port])
    return logged_until(lambda: lookupd.db.find_producers(*CLIENT)).addCallback(lambda _: node)


class RegistrationTests(TestCase):
    timeout = 30

    def setUp(self):
        self.lookupd = start_lookupd(self)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    @defer.inlineCallbacks
    def get(self, path: str):
        response = yield treq.get("http://127.0.0.1:%d%s" % (self.lookupd.http_port, path), pool=self.pool)
        body = yield treq.json_content(response)
        return response.code, body

    def producers_of(self, topic: str, channel: str = ""):
        """A Deferred firing once lookupd has the node as a producer of the topic (or channel)."""
        if channel:
            return logged_until(lambda: self.lookupd.db.find_producers("channel", topic, channel))
        return logged_until(lambda: self.lookupd.db.find_producers("topic", topic, ""))

    def peer_info(self, node) -> dict:
        return {"hostname": self.lookupd_producer()["hostname"], "broadcast_address": "127.0.0.1",
                "tcp_port": node.tcp_port, "http_port": node.http_port, "version": "1.3.0"}

    def lookupd_producer(self) -> dict:
        [producer] = self.lookupd.db.find_producers(*CLIENT)
        return producer.peer_info.document()

    @defer.inlineCallbacks
    def test_a_node_its_topics_and_channels_appear_and_vanish_when_it_stops(self):
        node = yield registered_node(self, self.lookupd)
        node.get_topic("t").get_channel("c")
        node.get_topic("u")
        yield self.producers_of("t", "c")
        yield self.producers_of("u")

        code, nodes = yield self.get("/nodes")
        [entry] = nodes["producers"]
        self.assertEqual(code, 200)
        self.assertEqual({k: entry[k] for k in ("broadcast_address", "tcp_port", "http_port", "version")},
                         {"broadcast_address": "127.0.0.1", "tcp_port": node.tcp_port, "http_port": node.http_port,
                          "version": "1.3.0"})
        self.assertEqual((entry["topics"], entry["tombstones"]), (["t", "u"], [False, False]))
        code, found = yield self.get("/lookup?topic=t")
        self.assertEqual(found["channels"], ["c"])
        self.assertEqual([(p["tcp_port"], p["http_port"]) for p in found["producers"]],
                         [(node.tcp_port, node.http_port)])

        yield node.stopService()
        yield logged_until(lambda: not self.lookupd.db.find_producers(*CLIENT))
        self.assertEqual((yield self.get("/nodes")), (200, {"producers": []}))
        self.assertEqual((yield self.get("/lookup?topic=t")), (200, {"channels": ["c"], "producers": []}))

    @defer.inlineCallbacks
    def test_deletions_on_the_node_unregister(self):
        """A deleted channel's node is no longer its producer (an ephemeral channel goes from the
        listing with it); a deleted topic's node is no longer found for it."""
        node = yield registered_node(self, self.lookupd)
        topic = node.get_topic("t")
        topic.get_channel("c")
        topic.get_channel("e#ephemeral")
        yield self.producers_of("t", "e#ephemeral")
        topic.delete_channel("e#ephemeral")
        yield logged_until(lambda: not self.lookupd.db.find_registrations("channel", "t", "e#ephemeral"))
        self.assertEqual((yield self.get("/channels?topic=t")), (200, {"channels": ["c"]}))

        node.delete_topic("t")
        yield logged_until(lambda: not self.lookupd.db.find_producers("topic", "t", ""))
        code, found = yield self.get("/lookup?topic=t")
        self.assertEqual(found["producers"], [])
        [entry] = (yield self.get("/nodes"))[1]["producers"]
        self.assertEqual(entry["topics"], [])

    @defer.inlineCallbacks
    def test_a_restarted_lookupd_gets_everything_registered_again(self):
        """nsqd reconnects and registers what it has then; lookupd itself keeps nothing."""
        node = yield registered_node(self, self.lookupd)
        node.get_topic("t").get_channel("c")
        yield self.producers_of("t", "c")
        port = self.lookupd.tcp_port
        yield self.lookupd.stopService()
        node.get_topic("while-away")
        self.lookupd = start_lookupd(self, port)
        self.assertEqual(self.lookupd.db.registrations, {})
        yield self.producers_of("t", "c")
        yield self.producers_of("while-away")
        code, nodes = yield self.get("/nodes")
        self.assertEqual(sorted(nodes["producers"][0]["topics"]), ["t", "while-away"])
