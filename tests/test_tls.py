"""TLS as nsqd offers it: the upgrade after IDENTIFY in nsqd's order, --tls-required, both
client-certificate policies, --tls-min-version, HTTPS, and start-up refusing a TLS setting it cannot
satisfy. Clients are Python's ssl module on real sockets, in the reactor's threads."""
from __future__ import annotations

import json
import socket
import ssl
import struct

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from nsqtx.node import NSQD
from nsqtx.options import Options
from tests.support import data_dir, make_certificates, make_node, start_real_node

RESPONSE, ERROR = 0, 1


def read_frame(sock):
    header = b""
    while len(header) < 8:
        chunk = sock.recv(8 - len(header))
        if not chunk:
            return None
        header += chunk
    size, kind = struct.unpack(">lL", header)
    data = b""
    while len(data) < size - 4:
        data += sock.recv(size - 4 - len(data))
    return kind, data


def identify(sock, **fields) -> bytes:
    body = json.dumps(dict(fields, feature_negotiation=True)).encode()
    sock.sendall(b"IDENTIFY\n" + struct.pack(">l", len(body)) + body)
    kind, data = read_frame(sock)
    assert kind == RESPONSE, data
    return json.loads(data)


class TLSCase(TestCase):
    timeout = 30
    options = {}

    def setUp(self):
        self.certs = make_certificates(self)
        self.node = start_real_node(self, tls_cert=self.certs["server"], tls_key=self.certs["server_key"],
                                    **{k: self.certs.get(v, v) for k, v in self.options.items()})

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.node.tcp_port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b"  V2")
        return sock

    def client_context(self, certificate=None):
        context = ssl.create_default_context(cafile=self.certs["ca"])
        if certificate:
            context.load_cert_chain(self.certs[certificate], self.certs[certificate + "_key"])
        return context

    def outcomes(self, certificates):
        """For each client certificate (None: none), the frame after the upgrade, or the name of the
        error the handshake ended in."""
        outcomes = []
        for certificate in certificates:
            try:
                _, tls = self.upgrade(certificate)
                outcomes.append(read_frame(tls))
            except (ssl.SSLError, OSError) as err:
                outcomes.append(type(err).__name__)
        return outcomes

    def upgrade(self, certificate=None):
        """IDENTIFY with tls_v1, the handshake, and the OK through it: (reply, TLS socket)."""
        sock = self.connect()
        reply = identify(sock, tls_v1=True)
        tls = self.client_context(certificate).wrap_socket(sock, server_hostname="127.0.0.1")
        self.addCleanup(tls.close)
        return reply, tls


class UpgradeTests(TLSCase):
    @defer.inlineCallbacks
    def test_plain_reply_then_the_handshake_then_ok_and_commands_over_tls(self):
        def client():
            reply, tls = self.upgrade()
            first = read_frame(tls)
            tls.sendall(b"PUB t\n" + struct.pack(">l", 5) + b"hello")
            return reply, first, read_frame(tls), tls.version()

        reply, first, published, version = yield deferToThread(client)
        self.assertTrue(reply["tls_v1"])
        self.assertEqual((first, published), ((RESPONSE, b"OK"), (RESPONSE, b"OK")))
        self.assertEqual(self.node.topics["t"].depth(), 1)
        [client] = list(self.node.clients)
        self.assertTrue(client.tls)
        cipher, stats_version = client.tls_state()
        self.assertEqual(stats_version, version.replace("TLSv", "TLS"))
        self.assertTrue(cipher)

    @defer.inlineCallbacks
    def test_a_client_that_does_not_ask_gets_no_tls_and_carries_on(self):
        def client():
            sock = self.connect()
            reply = identify(sock)
            sock.sendall(b"NOP\nPUB t\n" + struct.pack(">l", 1) + b"x")
            return reply, read_frame(sock)

        reply, published = yield deferToThread(client)
        self.assertEqual((reply["tls_v1"], published), (False, (RESPONSE, b"OK")))

    @defer.inlineCallbacks
    def test_garbage_instead_of_a_handshake_closes_that_connection_only(self):
        def client():
            sock = self.connect()
            identify(sock, tls_v1=True)
            sock.sendall(b"PUB t\n" + b"\x00" * 100)
            lost = read_frame(sock) is None
            _, tls = self.upgrade()
            return lost, read_frame(tls)

        lost, other = yield deferToThread(client)
        self.assertEqual((lost, other), (True, (RESPONSE, b"OK")))


