"""A listening port as a service (nsqtx.listener): the backlog it listens with."""
from __future__ import annotations

import os
import socket

from twisted.trial.unittest import TestCase

from nsqtx import listener
from tests.support import data_dir, make_node


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
