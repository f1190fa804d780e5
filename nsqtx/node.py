"""The node: a service tree that owns the topics, the connected clients and the node's health.

`NSQD` is both what `twistd nsqtx` runs and what a Python program embeds::

    node = NSQD(Options(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0"))
    node.startService()          # listening now; node.tcp_port / node.http_port are the bound ports
    ...
    yield node.stopService()     # closes listeners and clients, and writes what is queued to disk

Its children are the queue scanner, the TCP and HTTP listeners, and a peer for each nsqlookupd it
registers with (:mod:`nsqtx.lookup_peer`). Disk work that may block runs through one
:class:`~nsqtx.disk_worker.IDiskWorker`.
"""
from __future__ import annotations

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.protocols.tls import TLSMemoryBIOFactory

from nsqtx import metadata
from nsqtx.auth import AuthClient
from nsqtx.backend_queue import DiskBackend, DiskEncoder, DroppingQueue
from nsqtx.dirlock import DirLock
from nsqtx.disk_worker import ThreadPoolWorker
from nsqtx.diskqueue import DiskQueue
from nsqtx.guid import GUIDFactory
from nsqtx.health import Health
from nsqtx.http_api import make_site
from nsqtx.listener import Listener, ListeningServer, server_endpoint
from nsqtx.log import NSQLogger, set_log_level
from nsqtx.lookup_peer import LookupPeer
from nsqtx.message import MIN_DISK_LENGTH
from nsqtx.names import is_valid_channel_name, is_valid_topic_name
from nsqtx.notifier import Notifier
from nsqtx.options import Options, check_data_path
from nsqtx.protocol_v2 import V2Factory
from nsqtx.tls import server_tls
from nsqtx.topic import Topic
from nsqtx.version import NSQD_VERSION, __version__

log = NSQLogger()

#: how long shutdown waits for clients to take their last bytes before cutting them off
_CLOSE_GRACE = 2.0


