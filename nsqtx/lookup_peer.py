"""The node's side of nsqlookupd: one peer per --lookupd-tcp-address, speaking protocol V1.

A peer is a ClientService that reconnects with backoff. After each connect it IDENTIFYs (the node's
version, broadcast address and ports, host name), reads nsqlookupd's JSON, and REGISTERs every
topic, or each channel of a topic that has any, as nsqd does; from then on it sends REGISTER and
UNREGISTER as topics and channels come and go (told by the node's notifier), and PING every 15 s.
What happens while a peer is not connected is not queued: the next connect registers everything
that exists then, and nsqlookupd forgets a producer's registrations when its connection closes. A
lookupd that answers an error, garbage, or nothing in time is logged and its connection closed, and
the peer connects again later.
"""
from __future__ import annotations

import json
import socket
import struct
from collections import deque

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall

from nsqtx.log import NSQLogger
from nsqtx.version import NSQD_VERSION

log = NSQLogger()

MAGIC_V1 = b"  V1"
#: how often a connected peer PINGs its lookupd, as nsqd
PING_INTERVAL = 15.0
#: how long a command waits for its response before the connection is given up
RESPONSE_TIMEOUT = 5.0
_SIZE = struct.Struct(">l")


class LookupdError(Exception):
    """nsqlookupd answered an error, garbage, or not in time."""


class LookupProtocolV1(Protocol):
    """A V1 connection to nsqlookupd: commands out, their size-prefixed responses back, in order."""

    def __init__(self, peer, clock, max_response: int):
        self.peer = peer
        self.clock = clock
        self.max_response = max_response
        #: (Deferred, timeout call) of each command awaiting its response, oldest first
        self._waiting = deque()
        self._buffer = b""
        self.open = False

    def connectionMade(self):
        self.open = True
        self.transport.write(MAGIC_V1)
        self.peer.connected(self)

    def command(self, line: bytes, body=None):
        """Send a command; a Deferred firing with its response, or failing with LookupdError or the
        connection's loss."""
        data = line + b"\n"
        if body is not None:
            data += _SIZE.pack(len(body)) + body
        done = defer.Deferred()
        timeout = self.clock.callLater(RESPONSE_TIMEOUT, self._give_up, "no response to %s" % line.decode())
        self._waiting.append((done, timeout))
        self.transport.write(data)
        return done

    def dataReceived(self, data):
        self._buffer += data
        while len(self._buffer) >= 4:
            (size,) = _SIZE.unpack_from(self._buffer)
            if not 0 <= size <= self.max_response:
                self._give_up("a response of %d bytes" % size)
                return
            if len(self._buffer) < 4 + size:
                return
            response, self._buffer = self._buffer[4:4 + size], self._buffer[4 + size:]
            if not self._waiting:
                self._give_up("a response nothing asked for")
                return
            done, timeout = self._waiting.popleft()
            timeout.cancel()
            done.callback(response)

    def _give_up(self, why: str) -> None:
        """The connection can no longer be trusted: everything waiting fails, and it closes."""
        self._fail_all(LookupdError(why))
        self.transport.abortConnection()

    def connectionLost(self, reason=None):
        self.open = False
        self._fail_all(LookupdError("connection lost"))
        self.peer.lost(self)

    def _fail_all(self, error: Exception) -> None:
        waiting, self._waiting = self._waiting, deque()
        for done, timeout in waiting:
            if timeout.active():
                timeout.cancel()
            done.errback(error)


class _PeerFactory(Factory):
    noisy = False

    def __init__(self, peer):
        self.peer = peer

    def buildProtocol(self, addr):
        peer = self.peer
        return LookupProtocolV1(peer, peer.clock, peer.node.options.max_body_size)


