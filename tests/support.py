"""In-memory harness: a node on a fake reactor and clients on StringTransports, so every timer
(heartbeats, flushes, timeouts, deferrals) is driven by advancing the clock, never by sleeping."""
from __future__ import annotations

import json
import shutil
import socket
import struct
import sys
import tempfile

from twisted.internet import defer, protocol, reactor
from twisted.internet.address import IPv4Address
from twisted.logger import globalLogPublisher
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import TestCase

from nsqtx.disk_worker import InlineWorker
from nsqtx.message import new_batch
from nsqtx.node import NSQD
from nsqtx.options import Options
from nsqtx.protocol_v2 import V2Factory

RESPONSE, ERROR, MESSAGE = 0, 1, 2


def encode(timestamp: int, attempts: int, msg_id: bytes, body: bytes) -> bytes:
    """An encoded message as nsqd lays it out: timestamp, attempts, ID, body."""
    return struct.pack(">qH", timestamp, attempts) + msg_id + body


def in_memory(timestamp: int, attempts: int, msg_id: bytes, body: bytes) -> bytes:
    """A message that has had `attempts` deliveries, encoded as it waits in memory: the frame of its
    next delivery without the size (frame type, timestamp, attempts of that delivery, ID, body).
    Attempts wrap as nsqd's uint16 does."""
    return struct.pack(">LqH", MESSAGE, timestamp, (attempts + 1) % 65536) + msg_id + body


def from_memory(data: bytes) -> bytes:
    """A message encoded as it waits in memory, encoded as nsqd encodes it (attempts made so far)."""
    kind, timestamp, next_attempt = struct.unpack_from(">LqH", data)
    assert kind == MESSAGE, kind
    return encode(timestamp, (next_attempt - 1) % 65536, data[14:30], data[30:])


def queued(queue) -> list:
    """The messages waiting in a memory queue, encoded as nsqd encodes them."""
    return [from_memory(data) for data in queue]


def message_id(data: bytes) -> bytes:
    return data[10:26]


def body(data: bytes) -> bytes:
    return data[26:]


def attempts(data: bytes) -> int:
    return struct.unpack_from(">H", data, 8)[0]


def ids(factory, count: int) -> list:
    """`count` IDs from a GUIDFactory, joined from its runs as a message would join them."""
    return [prefix + suffix for prefix, suffixes in factory.runs(count) for suffix in suffixes]


