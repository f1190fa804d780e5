"""The node: owns the topics, the listeners, the connected clients and the queue scan.

`NSQD` is both what `twistd nsqtx` runs and what a Python program embeds::

    node = NSQD(Options(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0"))
    node.startService()          # listening now; node.tcp_port / node.http_port are the bound ports
    ...
    yield node.stopService()     # closes listeners and clients
"""
from __future__ import annotations

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import LoopingCall

from nsqtx.guid import GUIDFactory
from nsqtx.http_api import make_site
from nsqtx.log import NSQLogger, set_log_level
from nsqtx.options import Options, parse_address
from nsqtx.protocol_v2 import V2Factory
from nsqtx.topic import Topic
from nsqtx.version import NSQD_VERSION, __version__

log = NSQLogger()

#: how long shutdown waits for clients to take their last bytes before cutting them off
_CLOSE_GRACE = 2.0


class NSQD(Service):
    name = "nsqd"

    def __init__(self, options: Options | None = None, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        #: everything time-related goes through this (a task.Clock in tests)
        self.clock = reactor
        self.options = options if options is not None else Options()
        self.options.validate()
        self.topics = {}
        self.clients = {}
        self.guid = GUIDFactory(self.options.node_id)
        self.start_time = 0.0
        #: None while healthy, else the last error (shown by /ping and /stats)
        self.health_error = None
        self.tcp_port = None
        self.http_port = None
        self._listeners = []
        self._scanner = LoopingCall(self.scan_queues)
        self._scanner.clock = self.clock
        self._all_closed = None

    def now_ns(self) -> int:
        return int(self.clock.seconds() * 1e9)

    # -- lifecycle

    def startService(self):
        options = self.options
        set_log_level(options.log_level)
        host, port = parse_address(options.tcp_address, "--tcp-address")
        tcp = self.reactor.listenTCP(port, V2Factory(self), interface=host)
        self._listeners.append(tcp)
        host, port = parse_address(options.http_address, "--http-address")
        http = self.reactor.listenTCP(port, make_site(self), interface=host)
        self._listeners.append(http)
        self.tcp_port = tcp.getHost().port
        self.http_port = http.getHost().port
        self.start_time = self.clock.seconds()
        self._scanner.start(options.queue_scan_interval, now=False)
        Service.startService(self)
        log.info("nsqtx v{version} (nsqd {nsqd} protocol) TCP: listening on {tcp}, HTTP: listening on {http}",
                 version=__version__, nsqd=NSQD_VERSION, tcp=tcp.getHost(), http=http.getHost())

    def stopService(self):
        Service.stopService(self)
        if self._scanner.running:
            self._scanner.stop()
        waits = [defer.maybeDeferred(listener.stopListening) for listener in self._listeners]
        self._listeners = []
        for topic in list(self.topics.values()):
            topic.close()
        if self.clients:
            self._all_closed = defer.Deferred()
            for client in list(self.clients):
                client.close()
            if self.clients:
                cutoff = self.clock.callLater(_CLOSE_GRACE, self._abort_clients)
                self._all_closed.addBoth(lambda r: cutoff.active() and cutoff.cancel())
                waits.append(self._all_closed)
        log.info("nsqtx: stopping")
        return defer.DeferredList(waits)

    def _abort_clients(self) -> None:
        for client in list(self.clients):
            client.transport.abortConnection()

    # -- clients

    def client_connected(self, client) -> None:
        self.clients[client] = None

    def client_disconnected(self, client) -> None:
        self.clients.pop(client, None)
        if not self.clients and self._all_closed is not None:
            done, self._all_closed = self._all_closed, None
            done.callback(None)

    # -- topics

    def get_topic(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = Topic(self, name)
            log.info("TOPIC({topic}): created", topic=name)
        return topic

    def get_existing_topic(self, name: str):
        return self.topics.get(name)

    def delete_topic(self, name: str) -> bool:
        topic = self.topics.pop(name, None)
        if topic is None:
            return False
        log.info("TOPIC({topic}): deleting", topic=name)
        topic.close()
        return True

    def scan_queues(self) -> None:
        """nsqd's queueScanLoop: expire in-flight and release deferred messages of every channel."""
        now = self.clock.seconds()
        for topic in list(self.topics.values()):
            for channel in list(topic.channels.values()):
                channel.scan(now)
