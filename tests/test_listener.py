"""nsqtx.listener: the listening port as a service (and the backlog it listens with), and a server's
set of open connections."""
from __future__ import annotations

import os
import socket

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import TestCase

from nsqtx import listener
from nsqtx.listener import Connections, Listener, server_endpoint
from tests.support import data_dir, make_node


class FakeConnection:
    """A connection whose close() leaves it open until the test says its peer has read everything."""

    def __init__(self, connections):
        self.connections = connections
        self.transport = StringTransport()
        connections.add(self)

    def close(self):
        self.transport.loseConnection()

    def gone(self):
        self.connections.discard(self)


class ConnectionsTests(TestCase):
    def test_in_the_order_they_came(self):
        connections = Connections()
        a, b = FakeConnection(connections), FakeConnection(connections)
        self.assertEqual(list(connections), [a, b])
        a.gone()
        a.gone()
        self.assertEqual(dict(connections), {b: None})

    def test_all_closed(self):
        connections = Connections()
        self.successResultOf(connections.all_closed())
        a, b = FakeConnection(connections), FakeConnection(connections)
        closed = connections.all_closed()
        self.assertIs(connections.all_closed(), closed)
        a.gone()
        self.assertNoResult(closed)
        b.gone()
        self.successResultOf(closed)

    def test_close_all_closes_and_waits(self):
        connections, clock = Connections(), Clock()
        a, b = FakeConnection(connections), FakeConnection(connections)
        closed = connections.close_all(clock, 2.0)
        self.assertEqual((a.transport.disconnecting, b.transport.disconnecting), (True, True))
        a.gone()
        b.gone()
        self.successResultOf(closed)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_close_all_aborts_those_still_open_after_the_grace(self):
        connections, clock = Connections(), Clock()
        a, b = FakeConnection(connections), FakeConnection(connections)
        aborted = []
        b.transport.abortConnection = lambda: aborted.append(b)
        closed = connections.close_all(clock, 2.0)
        a.gone()
        clock.advance(1.999)
        self.assertEqual(aborted, [])
        clock.advance(0.001)
        self.assertEqual(aborted, [b])
        b.gone()
        self.successResultOf(closed)

    def test_close_all_of_none(self):
        self.successResultOf(Connections().close_all(Clock(), 2.0))


class ListenerTests(TestCase):
    def test_keeps_the_bound_port_until_stopped(self):
        reactor = MemoryReactorClock()
        listener = Listener(server_endpoint(reactor, "127.0.0.1:0", "--tcp-address"), Factory())
        listener.startService()
        self.assertIsNotNone(listener.port)
        self.successResultOf(listener.stopService())
        self.assertIsNone(listener.port)

    def test_failure_to_listen_raises_from_start(self):
        reactor = MemoryReactorClock()

        def refuse(*args, **kwargs):
            raise CannotListenError("127.0.0.1", 1, OSError("in use"))

        reactor.listenTCP = refuse
        listener = Listener(server_endpoint(reactor, "127.0.0.1:1", "--tcp-address"), Factory())
        self.assertRaises(CannotListenError, listener.startService)

    def test_ipv6_address(self):
        reactor = MemoryReactorClock()
        server_endpoint(reactor, "[::1]:4150", "--tcp-address").listen(Factory())
        [(port, _, _, interface)] = reactor.tcpServers
        self.assertEqual((interface, port), ("::1", 4150))


class ListenBacklogTests(TestCase):
    def somaxconn(self, content: bytes | None) -> int:
        """listen_backlog() with the kernel's file holding `content` (None: no such file)."""
        path = os.path.join(data_dir(self), "somaxconn")
        if content is not None:
            with open(path, "wb") as f:
                f.write(content)
        self.patch(listener, "SOMAXCONN_PATH", path)
        return listener.listen_backlog()

    def test_the_kernels_somaxconn_as_go_listens(self):
        self.assertEqual(self.somaxconn(b"4096\n"), 4096)
        self.assertEqual(self.somaxconn(b"65535\n"), 65535)

    def test_without_a_usable_somaxconn_the_platforms(self):
        for content in (None, b"", b"0\n", b"many\n"):
            self.assertEqual(self.somaxconn(content), socket.SOMAXCONN, content)

    def test_the_nodes_tcp_and_http_ports_listen_with_it(self):
        """Twisted's default backlog of 50 overflowed when a few hundred clients (re)connected at
        once; see docs/performance.md for the storm it cost."""
        self.somaxconn(b"3000\n")
        node, reactor = make_node(self)
        node.startService()
        self.addCleanup(node.stopService)
        self.assertEqual([(interface, backlog) for _, _, backlog, interface in reactor.tcpServers],
                         [("127.0.0.1", 3000), ("127.0.0.1", 3000)])