class LookupPeer(Service):
    """One nsqlookupd, kept informed of the node's topics and channels."""

    def __init__(self, node, address: str, reactor, retry_policy=None):
        self.node = node
        self.address = address
        self.clock = reactor
        self.setName("lookupd %s" % address)
        endpoint = client_endpoint(reactor, address)
        self._backoff = retry_policy or backoffPolicy(initialDelay=1.0, maxDelay=PING_INTERVAL)
        #: connections in a row that ended before they were identified: a lookupd that keeps
        #: answering garbage is retried with growing delays
        self._failures = 0
        self._client = ClientService(endpoint, _PeerFactory(self), retryPolicy=self._retry_delay, clock=reactor)
        self._pinger = LoopingCall(self._ping)
        self._pinger.clock = reactor
        #: the connection once it is identified and its registrations are sent
        self._ready = None
        #: what nsqlookupd said of itself in answer to IDENTIFY
        self.info = None

    def __str__(self) -> str:
        return self.address

    def _retry_delay(self, attempt: int) -> float:
        return self._backoff(max(attempt, self._failures))

    # -- lifecycle

    def startService(self):
        Service.startService(self)
        log.info("LOOKUP({peer}): adding peer", peer=self)
        self.node.notifier.listen(self._changed)
        self._client.startService()
        self._pinger.start(PING_INTERVAL, now=False)

    def stopService(self):
        if not self.running:
            return defer.succeed(None)
        Service.stopService(self)
        log.info("LOOKUP({peer}): removing peer", peer=self)
        self.node.notifier.stop_listening(self._changed)
        if self._pinger.running:
            self._pinger.stop()
        return self._client.stopService()

    # -- a connection's life

    def connected(self, protocol) -> None:
        """IDENTIFY, then register everything the node has."""
        log.info("LOOKUP connecting to {peer}", peer=self)
        options = self.node.options
        identity = json.dumps({
            "version": NSQD_VERSION,
            "tcp_port": self.node.broadcast_tcp_port,
            "http_port": self.node.broadcast_http_port,
            "hostname": socket.gethostname(),
            "broadcast_address": options.broadcast_address,
        }).encode()
        done = protocol.command(b"IDENTIFY", identity)
        done.addCallback(self._identified, protocol)
        done.addErrback(self._session_failed, protocol)

    def _identified(self, response: bytes, protocol):
        if response.startswith(b"E_"):
            raise LookupdError("lookupd returned %s" % response.decode("utf-8", "replace"))
        try:
            info = json.loads(response)
        except ValueError:
            raise LookupdError("parsing response - %r" % response[:100])
        if not isinstance(info, dict):
            raise LookupdError("parsing response - %r" % response[:100])
        self.info = info
        log.info("LOOKUPD({peer}): peer info {info}", peer=self, info=info)
        if not info.get("broadcast_address"):
            log.error("LOOKUPD({peer}): no broadcast address", peer=self)
        commands = [self._sent(protocol, command) for command in self._registrations()]
        # changes from now on go out as they come, behind these REGISTERs on the same connection:
        # what changes while their answers are on the way is not lost
        if protocol.open:
            self._ready = protocol
            self._failures = 0
        return defer.gatherResults(commands, consumeErrors=True)

    def _registrations(self) -> list:
        """REGISTER for every channel, or for a topic that has none, as nsqd registers after a
        connect."""
        commands = []
        for topic in list(self.node.topics.values()):
            if topic.channels:
                commands.extend(_command(b"REGISTER", topic.name, name) for name in list(topic.channels))
            else:
                commands.append(_command(b"REGISTER", topic.name, None))
        return commands

    def _session_failed(self, failure, protocol) -> None:
        log.error("LOOKUPD({peer}): {error}", peer=self, error=failure.value)
        protocol.transport.loseConnection()

    def lost(self, protocol) -> None:
        if self._ready is protocol:
            self._ready = None
        else:
            self._failures += 1

    # -- while connected

    def _sent(self, protocol, line: bytes):
        """Send a command; its response is checked, an error one logged."""
        log.info("LOOKUPD({peer}): {command}", peer=self, command=line.decode("utf-8", "replace"))
        return protocol.command(line).addCallback(self._checked, line)

    def _checked(self, response: bytes, line: bytes) -> bytes:
        """An error response is logged, as nsqd does, and the connection goes on."""
        if response.startswith(b"E_"):
            log.error("LOOKUPD({peer}): {command} - {response}", peer=self, command=line.decode("utf-8", "replace"),
                      response=response.decode("utf-8", "replace"))
        return response

    def _changed(self, change) -> None:
        """A topic or channel came or went: tell lookupd now, if connected (else the next connect
        registers what there is)."""
        protocol = self._ready
        if protocol is None:
            return
        command = _command(b"REGISTER" if change.created else b"UNREGISTER", change.topic, change.channel)
        self._sent(protocol, command).addErrback(self._command_failed)

    def _ping(self) -> None:
        protocol = self._ready
        if protocol is not None:
            log.debug("LOOKUPD({peer}): sending heartbeat", peer=self)
            protocol.command(b"PING").addErrback(self._command_failed)

    def _command_failed(self, failure) -> None:
        log.error("LOOKUPD({peer}): {error}", peer=self, error=failure.value)


def client_endpoint(reactor, address: str):
    """The endpoint that connects to "host:port": an IP address directly, a name once resolved; as
    Go's net.Dial, an address without a host means this host."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "localhost"
    for family, endpoint in ((socket.AF_INET, TCP4ClientEndpoint), (socket.AF_INET6, TCP6ClientEndpoint)):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return endpoint(reactor, host, int(port), timeout=RESPONSE_TIMEOUT)
    return HostnameEndpoint(reactor, host, int(port), timeout=RESPONSE_TIMEOUT)


def _command(verb: bytes, topic: str, channel) -> bytes:
    if channel is None:
        return b"%s %s" % (verb, topic.encode())
    return b"%s %s %s" % (verb, topic.encode(), channel.encode())
