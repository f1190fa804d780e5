"""In-memory harness: a node on a fake reactor and clients on StringTransports, so every timer
(heartbeats, flushes, timeouts, deferrals) is driven by advancing the clock, never by sleeping."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

from treq.testing import StubTreq
from twisted.application.service import IService, IServiceCollection, IServiceMaker, loadApplication
from twisted.internet import defer, protocol, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.plugin import getPlugins
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

import nsqtx
from benchmarks.certificates import CertificateWriter
from nsqtx.disk_worker import InlineWorker
from nsqtx.log import debug_enabled, set_log_level
from nsqtx.lookupd.node import NSQLookupd
from nsqtx.lookupd.options import LookupdOptions
from nsqtx.lookupd.protocol_v1 import V1Factory
from nsqtx.message import new_batch
from nsqtx.node import NSQD
from nsqtx.options import Options
from nsqtx.protocol_v2 import V2Factory
from nsqtx.server_process import ExitZeroOnSignals, ServerProcess

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
    # a node with a certificate would listen for HTTPS on nsqd's 0.0.0.0:4152, which tests may share
    overrides.setdefault("https_address", "")
    node = NSQD(Options(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0", **overrides))
    node.startService()
    # stopped once, whether or not the test stopped it (a service's children stop once)
    case.addCleanup(lambda: node.stopService() if node.running else None)
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


class ClientConn:
    """A client's connection to a server protocol (`proto`) over a fake transport: send commands.
    Subclasses give the protocol's `MAGIC`."""

    MAGIC = b""

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def magic(self):
        self.send(self.MAGIC)
        return self

    def command(self, line: bytes, body: bytes | None = None) -> None:
        data = line + b"\n"
        if body is not None:
            data += struct.pack(">l", len(body)) + body
        self.send(data)

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting

    def lose(self) -> None:
        self.proto.connectionLost(None)


class Conn(ClientConn):
    """One client connection to nsqd: send commands, read back parsed frames."""

    MAGIC = b"  V2"

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
    writer = CertificateWriter(data_dir(case))
    writer.issue("ca", "nsqtx test CA", ca=True)
    writer.issue("server", "localhost", issuer="ca", server=True)
    writer.issue("client", "client-1", issuer="ca")
    writer.issue("stranger", "stranger")
    return writer.paths


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


def logged_until(condition):
    """A Deferred firing once `condition()` holds: checked now, and after each log event once the
    reactor has finished the turn that logged it (the servers log every change a test over real
    sockets waits for: a registration, a connection's end)."""
    done = defer.Deferred()
    scheduled = []

    def check():
        scheduled[:] = []
        if not done.called and condition():
            globalLogPublisher.removeObserver(observe)
            done.callback(None)

    def observe(event):
        if not scheduled and not done.called:
            scheduled.append(reactor.callLater(0, check))

    globalLogPublisher.addObserver(observe)
    check()
    return done


# -- nsqlookupd


def make_lookupd(case, **overrides):
    """A started lookupd on a fake reactor (listening, as far as it knows, on 127.0.0.1:4160 and
    :4161), stopped at cleanup; (lookupd, clock)."""
    options = dict(tcp_address="127.0.0.1:4160", http_address="127.0.0.1:4161", broadcast_address="lookupd.test")
    options.update(overrides)
    clock = MemoryReactorClock()
    clock.advance(1000.0)
    lookupd = NSQLookupd(LookupdOptions(**options), reactor=clock)
    lookupd.startService()

    def stop():
        # the fake transports never report their close: the connections end as a real one's would
        for client in list(lookupd.clients):
            client.connectionLost(None)
        return lookupd.stopService()

    case.addCleanup(stop)
    return lookupd, clock


def v1_responses(data: bytes) -> list:
    """Every response in `data` (a 4-byte size, then that many bytes), failing on a partial one."""
    out = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 4, "a partial size at the end: %r" % (data[pos:],)
        (size,) = struct.unpack_from(">l", data, pos)
        assert 0 <= size and pos + 4 + size <= len(data), "a partial response at the end: %r" % (data[pos:],)
        out.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    return out


