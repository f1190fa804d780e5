"""The node's nsqlookupd peers: IDENTIFY and REGISTER after every connect, REGISTER and UNREGISTER as
topics and channels come and go, PING every 15 s, and a new connection, with backoff, after an
error, garbage, silence or a lost connection."""
from __future__ import annotations

import json
import socket
import struct

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from nsqtx.lookup_peer import PING_INTERVAL, RESPONSE_TIMEOUT, LookupProtocolV1
from nsqtx.version import NSQD_VERSION
from tests.support import make_node

LOOKUPD = "127.0.0.1:4160"
LOOKUPD_INFO = {"tcp_port": 4160, "http_port": 4161, "version": "1.3.0", "broadcast_address": "lookupd",
                "hostname": "lookupd"}


def response(data: bytes) -> bytes:
    return struct.pack(">l", len(data)) + data


class ClosingTransport(StringTransport):
    """Ends the connection at once when the peer closes it, as a socket would soon after."""

    def loseConnection(self):
        if not self.disconnecting:
            StringTransport.loseConnection(self)
            self.protocol.connectionLost(Failure(ConnectionDone()))

    abortConnection = loseConnection


class FakeLookupd:
    """The lookupd end of one connection the peer made: what the peer sent, parsed into commands,
    and answers fed back."""

    def __init__(self, case, reactor):
        self.case = case
        host, port, factory, _, _ = reactor.tcpClients[-1]
        case.assertEqual((host, port), ("127.0.0.1", 4160))
        self.transport = ClosingTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4160))
        self.protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4160))
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)
        self.magic_seen = False

    def commands(self) -> list:
        """The commands sent since the last call, as (line, body or None)."""
        data = self.transport.value()
        self.transport.clear()
        if not self.magic_seen:
            self.case.assertEqual(data[:4], b"  V1")
            data = data[4:]
            self.magic_seen = True
        out = []
        while data:
            line, _, data = data.partition(b"\n")
            body = None
            if line == b"IDENTIFY":
                (size,) = struct.unpack(">l", data[:4])
                body, data = data[4:4 + size], data[4 + size:]
            out.append((line, body))
        return out

    def answer(self, *answers: bytes) -> None:
        self.protocol.dataReceived(b"".join(response(a) for a in answers))

    def identify(self) -> None:
        [(line, body)] = self.commands()
        self.case.assertEqual(line, b"IDENTIFY")
        self.answer(json.dumps(LOOKUPD_INFO).encode())

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting

    def lose(self) -> None:
        """The lookupd end closes."""
        self.transport.loseConnection()


