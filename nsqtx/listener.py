"""A listening TCP port as a service of a server's tree."""
from __future__ import annotations

import socket

from twisted.application.service import Service
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
    SYN to be sent again; 1000 clients connecting at once and publishing one message each took 4 to
    9 s, against 0.2 s with somaxconn (docs/performance.md). Where the file is missing or holds no
    positive number, the platform's SOMAXCONN."""
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