def data_dir(case) -> str:
    """A fresh --data-path for one test, so no test sees another's nsqd.dat or queue files."""
    path = tempfile.mkdtemp(prefix="nsqtx-test-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


def start_real_node(case, **overrides):
    """A node listening on real loopback ports with its own data path, stopped at cleanup; the test
    also fails if the server logged any traceback meanwhile."""
    tracebacks = []

    def observe(event):
        if "log_failure" in event:
            tracebacks.append(event)

    def check():
        if tracebacks:
            case.fail("the server logged tracebacks:\n" + "\n".join(
                event["log_failure"].getTraceback() for event in tracebacks))

    globalLogPublisher.addObserver(observe)
    case.addCleanup(check)
    case.addCleanup(globalLogPublisher.removeObserver, observe)
    overrides.setdefault("data_path", data_dir(case))
    node = NSQD(Options(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0", **overrides))
    node.startService()
    case.addCleanup(node.stopService)
    return node


@defer.inlineCallbacks
def accept_real_connection(case, protocol_class):
    """(server-side protocol, client socket) over a real loopback TCP connection, both closed at
    cleanup. `protocol_class`'s connectionMade fires its factory's `accepted` with itself."""
    factory = protocol.Factory.forProtocol(protocol_class)
    factory.accepted = defer.Deferred()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    case.addCleanup(port.stopListening)
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    case.addCleanup(client.close)
    proto = yield factory.accepted
    case.addCleanup(proto.transport.abortConnection)
    return proto, client


def make_node(case, disk_worker=None, **overrides):
    """A node on a fake reactor with its own data directory, its disk work done at once (or by
    `disk_worker`)."""
    overrides.setdefault("data_path", data_dir(case))
    options = Options(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0", **overrides)
    reactor = MemoryReactorClock()
    reactor.advance(1000.0)
    return NSQD(options, reactor=reactor, disk_worker=disk_worker or InlineWorker()), reactor


class LazyJob:
    def __init__(self, key, fn, args):
        self.key = key
        self.fn = fn
        self.args = args
        self.done = defer.Deferred()


class LazyWorker:
    """An IDiskWorker that runs each job only when the test asks, in the order submitted, so that a
    test sees what the queue does while a job is under way."""

    def __init__(self):
        self.jobs = []

    def submit(self, key, fn, *args):
        job = LazyJob(key, fn, args)
        self.jobs.append(job)
        return job.done

    def run_next(self):
        job = self.jobs.pop(0)
        defer.maybeDeferred(job.fn, *job.args).chainDeferred(job.done)

    def run_all(self):
        while self.jobs:
            self.run_next()



class ConnCase(TestCase):
    """A node on a fake reactor (self.node, self.clock), and client connections to it."""

    def setUp(self):
        self.node, self.clock = make_node(self)

    def conn(self, port=4000) -> Conn:
        return Conn(self.node, port).magic()

    def assertError(self, conn, text: bytes, fatal=True):
        frames = conn.frames()
        self.assertEqual(frames, [(ERROR, text)])
        self.assertEqual(conn.closed, fatal)

    def assertOK(self, conn):
        self.assertEqual(conn.frames(), [(RESPONSE, b"OK")])
        self.assertFalse(conn.closed)


class NodeCase(TestCase):
    """A node on a fake reactor (self.node, self.clock), with consumers that get every message at
    once and a publish that puts straight into a topic."""

    def setUp(self):
        self.node, self.clock = make_node(self)

    def consumer(self, topic=b"t", channel=b"c", rdy=10, port=5000):
        conn = Conn(self.node, port).magic()
        conn.identify(output_buffer_timeout=-1)
        conn.subscribe(topic, channel, rdy)
        conn.frames()
        return conn

    def publish(self, *bodies, topic="t"):
        self.node.get_topic(topic).put(new_batch(self.node, bodies))


class CountingTransport(StringTransport):
    """Counts write calls and their sizes, so tests can hold the server to one write per flush."""

    def __init__(self, *args, **kwargs):
        StringTransport.__init__(self, *args, **kwargs)
        self.writes = 0
        self.write_sizes = []

    def write(self, data):
        self.writes += 1
        self.write_sizes.append(len(data))
        StringTransport.write(self, data)


class Conn:
    """One client connection: send commands, read back parsed frames."""

    def __init__(self, node, port=4000):
        self.proto = V2Factory(node).buildProtocol(None)
        self.transport = CountingTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", port))
        self.transport.protocol = self.proto
        self.proto.makeConnection(self.transport)
        self._pending = b""

    @property
    def client(self):
        """The server's state of this connection (a ClientV2)."""
        return self.proto.client

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def magic(self) -> Conn:
        self.send(b"  V2")
        return self

    def command(self, line: bytes, body: bytes | None = None) -> None:
        data = line + b"\n"
        if body is not None:
            data += struct.pack(">l", len(body)) + body
        self.send(data)

    def identify(self, **fields) -> None:
        self.command(b"IDENTIFY", json.dumps(fields).encode())

    def subscribe(self, topic=b"t", channel=b"c", rdy=None) -> None:
        self.command(b"SUB " + topic + b" " + channel)
        if rdy is not None:
            self.command(b"RDY %d" % rdy)

    def frames(self):
        """Every frame written since the last call, as (type, data) pairs."""
        data = self._pending + self.transport.value()
        self.transport.clear()
        out = []
        while len(data) >= 8:
            size, kind = struct.unpack(">lL", data[:8])
            if len(data) < 4 + size:
                break
            out.append((kind, data[8:4 + size]))
            data = data[4 + size:]
        self._pending = data
        return out

    def messages(self):
        """Every message frame since the last call, as (attempts, id, body), failing on other frames."""
        out = []
        for kind, data in self.frames():
            assert kind == MESSAGE, (kind, data)
            out.append(decode(data))
        return out

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting

    def lose(self) -> None:
        self.proto.connectionLost(None)


def disconnect_all(node) -> None:
    """Every client connection of `node` (made with :class:`Conn`) ends, as its transport would end it."""
    for client in list(node.clients):
        client.transport.protocol.connectionLost(None)


def decode(data: bytes):
    attempts = struct.unpack(">H", data[8:10])[0]
    return attempts, data[10:26], data[26:]


def mpub_body(bodies) -> bytes:
    return struct.pack(">l", len(bodies)) + b"".join(struct.pack(">l", len(b)) + b for b in bodies)


class FakeJIT:
    """Stands in for PyPy's pypyjit module, recording what is set."""

    def __init__(self):
        self.params = []

    def set_param(self, params: str) -> None:
        self.params.append(params)


def replace_module(case, name: str, module) -> None:
    """Make ``import <name>`` give `module` (None: raise ImportError) until `case` ends."""
    missing = object()
    saved = sys.modules.get(name, missing)
    sys.modules[name] = module

    def restore():
        if saved is missing:
            del sys.modules[name]
        else:
            sys.modules[name] = saved
    case.addCleanup(restore)


def make_certificates(case) -> dict:
    """PEM files in a fresh directory: a CA ("ca"), a server certificate it signed for localhost and
    127.0.0.1 ("server", "server_key"), a client certificate it signed with common name "client-1"
    ("client", "client_key"), and a self-signed client certificate ("stranger", "stranger_key")."""
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = data_dir(case)
    now = datetime.datetime.now(datetime.timezone.utc)
    paths = {}

    def write(name, data):
        path = paths[name] = os.path.join(directory, name + ".pem")
        with open(path, "wb") as f:
            f.write(data)

    def issue(name, common_name, issuer_key=None, issuer_name=None, ca=False, names=()):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        certificate = builder.sign(issuer_key or key, hashes.SHA256())
        write(name, certificate.public_bytes(serialization.Encoding.PEM))
        write(name + "_key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return key, subject

    ca_key, ca_name = issue("ca", "nsqtx test CA", ca=True)
    issue("server", "localhost", ca_key, ca_name,
          names=(x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))
    issue("client", "client-1", ca_key, ca_name)
    issue("stranger", "stranger")
    return paths


#: the transports a client can negotiate besides plain TCP, by the name of their test class
TRANSPORTS = {"TLSTests": ("tls_v1",), "SnappyTests": ("snappy",), "DeflateTests": ("deflate",),
              "TLSSnappyTests": ("tls_v1", "snappy"), "TLSDeflateTests": ("tls_v1", "deflate")}


def transport_tests(base, namespace: dict) -> None:
    """One TestCase per transport in TRANSPORTS, each `base` (a plain-TCP case with a `features`
    attribute) with its features, defined in the module whose `namespace` this is."""
    for name, features in TRANSPORTS.items():
        namespace[name] = type(name, (base,), {"features": features, "__module__": namespace["__name__"]})


def start_tls_node(case, **overrides):
    """start_real_node with a certificate for 127.0.0.1 (case.certificates: make_certificates')."""
    case.certificates = make_certificates(case)
    return start_real_node(case, tls_cert=case.certificates["server"], tls_key=case.certificates["server_key"],
                           **overrides)
