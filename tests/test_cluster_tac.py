"""tac/cluster.tac, the local-development cluster: a lookupd and two nodes registered with it, on
ports and data directories of their own, in one server process."""
from __future__ import annotations

import os

from twisted.application.service import IServiceCollection, loadApplication
from twisted.trial.unittest import TestCase

from nsqtx import NSQD, Lookupd
from nsqtx.server_process import ServerProcess
from tests.support import data_dir

TAC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tac", "cluster.tac")


class ClusterTacTests(TestCase):

    def setUp(self):
        self.directory = data_dir(self)
        cwd = os.getcwd()
        os.chdir(self.directory)
        self.addCleanup(os.chdir, cwd)
        [self.top] = list(IServiceCollection(loadApplication(TAC, "python")))

    def test_a_lookupd_and_two_nodes_registered_with_it(self):
        self.assertIsInstance(self.top, ServerProcess)
        [lookupd] = [s for s in self.top if isinstance(s, Lookupd)]
        nodes = [s for s in self.top if isinstance(s, NSQD)]
        self.assertEqual(len(nodes), 2)
        for node in nodes:
            self.assertEqual(node.options.nsqlookupd_tcp_addresses, [lookupd.options.tcp_address])
            self.assertTrue(os.path.isdir(os.path.join(self.directory, node.options.data_path)))
        for attribute in ("tcp_address", "http_address", "data_path", "node_id"):
            self.assertEqual(len({getattr(node.options, attribute) for node in nodes}), 2, attribute)
        addresses = [lookupd.options.tcp_address, lookupd.options.http_address]
        addresses += [getattr(n.options, a) for n in nodes for a in ("tcp_address", "http_address")]
        self.assertEqual(len(set(addresses)), 6)
