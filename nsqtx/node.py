"""The node: owns the topics, the listeners, the connected clients and the queue scan.

`NSQD` is both what `twistd nsqtx` runs and what a Python program embeds::

    node = NSQD(Options(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0"))
    node.startService()          # listening now; node.tcp_port / node.http_port are the bound ports
    ...
    yield node.stopService()     # closes listeners and clients
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import LoopingCall

from nsqtx import metadata
from nsqtx.diskqueue import DiskQueue
from nsqtx.errors import QueueError
from nsqtx.files import remove_file
from nsqtx.guid import GUIDFactory
from nsqtx.http_site import make_site
from nsqtx.log import NSQLogger, set_log_level
from nsqtx.message import MIN_DISK_LENGTH, to_disk
from nsqtx.names import is_valid_channel_name, is_valid_topic_name
from nsqtx.options import Options, check_data_path, parse_address
from nsqtx.protocol_v2 import V2Factory
from nsqtx.topic import Topic
from nsqtx.version import NSQD_VERSION, __version__

log = NSQLogger()

#: how long shutdown waits for clients to take their last bytes before cutting them off
_CLOSE_GRACE = 2.0
#: syncs of different disk queues that may run at once (one queue's run one after the other)
_SYNC_THREADS = 4


def _cancel(result, call):
    if call.active():
        call.cancel()
    return result


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
        #: while metadata is being loaded, changes are not written back one by one
        self._loading = False
        #: (batch, its disk encoding) of the last batch written to a disk queue: a publish fanned
        #: out to several channels that all spill to disk is converted once
        self._last_to_disk = (None, None)
        self._syncs = None
        #: set by stopService: the sync threads are shut down and must not start again
        self._stopped = False

    def now_ns(self) -> int:
        return int(self.clock.seconds() * 1e9)

    # -- durability

    def backend_queue(self, name: str) -> DiskQueue:
        options = self.options
        return DiskQueue(name, options.data_path, options.max_bytes_per_file, MIN_DISK_LENGTH,
                         options.max_msg_size + MIN_DISK_LENGTH, options.sync_every, options.sync_timeout,
                         self.clock, self._remove_file, self._sync_executor())

    def _sync_executor(self):
        """The threads disk queues sync in (see :mod:`nsqtx.diskqueue`); none under a fake reactor
        (tests), where syncs run at once, nor once the node has stopped: a topic created then (by an
        HTTP request still in progress) would start threads that nothing shuts down."""
        if self._syncs is None and not self._stopped and getattr(self.clock, "callInThread", None) is not None:
            self._syncs = ThreadPoolExecutor(max_workers=_SYNC_THREADS, thread_name_prefix="nsqtx-sync")
        return self._syncs

    def _remove_file(self, path: str) -> None:
        """Disk queues' fully read files go in the reactor's thread pool: removing a 100 MB file
        blocked for 50 ms here. A fake reactor (tests) has no threads: there it is done at once."""
        call_in_thread = getattr(self.clock, "callInThread", None)
        if call_in_thread is None:
            remove_file(path)
        else:
            call_in_thread(remove_file, path)

    def write_backend(self, backend: DiskQueue, batch) -> None:
        """Write a batch to a disk queue; a failure marks the node unhealthy (/ping, /stats) and
        raises QueueError, which the publisher sees as E_PUB_FAILED / a 503."""
        last, encoded = self._last_to_disk
        if last is not batch:
            encoded = to_disk(batch)
            self._last_to_disk = (batch, encoded)
        try:
            backend.put(encoded)
        except (OSError, ValueError) as err:
            self.health_error = "failed to write message to backend - %s" % (err,)
            log.error("DISKQUEUE({name}): {error}", name=backend.name, error=self.health_error)
            raise QueueError(self.health_error)
        if self.health_error is not None:
            self.health_error = None

    def flush_to_backend(self, backend: DiskQueue, batches) -> None:
        """Shutdown's last writes: a failure is logged (by write_backend) and shutdown carries on."""
        try:
            for batch in batches:
                if batch.count:
                    self.write_backend(backend, batch)
        except QueueError:
            pass

    def metadata_changed(self) -> None:
        if not self._loading:
            self._persist_metadata()

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
        options = self.options
        set_log_level(options.log_level)
        check_data_path(options.data_path)
        self._load_metadata()
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
        self._stopped = False
        Service.startService(self)
        log.info("nsqtx v{version} (nsqd {nsqd} protocol) TCP: listening on {tcp}, HTTP: listening on {http}",
                 version=__version__, nsqd=NSQD_VERSION, tcp=tcp.getHost(), http=http.getHost())

    def stopService(self):
        Service.stopService(self)
        self._stopped = True
        if self._scanner.running:
            self._scanner.stop()
        waits = [defer.maybeDeferred(listener.stopListening) for listener in self._listeners]
        self._listeners = []
        self._persist_metadata()
        for topic in list(self.topics.values()):
            topic.close()
        if self._syncs is not None:
            self._syncs.shutdown()  # closing the queues waited for their syncs
            self._syncs = None
        if self.clients:
            self._all_closed = defer.Deferred()
            for client in list(self.clients):
                client.close()
            if self.clients:
                cutoff = self.clock.callLater(_CLOSE_GRACE, self._abort_clients)
                waits.append(self._all_closed.addBoth(_cancel, cutoff))
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
            if not topic.ephemeral:
                self.metadata_changed()
        return topic

    def get_existing_topic(self, name: str):
        return self.topics.get(name)

    def delete_topic(self, name: str) -> bool:
        topic = self.topics.pop(name, None)
        if topic is None:
            return False
        log.info("TOPIC({topic}): deleting", topic=name)
        topic.delete()
        if not topic.ephemeral:
            self.metadata_changed()
        return True

    def scan_queues(self) -> None:
        """nsqd's queueScanLoop: expire in-flight and release deferred messages of every channel."""
        now = self.clock.seconds()
        for topic in list(self.topics.values()):
            for channel in list(topic.channels.values()):
                channel.scan(now)