class NSQD(ListeningServer):
    name = "nsqd"

    def __init__(self, options: Options | None = None, reactor=None, disk_worker=None):
        """`reactor` defaults to the global one; `disk_worker` to a
        :class:`~nsqtx.disk_worker.ThreadPoolWorker` of that reactor (a test on a fake reactor gives
        an :class:`~nsqtx.disk_worker.InlineWorker`)."""
        ListeningServer.__init__(self, reactor)
        reactor = self.reactor
        self.options = options if options is not None else Options()
        self.options.validate()
        self.disk_worker = disk_worker if disk_worker is not None else ThreadPoolWorker(reactor)
        #: held from startService until what stopService writes is on disk
        self.data_lock = DirLock(self.options.data_path)
        self.topics = {}
        self.guid = GUIDFactory(self.options.node_id)
        self.start_time = 0.0
        self.health = Health()
        #: topic and channel creations and deletions, for metadata persistence and lookupd peers
        self.notifier = Notifier()
        self.notifier.listen(self._persist_change)
        self._disk_encoder = DiskEncoder()
        #: while metadata is being loaded, changes are not written back one by one
        self._loading = False
        scanner = TimerService(self.options.queue_scan_interval, self.scan_queues)
        scanner.clock = reactor
        scanner.setName("queue-scanner")
        scanner.setServiceParent(self)
        self.listen(V2Factory(self), make_site(self))
        #: the TLS context of IDENTIFY's tls_v1 and the HTTPS listener; None without a certificate
        self.tls = server_tls(self.options)
        #: who AUTH asks about a secret; None without --auth-http-address (AUTH disabled)
        self.auth = AuthClient(reactor, self.options) if self.options.auth_http_addresses else None
        self.https = None
        if self.tls is not None and self.options.https_address:
            self.https = Listener(server_endpoint(reactor, self.options.https_address, "--https-address"),
                                  TLSMemoryBIOFactory(self.tls, False, make_site(self, tls=True)))
            self.https.setName("https")
            self.https.setServiceParent(self)
        #: address -> LookupPeer, in the order given
        self.lookup_peers = {}
        self.set_lookupd_addresses(self.options.nsqlookupd_tcp_addresses)

    @property
    def https_port(self):
        return self.https.port.getHost().port if self.https is not None and self.https.port is not None else None

    @property
    def broadcast_tcp_port(self) -> int:
        """The TCP port announced to nsqlookupd: --broadcast-tcp-port, or the one listened on."""
        return self.options.broadcast_tcp_port or self.tcp_port or 0

    @property
    def broadcast_http_port(self) -> int:
        return self.options.broadcast_http_port or self.http_port or 0

    def set_lookupd_addresses(self, addresses) -> None:
        """Register with exactly these nsqlookupds: new peers connect, removed ones close (nsqd's
        --lookupd-tcp-address, and PUT /config/nsqlookupd_tcp_addresses)."""
        self.options.nsqlookupd_tcp_addresses = list(addresses)
        for address, peer in list(self.lookup_peers.items()):
            if address not in addresses:
                del self.lookup_peers[address]
                peer.disownServiceParent()
        for address in addresses:
            if address not in self.lookup_peers:
                peer = self.lookup_peers[address] = LookupPeer(self, address, self.reactor)
                peer.setServiceParent(self)

    def now_ns(self) -> int:
        return int(self.clock.seconds() * 1e9)

    # -- durability

    def backend_queue(self, name: str, ephemeral: bool):
        """Where a topic's or channel's messages beyond --mem-queue-size go (see
        :mod:`nsqtx.backend_queue`)."""
        if ephemeral:
            return DroppingQueue()
        options = self.options
        queue = DiskQueue(name, options.data_path, options.max_bytes_per_file, MIN_DISK_LENGTH,
                          options.max_msg_size + MIN_DISK_LENGTH, options.sync_every, options.sync_timeout,
                          self.clock, self.disk_worker)
        return DiskBackend(queue, self._disk_encoder, self.health)

    def metadata_changed(self) -> None:
        if not self._loading:
            self._persist_metadata()

    def _persist_change(self, change) -> None:
        """nsqd.dat lists the durable topics and channels: rewritten when one comes or goes."""
        if not change.ephemeral:
            self.metadata_changed()

    def _persist_metadata(self) -> None:
        try:
            metadata.write(self.options.data_path, metadata.snapshot(self.topics.values()))
        except OSError as err:
            log.error("failed to persist metadata - {err}", err=err)

    def _load_metadata(self) -> None:
        """Bring back the topics, channels and pause states of the last run (nsqd's LoadMetadata)."""
        self._loading = True
        try:
            for name, paused, channels in metadata.read(self.options.data_path):
                if not is_valid_topic_name(name):
                    log.warn("skipping creation of invalid topic {name}", name=name)
                    continue
                topic = self.get_topic(name)
                topic.paused = paused
                for channel_name, channel_paused in channels:
                    if not is_valid_channel_name(channel_name):
                        log.warn("skipping creation of invalid channel {name}", name=channel_name)
                        continue
                    topic.get_channel(channel_name).paused = channel_paused
        finally:
            self._loading = False
        self._persist_metadata()

    # -- lifecycle

    def startService(self):
        """Lock the data path (see :mod:`nsqtx.dirlock`), load the last run's topics and channels,
        then start the scanner and listen. A failure releases the lock, so that a program may try
        again."""
        options = self.options
        set_log_level(options.log_level)
        check_data_path(options.data_path)
        self.data_lock.lock()
        try:
            self._load_metadata()
            self.start_time = self.clock.seconds()
            MultiService.startService(self)
        except BaseException:
            self.data_lock.unlock()
            raise
        log.info("nsqtx v{version} (nsqd {nsqd} protocol) TCP: listening on {tcp}, HTTP: listening on {http}",
                 version=__version__, nsqd=NSQD_VERSION, tcp=self.tcp.port.getHost(),
                 http=self.http.port.getHost())

    def stopService(self):
        """Stop listening and scanning, write every queued, in-flight and deferred message to disk,
        and disconnect the clients. A Deferred that fires once all that is done. The data path is
        unlocked as soon as everything is on disk, without waiting for slow clients to go."""
        Service.stopService(self)
        waits = [defer.maybeDeferred(service.stopService) for service in reversed(list(self))]
        self._persist_metadata()
        on_disk = defer.DeferredList([topic.close() for topic in list(self.topics.values())])
        waits.append(on_disk.addCallback(lambda _: self.data_lock.unlock()))
        waits.append(self.clients.close_all(self.clock, _CLOSE_GRACE))
        log.info("nsqtx: stopping")
        return defer.DeferredList(waits)

    # -- clients

    def client_connected(self, client) -> None:
        self.clients.add(client)

    def client_disconnected(self, client) -> None:
        self.clients.discard(client)

    # -- topics

    def get_topic(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = Topic(self, name)
            log.info("TOPIC({topic}): created", topic=name)
            self.notifier.created(name, None, topic.ephemeral)
        return topic

    def get_existing_topic(self, name: str):
        return self.topics.get(name)

    def delete_topic(self, name: str) -> bool:
        topic = self.topics.pop(name, None)
        if topic is None:
            return False
        log.info("TOPIC({topic}): deleting", topic=name)
        topic.delete()
        return True

    def scan_queues(self) -> None:
        """nsqd's queueScanLoop: expire in-flight and release deferred messages of every channel."""
        now = self.clock.seconds()
        for topic in list(self.topics.values()):
            for channel in list(topic.channels.values()):
                channel.scan(now)
