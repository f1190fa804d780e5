"""End to end through gnsq, the gevent-based client, over each transport it can negotiate: plain, TLS,
snappy, deflate, TLS+snappy, TLS+deflate. gnsq runs in a child process (gevent patches the world),
this same file run as a script; gevent has no PyPy 3.9 build, so these run on CPython only."""
from __future__ import annotations

import json
import sys

from twisted.internet import defer
from twisted.trial.unittest import SkipTest

from tests.support import start_tls_node, transport_tests
from tests.test_e2e_pynsq import CHILD_DEADLINE, PynsqCase, make_bodies, run_child


class PlainTransportTests(PynsqCase):
    """gnsq publishes singly and in a batch, and consumes everything exactly once (this class: with
    no transport feature); the server's side of each connection says what was negotiated."""

    features = ()

    def setUp(self):
        try:
            __import__("gnsq")
        except ImportError:
            raise SkipTest("gnsq (gevent) is not installed on this runtime")
        PynsqCase.setUp(self)

    def start_node(self):
        return start_tls_node(self)

    @defer.inlineCallbacks
    def test_pub_and_mpub_are_each_delivered_exactly_once(self):
        singles = make_bodies("gpub", 20, 6)
        batch = make_bodies("gmpub", 50, 7)
        options = {feature: True for feature in self.features}
        if "tls_v1" in options:
            options["tls_options"] = {"ca_certs": self.certificates["ca"], "cert_reqs": 2}
        report = yield run_child(__file__, {"port": self.node.tcp_port, "topic": "g", "pub": [b.hex() for b in singles],
                                 "mpub": [b.hex() for b in batch], "options": options, "deadline": CHILD_DEADLINE})
        yield self.all_clients_gone()
        self.assertEqual(sorted(bytes.fromhex(h) for h in report["received"]), sorted(singles + batch))
        self.assertChannelDrained("g", "c", 70)
        self.assertNegotiated(2)


transport_tests(PlainTransportTests, globals())


# -- the child: gnsq on gevent


def _child_main(spec: dict) -> int:
    import gevent
    import gnsq

    pub = [bytes.fromhex(h) for h in spec["pub"]]
    mpub = [bytes.fromhex(h) for h in spec["mpub"]]
    expected = len(pub) + len(mpub)
    received = []
    done = gevent.event.Event()
    options = spec["options"]
    address = "127.0.0.1:%d" % spec["port"]

    consumer = gnsq.Consumer(spec["topic"], "c", nsqd_tcp_addresses=[address], max_in_flight=16, **options)

    @consumer.on_message.connect
    def handler(consumer, message):
        received.append(message.body.hex())
        message.finish()
        if len(received) == expected:
            done.set()

    consumer.start(block=False)
    # gnsq's Producer fails any upgrade (against Go nsqd too: it takes the upgrade's OK for the answer
    # to a publish), so publishing goes through its connection class directly
    producer = gnsq.NsqdTCPClient("127.0.0.1", spec["port"], **options)
    producer.connect()
    producer.identify()
    for body in pub:
        producer.publish(spec["topic"], body)
        assert producer.read_response() == (0, b"OK")
    producer.multipublish(spec["topic"], mpub)
    assert producer.read_response() == (0, b"OK")
    done.wait(spec["deadline"])
    gevent.sleep(0.2)
    producer.close_stream()
    consumer.close()
    consumer.join(5)
    if len(received) != expected:
        sys.stderr.write("gnsq child: got %d of %d\n" % (len(received), expected))
        return 1
    sys.stdout.write(json.dumps({"received": received}))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(json.loads(sys.argv[1])))