def identity(**fields) -> dict:
    """An nsqd's IDENTIFY body fields, as nsqtx's lookup peer sends them."""
    body = {"version": "1.3.0", "tcp_port": 4150, "http_port": 4151, "hostname": "nsqd.test",
            "broadcast_address": "nsqd.test"}
    body.update(fields)
    return body


class V1Conn(ClientConn):
    """One nsqd's connection to a lookupd over a StringTransport: send commands, read back responses."""

    MAGIC = b"  V1"

    def __init__(self, lookupd, port=4000, host="10.0.0.1"):
        self.proto = V1Factory(lookupd).buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.proto.makeConnection(self.transport)
        self.id = "%s:%d" % (host, port)

    def identify(self, **fields) -> None:
        self.command(b"IDENTIFY", json.dumps(identity(**fields)).encode())

    def responses(self) -> list:
        """Every response written since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return v1_responses(data)


# -- HTTP

V1_HEADER = b"nsq; version=1.0"


class Response:
    def __init__(self, code: int, headers: dict, body: bytes):
        self.code = code
        #: lower-cased header name -> first value
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


class HTTPTestMixin:
    """Requests in-process to a server's HTTP site on a fake reactor (nsqd's or nsqlookupd's), and
    assertions about Go's way of answering them. serve_http() first."""

    def serve_http(self, clock, port: int) -> None:
        """Take the site the server listens with on `port` from the fake reactor's listenTCP calls."""
        [(self.site, interface)] = [(site, interface) for listening, site, _, interface in clock.tcpServers
                                    if listening == port]
        self.assertEqual(interface, "127.0.0.1")
        self.http = StubTreq(self.site.resource)

    def request(self, method: str, path: str, body: bytes | None = None, headers=None) -> Response:
        d = self.http.request(method, "http://nsq.test" + path, data=body, headers=headers)
        self.http.flush()
        response = self.successResultOf(d)
        d = self.http.content(response)
        self.http.flush()
        content = self.successResultOf(d)
        headers = {name.lower(): values[0] for name, values in response.headers.getAllRawHeaders()}
        return Response(response.code, headers, content)

    def get(self, path: str, headers=None) -> Response:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, body: bytes | None = None) -> Response:
        return self.request("POST", path, body)

    def route(self, method: str, target: str) -> Response:
        """A request as it is on the wire, its path untouched by any client library."""
        return self.raw(b"%s %s HTTP/1.1\r\nHost: nsq.test\r\nConnection: close\r\n\r\n"
                        % (method.encode(), target.encode("latin-1")))

    def raw(self, data: bytes) -> Response:
        """Feed raw HTTP/1.1 bytes to the server's own HTTP site; parse the one response."""
        proto = self.site.buildProtocol(IPv4Address("TCP", "10.0.0.9", 5000))
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(data)
        out = transport.value()
        proto.connectionLost(Failure(ConnectionDone()))
        return parse_http_response(out)

    def assertError(self, response: Response, code: int, message: str):
        self.assertEqual((response.code, response.body), (code, b'{"message":"%s"}' % message.encode()))
        self.assertEqual(response.headers.get(b"content-type"), b"application/json; charset=utf-8")
        self.assertEqual(response.headers.get(b"x-nsq-content-type"), V1_HEADER)

    def assertOK(self, response: Response):
        self.assertEqual((response.code, response.body), (200, b"OK"))
        self.assertEqual(response.headers.get(b"x-nsq-content-type"), V1_HEADER)

    def assertEmpty200(self, response: Response):
        """Go's admin routes answer 200 with an empty body, no Content-Type, the V1 header."""
        self.assertEqual((response.code, response.body), (200, b""))
        self.assertNotIn(b"content-type", response.headers)
        self.assertEqual(response.headers.get(b"x-nsq-content-type"), V1_HEADER)

    def assertJSON(self, response: Response, body: bytes):
        """A 200 with exactly this JSON (Go's field order and spelling), typed as JSON, with the V1 header."""
        self.assertEqual((response.code, response.body), (200, body))
        self.assertEqual(response.headers.get(b"content-type"), b"application/json; charset=utf-8")
        self.assertEqual(response.headers.get(b"x-nsq-content-type"), V1_HEADER)


