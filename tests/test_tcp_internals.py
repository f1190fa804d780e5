"""Only a Twisted TCP connection that has every attribute a module reads counts as having the internals."""
from __future__ import annotations

from twisted.internet.tcp import Connection
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from nsqtx.tcp_internals import has_internals


class HasInternalsTests(TestCase):
    def test_a_tcp_connection_has_them_while_it_has_every_name(self):
        connection = Connection.__new__(Connection)
        connection.socket = object()
        self.assertTrue(has_internals(connection, ("socket", "doRead", "_dataReceived")))
        self.assertFalse(has_internals(connection, ("socket", "a_name_twisted_renamed")))

    def test_another_transport_has_none_even_with_the_names(self):
        transport = StringTransport()
        self.assertFalse(has_internals(transport, ()))
        self.assertFalse(has_internals(transport, ("write",)))