class RequiredTests(TLSCase):
    options = {"tls_required": 2}

    @defer.inlineCallbacks
    def test_commands_before_the_upgrade_are_refused_and_after_it_served(self):
        def client():
            plain = self.connect()
            plain.sendall(b"PUB t\n")
            refused = read_frame(plain), read_frame(plain)
            _, tls = self.upgrade()
            read_frame(tls)
            tls.sendall(b"PUB t\n" + struct.pack(">l", 1) + b"x")
            return refused, read_frame(tls)

        refused, published = yield deferToThread(client)
        self.assertEqual(refused, ((ERROR, b"E_INVALID cannot PUB in current state (TLS required)"), None))
        self.assertEqual(published, (RESPONSE, b"OK"))

    def test_plain_http_is_refused_with_the_https_port(self):
        from twisted.web.client import Agent, readBody
        from twisted.internet import reactor

        d = Agent(reactor).request(b"GET", b"http://127.0.0.1:%d/ping" % self.node.http_port)

        def check(response):
            self.assertEqual(response.code, 403)
            return readBody(response).addCallback(self.assertEqual, b'{"message": "TLS_REQUIRED", "https_port": 0}')

        return d.addCallback(check)


class RequireAnyCertificateTests(TLSCase):
    options = {"tls_client_auth_policy": "require"}

    @defer.inlineCallbacks
    def test_any_certificate_is_accepted_none_refused(self):
        signed, stranger, missing = yield deferToThread(self.outcomes, ("client", "stranger", None))
        self.assertEqual((signed, stranger), ((RESPONSE, b"OK"), (RESPONSE, b"OK")))
        self.assertNotIsInstance(missing, tuple)
        self.assertEqual(self.node.options.tls_required, 2)


class RequireVerifiedCertificateTests(TLSCase):
    options = {"tls_client_auth_policy": "require-verify", "tls_root_ca_file": "ca"}

    @defer.inlineCallbacks
    def test_only_a_certificate_the_ca_signed_is_accepted(self):
        signed, stranger, missing = yield deferToThread(self.outcomes, ("client", "stranger", None))
        self.assertEqual(signed, (RESPONSE, b"OK"))
        self.assertNotIsInstance(stranger, tuple)
        self.assertNotIsInstance(missing, tuple)
        self.assertIn("client-1", {client.peer_common_name() for client in self.node.clients if client.tls})


class MinimumVersionTests(TLSCase):
    options = {"tls_min_version": "tls1.3"}

    @defer.inlineCallbacks
    def test_an_older_protocol_is_refused(self):
        def client():
            sock = self.connect()
            identify(sock, tls_v1=True)
            context = self.client_context()
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            try:
                context.wrap_socket(sock, server_hostname="127.0.0.1")
            except (ssl.SSLError, OSError) as err:
                return type(err).__name__
            return "accepted"

        outcome = yield deferToThread(client)
        self.assertNotEqual(outcome, "accepted")


class HTTPSTests(TestCase):
    timeout = 30

    def test_the_api_over_https(self):
        from twisted.internet import reactor
        from twisted.internet.ssl import Certificate, optionsForClientTLS
        from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, readBody

        certs = make_certificates(self)
        node = start_real_node(self, tls_cert=certs["server"], tls_key=certs["server_key"],
                               https_address="127.0.0.1:0")
        with open(certs["ca"], "rb") as f:
            authority = Certificate.loadPEM(f.read())

        class Policy(BrowserLikePolicyForHTTPS):
            def creatorForNetloc(self, hostname, port):
                return optionsForClientTLS("localhost", trustRoot=authority)

        d = Agent(reactor, contextFactory=Policy()).request(b"GET", b"https://127.0.0.1:%d/ping" % node.https_port)
        d.addCallback(readBody)
        return d.addCallback(self.assertEqual, b"OK")


    def test_https_is_listened_on_only_with_a_certificate_at_nsqd_s_address(self):
        certs = make_certificates(self)
        for overrides, listening in [({}, []), (dict(tls_cert=certs["server"], tls_key=certs["server_key"]),
                                                [(4152, "0.0.0.0")])]:
            node, reactor = make_node(self, **overrides)
            node.startService()
            self.addCleanup(node.stopService)
            self.assertEqual([(port, interface) for port, _, _, interface in reactor.tcpServers[2:]], listening)


class StartUpTests(TestCase):
    def test_settings_that_cannot_be_satisfied_are_refused(self):
        certs = make_certificates(self)
        cases = [
            (dict(tls_required=2), "cannot require TLS client connections without TLS key and cert"),
            (dict(tls_client_auth_policy="require"), "cannot require TLS client connections"),
            (dict(tls_cert=certs["server"], tls_key=certs["server"] + ".missing"), "cannot read key"),
            (dict(tls_cert=certs["server_key"], tls_key=certs["server_key"]), "failed to build TLS config"),
            (dict(tls_cert=certs["server"], tls_key=certs["stranger_key"]), "failed to build TLS config"),
            (dict(tls_cert=certs["server"], tls_key=certs["server_key"], tls_client_auth_policy="require-verify",
                  tls_root_ca_file=certs["server_key"]), "failed to append certificate to pool"),
            (dict(tls_client_auth_policy="maybe"), "--tls-client-auth-policy"),
            (dict(tls_min_version="ssl3.0"), "--tls-min-version"),
        ]
        for overrides, needle in cases:
            error = self.assertRaises(ValueError, NSQD, Options(data_path=data_dir(self), **overrides))
            self.assertIn(needle, str(error), overrides)