def parse_http_response(data: bytes) -> Response:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    code = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), value.strip())
    if headers.get(b"transfer-encoding") == b"chunked":
        content = b""
        while True:
            size_line, _, body = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            content += body[:size]
            body = body[size + 2:]
        body = content
    return Response(code, headers, body)


# -- a server's twistd plugin: its flags, and the real `twistd` in a subprocess


class ParseTestsMixin:
    """Parsing a twistd plugin's flags and config file. Subclasses give `config_class` (the plugin's
    SettingsOptions)."""

    config_class = None

    def parse(self, *argv):
        config = self.config_class()
        config.parseOptions(list(argv))
        return config.options

    def write_config(self, text):
        path = os.path.join(data_dir(self), "server.cfg")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def assertStartupError(self, argv, *needles):
        """The one-line message twistd prints when start-up is refused, checked for each needle."""
        e = self.assertRaises(SystemExit, self.parse, *argv)
        self.assertIsInstance(e.code, str)
        self.assertTrue(e.code.startswith(self.config_class.program + ": "), e.code)
        self.assertNotIn("\n", e.code)
        for needle in needles:
            self.assertIn(needle, e.code)
        return e.code


class MakeServiceTestsMixin:
    """A plugin's makeService, and its deployment example in tac/, giving the service tree `twistd
    <program>` runs. Subclasses give `tap` (the plugin's module), `server_class` and `tac` (a file
    name in tac/)."""

    tap = None
    server_class = None
    tac = ""

    def setUp(self):
        self.addCleanup(set_log_level, "info")

    def make_service(self, *argv):
        config = self.tap.Options()
        config.parseOptions(list(argv))
        return config, self.tap.makeService(config)

    def test_service(self):
        config, top = self.make_service("--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0")
        self.assertTrue(IService.providedBy(top))
        self.assertIs(self.assertServerTree(top).options, config.options)

    def test_sets_log_level(self):
        for level, debug in [("debug", True), ("error", False)]:
            self.make_service("--log-level=" + level)
            self.assertEqual(debug_enabled(), debug, level)

    def test_tac_runs_the_same_tree(self):
        """The deployment example starts, tunes and stops as `twistd <program>` does."""
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tac", self.tac)
        [top] = list(IServiceCollection(loadApplication(path, "python")))
        self.assertEqual(vars(self.assertServerTree(top).options), vars(self.tap.Options.options_class()))

    def assertServerTree(self, top):
        """What `twistd <program>` runs, not yet started: a ServerProcess (which tunes the interpreter
        and makes start-up errors one line) holding the server and the signal handlers; returns the
        server."""
        self.assertIsInstance(top, ServerProcess)
        self.assertEqual(top.program, self.tap.Options.program)
        server = top.getServiceNamed(self.server_class.name)
        self.assertIsInstance(server, self.server_class)
        self.assertIsInstance(top.getServiceNamed("exit-zero-on-signals"), ExitZeroOnSignals)
        self.assertFalse(server.running)
        return server

    def test_plugin(self):
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        maker = makers[self.tap.Options.program]
        self.assertIs(maker.options, self.tap.Options)
        self.assertIs(maker.makeService, self.tap.makeService)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def twistd(*args):
    """argv running twistd with this interpreter, so PyPy test runs start a PyPy server."""
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"] + list(args)


