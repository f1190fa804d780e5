"""End to end through the official Python client, pynsq, against a real listening embedded node.

Why pynsq runs in a child process: pynsq lives on tornado's IOLoop and the node on Twisted's reactor,
and both must turn at once. Sharing one asyncio loop (Twisted's asyncioreactor under tornado) would
work only if the whole test run used that reactor: the reactor is process-global and installed before
anything imports it, neither trial nor pytest can pick one per module, and this suite runs under both
with the default reactor. A thread for tornado would share the process, its signal handlers and its
asyncio state with trial's reactor. A child process shares nothing: the node stays in the test
process on trial's reactor (so the test can look at its channels afterwards), the child runs pynsq
on its own loop and reports every delivery as JSON on stdout, and the only waits are on real I/O --
the child's exit and the server seeing its connections close -- each bounded (the child gives up at
its own deadline and is killed if it overstays).

The child is this same file run as a script (see the end of the module), so the client side reads as
ordinary code next to the assertions it feeds.
"""
from __future__ import annotations

import json
import os
import random
import sys

from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from nsqtx.lookupd.node import NSQLookupd
from nsqtx.lookupd.options import LookupdOptions
from nsqtx.message import new_batch
from tests.support import logged_until, start_real_node, start_tls_node, transport_tests

#: seconds the child works before giving up on its own, and before we kill it
CHILD_DEADLINE = 15.0
CHILD_KILL_AFTER = 25.0

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_bodies(prefix: str, count: int, seed: int):
    """Distinct bodies of varied length, with bytes a line-based parser would trip on."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        tail = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        out.append(b"%s-%04d|" % (prefix.encode(), i) + tail + b"\n\r\x00 V2")
    return out


class _Child(ProcessProtocol):
    def __init__(self):
        self.out = []
        self.err = []
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.out.append(data)

    def errReceived(self, data):
        self.err.append(data)

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)


def run_child(script: str, spec: dict):
    """Run `script` (a test module whose __main__ is a client's side) in a child process with `spec`;
    fire with its JSON report."""
    from twisted.internet import reactor

    child = _Child()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, env.get("PYTHONPATH")]))
    args = [sys.executable, os.path.abspath(script), json.dumps(spec)]
    reactor.spawnProcess(child, sys.executable, args, env=env, path=_ROOT)
    killer = reactor.callLater(CHILD_KILL_AFTER, child.transport.signalProcess, "KILL")

    def ended(code):
        if killer.active():
            killer.cancel()
        out = b"".join(child.out).decode("utf-8", "replace")
        err = b"".join(child.err).decode("utf-8", "replace")
        if code != 0:
            raise AssertionError("%s child exited with %r\nstdout:\n%s\nstderr:\n%s" % (script, code, out, err))
        return json.loads(out)

    return child.ended.addCallback(ended)


class PynsqCase(TestCase):
    """A real node, pynsq in a child process, and what to check of what it got."""

    timeout = 30
    #: keyword arguments of every pynsq connection (tls_v1, tls_options, snappy, deflate, ...)
    connection = {}

    def setUp(self):
        self.node = self.start_node()
        #: the nodes whose connections must all have ended before the child's report is checked
        self.nodes = [self.node]
        #: every client the node had, also after it left
        self.clients = []
        connected = self.node.client_connected

        def client_connected(client):
            self.clients.append(client)
            connected(client)

        self.node.client_connected = client_connected

    def start_node(self):
        return start_real_node(self)

    def all_clients_gone(self):
        """Fires once the servers have dropped every connection, so all their commands were handled."""
        return defer.gatherResults([self.clients_gone(node) for node in self.nodes])

    @staticmethod
    def clients_gone(node):
        if not node.clients:
            return defer.succeed(None)
        done = defer.Deferred()
        original = node.client_disconnected

        def client_disconnected(client):
            original(client)
            if not node.clients and not done.called:
                del node.client_disconnected
                done.callback(None)

        node.client_disconnected = client_disconnected
        return done

    @defer.inlineCallbacks
    def exchange(self, topic, pub=(), mpub=(), readers=(), lookupd=None, queued=()):
        """Publish with a pynsq Writer and consume with pynsq Readers (which find the nodes through
        `lookupd`'s HTTP address, if given, and also expect the bodies `queued` before); return the
        child's report once the servers have handled everything the child sent."""
        spec = {
            "address": "127.0.0.1:%d" % self.node.tcp_port,
            "lookupd": lookupd,
            "topic": topic,
            "pub": [body.hex() for body in pub],
            "mpub": [[body.hex() for body in batch] for batch in mpub],
            "queued": [body.hex() for body in queued],
            "readers": [dict(r, requeue_first=[b.hex() for b in r.get("requeue_first", ())]) for r in readers],
            "deadline": CHILD_DEADLINE,
            "connection": self.connection,
        }
        report = yield run_child(__file__, spec)
        yield self.all_clients_gone()
        self.assertEqual(report["published"], ["OK"] * (len(pub) + len(mpub)))
        for deliveries in report["deliveries"].values():
            for delivery in deliveries:
                delivery[0] = bytes.fromhex(delivery[0])
        return report

    def assertChannelDrained(self, topic, channel, messages, requeues=0):
        """Nothing left queued, deferred or in flight: no message can be delivered again."""
        ch = self.node.topics[topic].channels[channel]
        self.assertEqual((len(ch.queue.memory), len(ch.in_flight), len(ch.deferred)), (0, 0, 0))
        self.assertEqual((ch.message_count, ch.requeue_count, ch.timeout_count), (messages, requeues, 0))

    def assertExactlyOnce(self, deliveries, bodies):
        got = sorted(body for body, attempts, msg_id, finished in deliveries)
        self.assertEqual(got, sorted(bodies))
        self.assertEqual({attempts for _, attempts, _, _ in deliveries}, {1})
        self.assertEqual(len({msg_id for _, _, msg_id, _ in deliveries}), len(bodies))


    def assertNegotiated(self, connections: int) -> None:
        """The node had `connections` clients, each upgraded to exactly self.features."""
        self.assertEqual(len(self.clients), connections)
        for client in self.clients:
            self.assertEqual((client.tls, client.snappy, client.deflate),
                             ("tls_v1" in self.features, "snappy" in self.features, "deflate" in self.features))


class PynsqTests(PynsqCase):

    @defer.inlineCallbacks
    def test_pub_and_mpub_are_each_delivered_exactly_once(self):
        singles = make_bodies("pub", 40, 1)
        batches = [make_bodies("mpub%d" % i, size, 10 + i) for i, size in enumerate((1, 25, 60))]
        report = yield self.exchange(
            "e2e", pub=singles, mpub=batches, readers=[{"name": "r", "channel": "c", "max_in_flight": 16}])
        self.assertExactlyOnce(report["deliveries"]["r"], singles + [b for batch in batches for b in batch])
        self.assertChannelDrained("e2e", "c", 126)

    @defer.inlineCallbacks
    def test_handler_returning_false_requeues_and_redelivers_with_attempts_incremented(self):
        bodies = make_bodies("req", 30, 2)
        failing = bodies[::3]
        report = yield self.exchange(
            "e2e_req", mpub=[bodies],
            readers=[{"name": "r", "channel": "c", "max_in_flight": 8, "requeue_first": failing}])
        deliveries = report["deliveries"]["r"]
        by_body = {}
        for body, attempts, msg_id, finished in deliveries:
            by_body.setdefault(body, []).append((attempts, msg_id, finished))
        self.assertEqual(sorted(by_body), sorted(bodies))
        for body in bodies:
            history = by_body[body]
            if body in failing:
                first_id = history[0][1]
                self.assertEqual(history, [(1, first_id, False), (2, first_id, True)])
            else:
                self.assertEqual([(a, f) for a, _, f in history], [(1, True)])
        self.assertChannelDrained("e2e_req", "c", 30, requeues=len(failing))

    @defer.inlineCallbacks
    def test_readers_on_one_channel_split_messages_and_another_channel_gets_them_all(self):
        bodies = make_bodies("split", 200, 3)
        report = yield self.exchange("e2e_split", pub=bodies[:50], mpub=[bodies[50:120], bodies[120:]], readers=[
            {"name": "a", "channel": "shared", "max_in_flight": 4},
            {"name": "b", "channel": "shared", "max_in_flight": 4},
            {"name": "other", "channel": "other", "max_in_flight": 10},
        ])
        a, b = report["deliveries"]["a"], report["deliveries"]["b"]
        self.assertTrue(a and b, "one reader on the shared channel got nothing: %d + %d" % (len(a), len(b)))
        self.assertExactlyOnce(a + b, bodies)
        self.assertExactlyOnce(report["deliveries"]["other"], bodies)
        self.assertChannelDrained("e2e_split", "shared", 200)
        self.assertChannelDrained("e2e_split", "other", 200)


class PlainTransportTests(PynsqCase):
    """The same exchange over each transport a client can negotiate (this class: none); the server's
    side of each connection says it was upgraded."""

    features = ()

    def start_node(self):
        return start_tls_node(self)

    @property
    def connection(self):
        options = {feature: True for feature in self.features}
        if "tls_v1" in options:
            options["tls_options"] = {"ca_certs": self.certificates["ca"]}
        return options

    @defer.inlineCallbacks
    def test_pub_and_mpub_are_each_delivered_exactly_once(self):
        singles = make_bodies("pub", 30, 4)
        batch = make_bodies("mpub", 70, 5)
        report = yield self.exchange(
            "e2e", pub=singles, mpub=[batch], readers=[{"name": "r", "channel": "c", "max_in_flight": 16}])
        self.assertExactlyOnce(report["deliveries"]["r"], singles + batch)
        self.assertChannelDrained("e2e", "c", 100)
        self.assertNegotiated(2)


transport_tests(PlainTransportTests, globals())


class LookupdTests(PynsqCase):
    """pynsq's Reader given only nsqtx-lookupd's HTTP address, as consumers are usually set up, and
    two nodes registered with it: the Reader finds and consumes from both."""

    def setUp(self):
        self.lookupd = NSQLookupd(LookupdOptions(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0"))
        self.lookupd.startService()
        self.addCleanup(self.lookupd.stopService)
        # pynsq connects to the address a node registers, so it must be this host's
        registered = dict(broadcast_address="127.0.0.1",
                          nsqlookupd_tcp_addresses=["127.0.0.1:%d" % self.lookupd.tcp_port])
        self.node = start_real_node(self, node_id=1, **registered)
        self.other = start_real_node(self, node_id=2, **registered)
        self.nodes = [self.node, self.other]

    @defer.inlineCallbacks
    def test_a_reader_finds_both_nodes_through_lookupd_and_consumes_from_each(self):
        topic = "e2e_lookupd"
        for node in self.nodes:
            node.get_topic(topic)
        yield logged_until(lambda: len(self.lookupd.db.find_producers("topic", topic, "")) == 2)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        published = make_bodies("lookupd", 20, 4)
        # published to the other node before the Reader connects: it waits there for the channel
        waiting = make_bodies("other", 15, 5)
        self.other.topics[topic].put(new_batch(self.other, waiting))
        report = yield self.exchange(topic, mpub=[published], lookupd="127.0.0.1:%d" % self.lookupd.http_port,
                                     readers=[{"name": "r", "channel": "c", "max_in_flight": 8}], queued=waiting)
        self.assertExactlyOnce(report["deliveries"]["r"], published + waiting)
        self.assertChannelDrained(topic, "c", 20)
        ch = self.other.topics[topic].channels["c"]
        self.assertEqual((ch.message_count, len(ch.in_flight), len(ch.queue.memory)), (15, 0, 0))
        self.assertIn("200 GET /lookup?topic=" + topic, [formatEvent(e).split(" (")[0] for e in events])
        # the Reader's channel was registered with lookupd by each node as it made it
        self.assertEqual([r.subkey for r in self.lookupd.db.find_registrations("channel", topic, "*")], ["c"])
        self.assertEqual(len(self.lookupd.db.find_producers("channel", topic, "c")), 2)


# -- the child: pynsq on tornado's IOLoop


def _child_main(spec: dict) -> int:
    import logging

    import nsq
    from tornado.ioloop import IOLoop

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    loop = IOLoop.current()
    address, topic = spec["address"], spec["topic"]
    every = set(bytes.fromhex(h) for h in spec["pub"] + spec["queued"]) | set(
        bytes.fromhex(h) for batch in spec["mpub"] for h in batch)
    report = {"published": [], "deliveries": {}}
    channels = {}
    subscribed = []
    readers = []
    state = {"done": False, "writer_ready": False}

    def maybe_publish():
        if state["writer_ready"] and len(subscribed) == len(spec["readers"]):
            for h in spec["pub"]:
                writer.pub(topic, bytes.fromhex(h), callback=published)
            for batch in spec["mpub"]:
                writer.mpub(topic, [bytes.fromhex(h) for h in batch], callback=published)

    def published(conn, data):
        report["published"].append("OK" if data == b"OK" else repr(data))
        maybe_finish()

    def maybe_finish():
        if state["done"] or len(report["published"]) < len(spec["pub"]) + len(spec["mpub"]):
            return
        if all(finished == every for finished in channels.values()):
            state["done"] = True
            # let the handler return (so pynsq sends its FIN) before flushing and closing
            loop.add_callback(shut_down)

    async def shut_down():
        conns = list(writer.conns.values()) + [c for r in readers for c in r.conns.values()]
        for conn in conns:
            await conn.stream.write(b"")
        for conn in conns:
            conn.close()
        loop.stop()

    class Writer(nsq.Writer):
        def _on_connection_ready(self, conn, **kwargs):
            super()._on_connection_ready(conn, **kwargs)
            state["writer_ready"] = True
            maybe_publish()

    class Reader(nsq.Reader):
        def _on_connection_ready(self, conn, **kwargs):
            def on_response(conn, data, **kwargs):
                if data == b"OK" and conn not in subscribed:
                    subscribed.append(conn)
                    maybe_publish()

            conn.on("response", on_response)
            super()._on_connection_ready(conn, **kwargs)

    def make_handler(name, channel, requeue_first):
        deliveries = report["deliveries"][name] = []
        finished = channels.setdefault(channel, set())

        def handler(message):
            body = bytes(message.body)
            ok = not (body in requeue_first and message.attempts == 1)
            deliveries.append([body.hex(), message.attempts, message.id.decode("ascii"), ok])
            if ok:
                finished.add(body)
                maybe_finish()
            return ok

        return handler

    connection = spec["connection"]
    writer = Writer([address], **connection)
    for r in spec["readers"]:
        # a Reader through lookupd queries it at once, and again every second if it found nothing
        sources = ({"lookupd_http_addresses": [spec["lookupd"]], "lookupd_poll_interval": 1} if spec["lookupd"]
                   else {"nsqd_tcp_addresses": [address]})
        readers.append(Reader(
            topic, r["channel"], name=r["name"], max_in_flight=r["max_in_flight"], **sources,
            message_handler=make_handler(r["name"], r["channel"], set(bytes.fromhex(h) for h in r["requeue_first"])),
            max_backoff_duration=0.5, requeue_delay=0, **connection))

    def give_up():
        sys.stderr.write("pynsq child: deadline passed; report so far: %s\n" % json.dumps(report))
        loop.stop()

    loop.call_later(spec["deadline"], give_up)
    loop.start()
    if not state["done"]:
        return 1
    sys.stdout.write(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(json.loads(sys.argv[1])))
