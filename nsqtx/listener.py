"""A listening TCP port as a service of a server's tree, the connections a server has accepted, and
the shape nsqd and nsqlookupd share: a service tree with a TCP and an HTTP listener."""
from __future__ import annotations

import socket

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

from nsqtx.options import parse_address


#: where Linux keeps the largest accept queue a listen() may ask for
SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"


def listen_backlog() -> int:
    """The accept queue to ask for: the kernel's somaxconn, as Go's net package asks (Linux caps
    any larger request at it anyway).

    Twisted's default of 50 overflows when clients connect all at once (a restart, a network blip):
    the kernel drops what does not fit, and each of those clients waits a second or more for its
    SYN to be sent again (docs/performance.md, "The listen backlog"). Where the file is missing or
    holds no positive number, the platform's SOMAXCONN."""
    try:
        with open(SOMAXCONN_PATH, "rb") as f:
            value = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return socket.SOMAXCONN
    return value if value > 0 else socket.SOMAXCONN


def server_endpoint(reactor, address: str, flag: str):
    """The endpoint that listens on "host:port" (IPv6 hosts in brackets), with the kernel's largest
    backlog (:func:`listen_backlog`)."""
    host, port = parse_address(address, flag)
    endpoint = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
    return endpoint(reactor, port, backlog=listen_backlog(), interface=host)


class Listener(Service):
    """A listening port as a service, as Twisted's StreamServerEndpointService, keeping the port it
    bound (for an address with port 0). A failure to listen raises from startService."""

    def __init__(self, endpoint, factory):
        self.endpoint = endpoint
        self.factory = factory
        self.port = None

    def startService(self):
        Service.startService(self)
        failures = []
        self.endpoint.listen(self.factory).addCallbacks(self._listening, failures.append)
        if failures:
            failures[0].raiseException()

    def _listening(self, port) -> None:
        self.port = port

    def stopService(self):
        Service.stopService(self)
        port, self.port = self.port, None
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)


class Connections(dict):
    """A server's open connections (the keys, in the order they came), and a Deferred for the moment
    the last one is gone, which a clean stop waits for."""

    def __init__(self):
        dict.__init__(self)
        self._all_closed = None

    def add(self, connection) -> None:
        self[connection] = None

    def discard(self, connection) -> None:
        self.pop(connection, None)
        if not self and self._all_closed is not None:
            done, self._all_closed = self._all_closed, None
            done.callback(None)

    def all_closed(self):
        """A Deferred that fires once no connection is left (at once if none is)."""
        if not self:
            return defer.succeed(None)
        if self._all_closed is None:
            self._all_closed = defer.Deferred()
        return self._all_closed

    def close_all(self, clock, grace: float):
        """Close every connection (each a protocol with close() and a transport), so that what it was
        sent goes out first; abort those still open after `grace` seconds, whose peers do not read.
        A Deferred that fires once all are gone."""
        all_closed = self.all_closed()
        for connection in list(self):
            connection.close()
        if not self:
            return all_closed
        cutoff = clock.callLater(grace, self._abort_all)
        return all_closed.addBoth(_cancel, cutoff)

    def _abort_all(self) -> None:
        for connection in list(self):
            connection.transport.abortConnection()


def _cancel(result, call):
    if call.active():
        call.cancel()
    return result


class ListeningServer(MultiService):
    """A server whose children include a TCP and an HTTP listener on its options' --tcp-address and
    --http-address (nsqd, nsqlookupd), with the connections it has accepted. Subclasses set
    `options` and call listen() while building their tree."""

    def __init__(self, reactor=None):
        """`reactor` defaults to the global one."""
        MultiService.__init__(self)
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        #: everything time-related goes through this (a task.Clock in tests)
        self.clock = reactor
        self.clients = Connections()
        self.tcp = self.http = None

    def listen(self, tcp_factory, http_factory) -> None:
        """Add the two listeners as children, in this order (they stop in the reverse one)."""
        for name, factory in (("tcp", tcp_factory), ("http", http_factory)):
            flag = "--%s-address" % name
            listener = Listener(server_endpoint(self.reactor, getattr(self.options, name + "_address"), flag), factory)
            listener.setName(name)
            listener.setServiceParent(self)
            setattr(self, name, listener)

    @property
    def tcp_port(self):
        """The TCP port it listens on, None while it does not."""
        return self.tcp.port.getHost().port if self.tcp.port is not None else None

    @property
    def http_port(self):
        return self.http.port.getHost().port if self.http.port is not None else None