def wait_for_ping(case, proc, http_port: int, timeout: float, output) -> bytes:
    """Poll a twistd subprocess' /ping until it answers (its body) or `timeout` passes; fail the test
    with the server's `output()` if it exits or stays silent. The only wall-clock wait in the suite,
    and only because the server is a real process."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            case.fail("twistd exited with %s before answering:\n%s" % (proc.returncode, output()))
        if time.monotonic() > deadline:
            case.fail("no answer on /ping within %ss:\n%s" % (timeout, output()))
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/ping" % http_port, timeout=2) as r:
                return r.read()
        except OSError:
            time.sleep(0.05)


def subprocess_env():
    """The child imports the same nsqtx as this process (the source tree or the installed copy)."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(nsqtx.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


class TwistdTestsMixin:
    """The real `twistd -n <program>` in a subprocess; the only tests that wait on a clock. Subclasses
    give `program`, `bad_flag` (a flag with a bad value, then words its error must name),
    server_args() (flags besides the addresses) and exchange(client), which shows over a connected
    socket that the server serves."""

    START_TIMEOUT = 60.0
    STOP_TIMEOUT = 30.0
    program = ""
    bad_flag = ()

    def setUp(self):
        self.workdir = data_dir(self)

    def server_args(self) -> list:
        return []

    def exchange(self, client) -> None:
        raise NotImplementedError

    def run_twistd(self, *args):
        return subprocess.run(twistd("-n", "--pidfile=", self.program, *args), cwd=self.workdir,
                              env=subprocess_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=self.START_TIMEOUT)

    def start(self, argv, name: str = "twistd"):
        """A server process run by `argv` from the working directory, logging to a file of its own
        outside it; returns (process, a function reading its output so far)."""
        log_path = os.path.join(data_dir(self), name + ".out")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, cwd=self.workdir, env=subprocess_env(), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addCleanup(self.kill, proc)

        def output():
            with open(log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")

        return proc, output

    def terminate(self, proc, output) -> None:
        """SIGTERM: the server stops cleanly and exits 0."""
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(self.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail("twistd still running %ss after SIGTERM:\n%s" % (self.STOP_TIMEOUT, output()))
        self.assertEqual(status, 0, output())
        self.assertIn("Server Shut Down.", output())

    def test_serves_and_shuts_down_on_sigterm(self):
        tcp_port, http_port = free_port(), free_port()
        proc, output = self.start(twistd("-n", "--pidfile=", self.program, "--tcp-address=127.0.0.1:%d" % tcp_port,
                                         "--http-address=127.0.0.1:%d" % http_port, *self.server_args()))
        self.assertEqual(wait_for_ping(self, proc, http_port, self.START_TIMEOUT, output), b"OK")
        client = socket.create_connection(("127.0.0.1", tcp_port), timeout=self.STOP_TIMEOUT)
        self.addCleanup(client.close)
        self.exchange(client)
        self.terminate(proc, output)
        self.assertEqual(client.recv(100), b"", "the connected client was not closed")

    def test_port_in_use_is_one_line(self):
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = self.run_twistd("--tcp-address=127.0.0.1:%d" % taken.getsockname()[1],
                                 "--http-address=127.0.0.1:0", *self.server_args())
        # twistd's log (stdout with -n) has taken over stderr by then: the line is its last entry
        output = (result.stdout + result.stderr).decode("utf-8", "replace")
        self.assertEqual(result.returncode, 1, output)
        self.assertNotIn("Traceback", output)
        self.assertIn("%s: Couldn't listen on 127.0.0.1:%d" % (self.program, taken.getsockname()[1]),
                      output.splitlines()[-1])

    def test_bad_flag_is_one_line(self):
        flag, *needles = self.bad_flag
        result = self.run_twistd(flag)
        stderr = result.stderr.decode("utf-8", "replace")
        self.assertEqual(result.returncode, 1, stderr)
        self.assertNotIn("Traceback", stderr)
        self.assertEqual(result.stdout, b"")
        lines = stderr.splitlines()
        self.assertEqual(len(lines), 1, stderr)
        self.assertTrue(lines[0].startswith(self.program + ": "), lines[0])
        for needle in needles:
            self.assertIn(needle, lines[0])

    def kill(self, proc):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