class LookupPeerTests(TestCase):
    def setUp(self):
        self.node, self.reactor = make_node(self, nsqlookupd_tcp_addresses=[LOOKUPD], broadcast_address="node.example")
        self.node.startService()
        self.addCleanup(self.node.stopService)
        self.peer = self.node.lookup_peers[LOOKUPD]

    def connect(self) -> FakeLookupd:
        return FakeLookupd(self, self.reactor)

    def test_identifies_with_the_broadcast_address_and_the_bound_ports(self):
        lookupd = self.connect()
        [(line, body)] = lookupd.commands()
        self.assertEqual(line, b"IDENTIFY")
        self.assertEqual(json.loads(body), {
            "version": NSQD_VERSION, "tcp_port": self.node.tcp_port, "http_port": self.node.http_port,
            "hostname": socket.gethostname(), "broadcast_address": "node.example"})
        lookupd.answer(json.dumps(LOOKUPD_INFO).encode())
        self.assertEqual(self.peer.info, LOOKUPD_INFO)

    def test_registers_every_channel_or_a_topic_without_any_after_identifying(self):
        self.node.get_topic("alone")
        self.node.get_topic("t").get_channel("a")
        self.node.get_topic("t").get_channel("b#ephemeral")
        lookupd = self.connect()
        lookupd.identify()
        commands = lookupd.commands()
        self.assertEqual(sorted(commands), [(b"REGISTER alone", None), (b"REGISTER t a", None),
                                            (b"REGISTER t b#ephemeral", None)])
        lookupd.answer(b"OK", b"OK", b"OK")
        self.assertFalse(lookupd.closed)

    def test_changes_are_told_as_they_happen_topic_before_its_channels(self):
        lookupd = self.connect()
        lookupd.identify()
        self.node.get_topic("t").get_channel("c")
        self.node.get_topic("t").delete_channel("c")
        self.node.get_topic("t").get_channel("d")
        self.node.delete_topic("t")
        self.assertEqual([line for line, _ in lookupd.commands()], [
            b"REGISTER t", b"REGISTER t c", b"UNREGISTER t c", b"REGISTER t d", b"UNREGISTER t",
            b"UNREGISTER t d"])
        lookupd.answer(*[b"OK"] * 6)
        self.assertFalse(lookupd.closed)

    def test_an_error_response_to_a_register_is_logged_and_the_connection_kept(self):
        lookupd = self.connect()
        lookupd.identify()
        self.node.get_topic("t")
        lookupd.commands()
        lookupd.answer(b"E_BAD_TOPIC REGISTER topic name 't' is not valid")
        self.assertFalse(lookupd.closed)

    def test_pings_every_15_seconds(self):
        lookupd = self.connect()
        lookupd.identify()
        self.reactor.advance(PING_INTERVAL - 0.1)
        self.assertEqual(lookupd.commands(), [])
        self.reactor.advance(0.1)
        self.assertEqual(lookupd.commands(), [(b"PING", None)])
        lookupd.answer(b"OK")
        self.reactor.advance(PING_INTERVAL)
        self.assertEqual(lookupd.commands(), [(b"PING", None)])

    def test_a_lookupd_that_does_not_answer_is_given_up(self):
        lookupd = self.connect()
        lookupd.identify()
        self.reactor.advance(PING_INTERVAL)
        self.reactor.advance(RESPONSE_TIMEOUT)
        self.assertTrue(lookupd.closed)
        self.flushLoggedErrors()

    def test_an_error_or_garbage_answer_to_identify_closes_and_connects_again_later(self):
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        for answer in (b"E_INVALID", b"not json", b"[1, 2]"):
            lookupd = self.connect()
            lookupd.commands()
            lookupd.answer(answer)
            self.assertTrue(lookupd.closed, answer)
            lookupd.lose()
            attempts = len(self.reactor.tcpClients)
            self.reactor.advance(PING_INTERVAL + 1)
            self.assertEqual(len(self.reactor.tcpClients), attempts + 1, answer)
        self.assertIsNone(self.peer._ready)
        errors = [str(event["error"]) for event in logged if "error" in event]
        self.assertEqual(errors[0], "lookupd returned E_INVALID")
        self.assertTrue(errors[1].startswith("parsing response"), errors)

    def test_a_response_too_large_or_unasked_for_closes_the_connection(self):
        lookupd = self.connect()
        lookupd.identify()
        lookupd.protocol.dataReceived(struct.pack(">l", 6 * 1024 * 1024))
        self.assertTrue(lookupd.closed)
        self.reactor.advance(PING_INTERVAL + 1)
        lookupd = self.connect()
        lookupd.identify()
        lookupd.answer(b"OK")
        self.assertTrue(lookupd.closed)

    def test_after_a_lost_connection_everything_there_is_then_is_registered_again(self):
        self.node.get_topic("kept").get_channel("c")
        self.node.get_topic("gone")
        lookupd = self.connect()
        lookupd.identify()
        lookupd.commands()
        lookupd.answer(b"OK", b"OK")
        lookupd.lose()
        self.node.delete_topic("gone")
        self.node.get_topic("new")
        self.assertEqual(lookupd.commands(), [])
        self.reactor.advance(PING_INTERVAL + 1)
        again = self.connect()
        again.identify()
        self.assertEqual(sorted(line for line, _ in again.commands()), [b"REGISTER kept c", b"REGISTER new"])

    def test_stopping_the_node_closes_the_peer_and_connects_no_more(self):
        lookupd = self.connect()
        lookupd.identify()
        stopped = self.node.stopService()
        self.assertTrue(lookupd.closed)
        lookupd.lose()
        self.successResultOf(stopped)
        attempts = len(self.reactor.tcpClients)
        self.reactor.advance(3600)
        self.assertEqual(len(self.reactor.tcpClients), attempts)

    def test_addresses_changed_at_run_time(self):
        self.node.set_lookupd_addresses([LOOKUPD, "127.0.0.2:4160"])
        self.assertEqual(self.reactor.tcpClients[-1][:2], ("127.0.0.2", 4160))
        first = self.peer
        self.node.set_lookupd_addresses(["127.0.0.2:4160"])
        self.assertFalse(first.running)
        self.assertEqual(list(self.node.lookup_peers), ["127.0.0.2:4160"])


class ProtocolTests(TestCase):
    """The V1 connection on its own: responses are matched to commands in order, in any chunking."""

    def setUp(self):
        from twisted.internet.task import Clock

        self.clock = Clock()

        class Peer:
            def connected(self, protocol):
                pass

            def lost(self, protocol):
                pass

        self.protocol = LookupProtocolV1(Peer(), self.clock, 1024)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def test_responses_in_any_chunking_answer_commands_in_order(self):
        first = self.protocol.command(b"PING")
        second = self.protocol.command(b"REGISTER t")
        stream = response(b"OK") + response(b"E_INVALID nope")
        for byte in range(len(stream)):
            self.protocol.dataReceived(stream[byte:byte + 1])
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (b"OK", b"E_INVALID nope"))
        self.assertEqual(self.transport.value(), b"  V1PING\nREGISTER t\n")

    def test_a_lost_connection_fails_what_waits(self):
        waiting = self.protocol.command(b"PING")
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(waiting)
