"""AUTH: what an auth server's answer grants, the command's order and codes as nsqd's, expiry after
the TTL (on a fake clock), only the waiting client waits; and end to end against a small Twisted auth
server, over plain TCP and over TLS with a client certificate."""
from __future__ import annotations

import json
import socket
import ssl
import struct

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from nsqtx.auth import AuthError, AuthState
from tests.support import ERROR, RESPONSE, ConnCase, make_certificates, mpub_body, start_real_node
from tests.test_tls import identify, read_frame

GRANT = {"ttl": 60, "identity": "alice", "identity_url": "https://id.example/alice", "authorizations": [
    {"topic": "^orders", "channels": [".*"], "permissions": ["publish"]},
    {"topic": "^orders$", "channels": ["^billing$"], "permissions": ["subscribe"]},
]}


class AuthStateTests(TestCase):
    def test_grants_match_anywhere_as_go_regexps_do(self):
        state = AuthState(GRANT, 100.0)
        self.assertEqual(state.expires, 160.0)
        self.assertTrue(state.allows("orders", ""))
        self.assertTrue(state.allows("orders.eu", ""))
        self.assertFalse(state.allows("refunds", ""))
        self.assertTrue(state.allows("orders", "billing"))
        self.assertFalse(state.allows("orders", "shipping"))
        self.assertFalse(state.allows("orders.eu", "billing"))

    def test_answers_nsqd_refuses(self):
        for answer in ({"ttl": 0, "authorizations": []}, {"authorizations": []},
                       {"ttl": 5, "authorizations": [{"topic": ".*", "channels": [], "permissions": ["delete"]}]},
                       {"ttl": 5, "authorizations": [{"topic": "(", "channels": [], "permissions": ["publish"]}]},
                       {"ttl": 5, "authorizations": [{"topic": ".*", "channels": ["["], "permissions": ["publish"]}]},
                       [1, 2], {"ttl": "soon"}):
            self.assertRaises(AuthError, AuthState, answer, 0.0)


class FakeAuthServers:
    """Stands in for the node's AuthClient: each query waits for the test to answer it."""

    def __init__(self):
        self.queries = []

    def query(self, remote_ip, tls, common_name, secret):
        waiting = defer.Deferred()
        self.queries.append(((remote_ip, tls, common_name, secret), waiting))
        return waiting

    def answer(self, grant=GRANT, clock=None):
        (_, waiting) = self.queries[-1]
        if isinstance(grant, Exception):
            waiting.errback(grant)
        else:
            waiting.callback(AuthState(grant, clock.seconds()))


class ProtocolTests(ConnCase):
    def setUp(self):
        ConnCase.setUp(self)
        self.servers = self.node.auth = FakeAuthServers()

    def authed(self, port=4000):
        conn = self.conn(port)
        conn.command(b"AUTH", b"secret")
        self.servers.answer(clock=self.clock)
        [(kind, data)] = conn.frames()
        self.assertEqual((kind, json.loads(data)), (RESPONSE, {
            "identity": "alice", "identity_url": "https://id.example/alice", "permission_count": 2}))
        return conn

    def test_identify_says_auth_is_required(self):
        conn = self.conn()
        conn.identify(feature_negotiation=True)
        [(_, data)] = conn.frames()
        self.assertTrue(json.loads(data)["auth_required"])

    def test_publishing_or_subscribing_before_auth_is_refused(self):
        for line in (b"PUB orders", b"MPUB orders", b"DPUB orders 0", b"SUB orders billing"):
            conn = self.conn()
            conn.send(line + b"\n")
            self.assertError(conn, b"E_AUTH_FIRST AUTH required before " + line.split(b" ")[0])

    def test_the_query_carries_the_client_s_address_tls_and_secret(self):
        conn = self.conn()
        conn.command(b"AUTH", b"s3cret")
        [(args, _)] = self.servers.queries
        self.assertEqual(args, ("10.0.0.1", False, "", "s3cret"))
        self.assertEqual(conn.frames(), [])

    def test_granted_publishes_and_subscriptions_pass_others_are_unauthorized(self):
        conn = self.authed()
        conn.command(b"PUB orders.eu", b"x")
        conn.command(b"MPUB orders", mpub_body([b"y"]))
        self.assertEqual(conn.frames(), [(RESPONSE, b"OK")] * 2)
        conn.command(b"PUB refunds", b"x")
        self.assertError(conn, b'E_UNAUTHORIZED AUTH failed for PUB on "refunds" ""')
        conn = self.authed(4001)
        conn.command(b"SUB orders shipping")
        self.assertError(conn, b'E_UNAUTHORIZED AUTH failed for SUB on "orders" "shipping"')
        conn = self.authed(4002)
        conn.subscribe(b"orders", b"billing")
        self.assertEqual(conn.frames(), [(RESPONSE, b"OK")])

    def test_commands_after_auth_wait_for_its_answer_and_keep_their_order(self):
        conn = self.conn()
        conn.send(b"AUTH\n" + struct.pack(">l", 6) + b"secret" + b"PUB orders\n" + struct.pack(">l", 2) + b"hi")
        self.assertEqual(conn.frames(), [])
        other = self.conn(4001)
        other.command(b"NOP")
        other.command(b"PUB orders", b"x")
        self.assertError(other, b"E_AUTH_FIRST AUTH required before PUB")
        self.servers.answer(clock=self.clock)
        frames = conn.frames()
        self.assertEqual([kind for kind, _ in frames], [RESPONSE, RESPONSE])
        self.assertEqual(frames[1], (RESPONSE, b"OK"))
        self.assertEqual(self.node.topics["orders"].depth(), 1)

    def test_after_the_ttl_the_server_is_asked_again_and_the_command_then_runs(self):
        conn = self.authed()
        conn.identify(heartbeat_interval=-1)
        conn.frames()
        self.clock.advance(59)
        conn.command(b"PUB orders", b"1")
        self.assertEqual((conn.frames(), len(self.servers.queries)), ([(RESPONSE, b"OK")], 1))
        self.clock.advance(1)
        conn.command(b"PUB orders", b"2")
        self.assertEqual((conn.frames(), len(self.servers.queries)), ([], 2))
        self.servers.answer({"ttl": 60, "authorizations": [
            {"topic": "^orders$", "channels": [".*"], "permissions": ["publish"]}]}, clock=self.clock)
        self.assertEqual(conn.frames(), [(RESPONSE, b"OK")])
        self.assertEqual(self.node.topics["orders"].depth(), 2)
        self.clock.advance(60)
        conn.command(b"PUB orders", b"3")
        self.servers.answer(AuthError("server down"))
        self.assertError(conn, b"E_AUTH_FAILED AUTH failed")

    def test_failures_and_refusals(self):
        conn = self.conn()
        conn.command(b"AUTH", b"secret")
        self.servers.answer(AuthError("connection refused"))
        self.assertError(conn, b"E_AUTH_FAILED AUTH failed")
        conn = self.conn(4001)
        conn.command(b"AUTH", b"secret")
        self.servers.answer({"ttl": 60, "authorizations": []}, clock=self.clock)
        self.assertError(conn, b"E_UNAUTHORIZED AUTH no authorizations found")
        conn = self.authed(4002)
        conn.command(b"AUTH", b"again")
        self.assertError(conn, b"E_INVALID AUTH already set")
        self.flushLoggedErrors()


