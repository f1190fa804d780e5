"""nsqtx.lookupd.node: NSQLookupd as a service, embedded, on real loopback ports and on a fake reactor."""
from __future__ import annotations

import json
import struct

from twisted.application.service import MultiService
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

import nsqtx.lookupd
from nsqtx.log import debug_enabled, set_log_level
from nsqtx.lookupd.node import NSQLookupd
from nsqtx.lookupd.options import LookupdOptions
from nsqtx.lookupd.registration_db import CLIENT
from tests.support import V1Conn, identity, logged_until, v1_responses


class Client(Protocol):
    """A node's connection: what it received, and a Deferred for its end."""

    def __init__(self):
        self.received = b""
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason=None):
        self.lost.callback(None)


class EmbeddingTests(TestCase):
    def test_package_exports(self):
        self.assertIs(nsqtx.lookupd.NSQLookupd, NSQLookupd)
        self.assertIs(nsqtx.lookupd.LookupdOptions, LookupdOptions)
        self.assertRaises(AttributeError, getattr, nsqtx.lookupd, "nope")

    def test_a_multiservice_with_the_two_listeners(self):
        lookupd = NSQLookupd(reactor=MemoryReactorClock())
        self.assertIsInstance(lookupd, MultiService)
        self.assertEqual([service.name for service in lookupd], ["tcp", "http"])
        self.assertEqual((lookupd.tcp_port, lookupd.http_port), (None, None))
        self.assertEqual(vars(lookupd.options), vars(LookupdOptions()))

    def test_options_are_validated(self):
        self.assertRaises(ValueError, NSQLookupd, LookupdOptions(tcp_address="nowhere"), MemoryReactorClock())

    def test_start_sets_the_log_level(self):
        self.addCleanup(set_log_level, "info")
        NSQLookupd(LookupdOptions(log_level="debug"), MemoryReactorClock()).startService()
        self.assertTrue(debug_enabled())

    def test_fake_reactor_ports(self):
        clock = MemoryReactorClock()
        lookupd = NSQLookupd(LookupdOptions(tcp_address="127.0.0.1:5160", http_address="127.0.0.1:5161"), clock)
        lookupd.startService()
        self.assertEqual((lookupd.tcp_port, lookupd.http_port), (5160, 5161))
        self.assertEqual([(port, interface) for port, _, _, interface in clock.tcpServers],
                         [(5160, "127.0.0.1"), (5161, "127.0.0.1")])
        stopped = lookupd.stopService()
        self.assertEqual((lookupd.tcp_port, lookupd.http_port), (None, None))
        self.successResultOf(stopped)

    def test_stop_waits_for_the_connections_to_end(self):
        clock = MemoryReactorClock()
        lookupd = NSQLookupd(LookupdOptions(tcp_address="127.0.0.1:5160", http_address="127.0.0.1:5161"), clock)
        lookupd.startService()
        conn = V1Conn(lookupd).magic()
        conn.identify()
        stopped = lookupd.stopService()
        self.assertTrue(conn.transport.disconnecting)
        self.assertNoResult(stopped)
        conn.lose()
        self.successResultOf(stopped)
        self.assertEqual(lookupd.db.registrations, {CLIENT: {}})


class RealSocketTests(TestCase):
    @defer.inlineCallbacks
    def test_listens_on_port_zero_and_stop_closes_the_nodes_connections(self):
        lookupd = NSQLookupd(LookupdOptions(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0"))
        lookupd.startService()
        ports = lookupd.tcp_port, lookupd.http_port
        self.assertNotIn(ports[0], (None, 0))
        self.assertNotIn(ports[1], (None, 0, ports[0]))
        client = Client()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", ports[0]), client)
        body = json.dumps(identity()).encode()
        client.transport.write(b"  V1IDENTIFY\n" + struct.pack(">l", len(body)) + body + b"REGISTER t\n")
        yield logged_until(lambda: lookupd.db.find_producers("topic", "t", ""))
        yield lookupd.stopService()
        self.assertEqual(dict(lookupd.clients), {})
        self.assertEqual(lookupd.db.find_producers("topic", "t", ""), [])
        yield client.lost
        self.assertFalse(lookupd.running)
        # the IDENTIFY reply gave the ports actually bound
        reply, ok = v1_responses(client.received)
        self.assertEqual(((json.loads(reply)["tcp_port"], json.loads(reply)["http_port"]), ok), (ports, b"OK"))