class AuthServer(Resource):
    """A small auth server: grants by secret, and records every query."""

    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.queries = []

    def render_GET(self, request):
        query = {k.decode(): v[0].decode() for k, v in request.args.items()}
        self.queries.append((request.path, query, request.getHeader(b"accept")))
        request.setHeader(b"Content-Type", b"application/json")
        if query["secret"] == "good":
            return json.dumps(GRANT).encode()
        request.setResponseCode(403)
        return b'{"message": "NOT_AUTHORIZED"}'


class EndToEndTests(TestCase):
    timeout = 30

    def setUp(self):
        from twisted.internet import reactor

        self.server = AuthServer()
        port = reactor.listenTCP(0, Site(self.server), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.certs = make_certificates(self)
        self.node = start_real_node(self, auth_http_addresses=["127.0.0.1:%d" % port.getHost().port],
                                    tls_cert=self.certs["server"], tls_key=self.certs["server_key"],
                                    tls_client_auth_policy="require-verify", tls_root_ca_file=self.certs["ca"])

    @defer.inlineCallbacks
    def test_a_client_certificate_s_common_name_goes_to_the_auth_server(self):
        def client(secret):
            sock = socket.create_connection(("127.0.0.1", self.node.tcp_port), timeout=10)
            sock.sendall(b"  V2")
            reply = identify(sock, tls_v1=True)
            context = ssl.create_default_context(cafile=self.certs["ca"])
            context.load_cert_chain(self.certs["client"], self.certs["client_key"])
            tls = context.wrap_socket(sock, server_hostname="127.0.0.1")
            try:
                read_frame(tls)
                tls.sendall(b"AUTH\n" + struct.pack(">l", len(secret)) + secret)
                authed = read_frame(tls)
                if authed[0] == ERROR:
                    return reply["auth_required"], authed, read_frame(tls), None
                tls.sendall(b"PUB orders\n" + struct.pack(">l", 1) + b"x" + b"PUB refunds\n")
                return reply["auth_required"], authed, read_frame(tls), read_frame(tls)
            finally:
                tls.close()

        required, authed, published, refused = yield deferToThread(client, b"good")
        self.assertEqual((required, authed[0]), (True, RESPONSE))
        self.assertEqual(json.loads(authed[1])["identity"], "alice")
        self.assertEqual(published, (RESPONSE, b"OK"))
        self.assertEqual(refused, (ERROR, b'E_UNAUTHORIZED AUTH failed for PUB on "refunds" ""'))
        [(path, query, accept)] = self.server.queries
        self.assertEqual((path, accept), (b"/auth", b"application/vnd.nsq; version=1.0"))
        self.assertEqual(query, {"remote_ip": "127.0.0.1", "tls": "true", "secret": "good", "common_name": "client-1"})

        required, authed, closed, _ = yield deferToThread(client, b"bad")
        self.assertEqual((authed, closed), ((ERROR, b"E_AUTH_FAILED AUTH failed"), None))
