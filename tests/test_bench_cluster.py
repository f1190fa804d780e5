"""benchmarks.cluster: what it asks lookupd, how it starts lookupd, and the table it prints (the
processes it runs are the bench's, tested in test_bench)."""
import contextlib
import io
import json
import sys

from twisted.trial import unittest

from benchmarks import cluster
from benchmarks.cluster import LookupdServer, consume, parse_args, producer_ports, summary
from benchmarks.errors import ScenarioError


class ProducerPortsTests(unittest.TestCase):
    PRODUCERS = [{"broadcast_address": "127.0.0.1", "tcp_port": 4250, "http_port": 4251},
                 {"broadcast_address": "127.0.0.1", "tcp_port": 4150, "http_port": 4151}]

    def test_the_ports_of_lookupds_answer_sorted(self):
        body = json.dumps({"channels": ["c"], "producers": self.PRODUCERS}).encode()
        self.assertEqual(producer_ports(body), [4150, 4250])

    def test_the_pre_1_0_answer_wrapped_in_data(self):
        body = json.dumps({"status_code": 200, "status_txt": "OK",
                           "data": {"channels": [], "producers": self.PRODUCERS[:1]}}).encode()
        self.assertEqual(producer_ports(body), [4250])

    def test_no_producers(self):
        self.assertEqual(producer_ports(b'{"channels": [], "producers": []}'), [])


class LookupdServerTests(unittest.TestCase):
    def test_lookupds_flags_only(self):
        server = LookupdServer(["python", "-m", "twisted", "nsqtx-lookupd"], 0)
        self.addCleanup(server.close)
        self.assertEqual(server.argv(), ["python", "-m", "twisted", "nsqtx-lookupd",
                                         "--tcp-address=127.0.0.1:%d" % server.tcp_port,
                                         "--http-address=127.0.0.1:%d" % server.http_port, "--log-level=warn"])


class FakeServer:
    """A node whose channel t/c holds `depth` messages after the load."""

    def __init__(self, depth):
        self.depth = depth

    def channel_stats(self, topic, channel):
        return {"depth": self.depth} if (topic, channel) == ("t", "c") else {}


class ConsumeTests(unittest.TestCase):
    def setUp(self):
        self.loads = []

        def together(nsqload, loads, seconds):
            self.loads.append((nsqload, loads, seconds))
            return 1000.0 * len(loads)
        self.patch(cluster, "together", together)
        self.args = parse_args(["--nsqd", "/go/nsqd", "--sub-seconds", "2"])

    def test_one_consumer_per_node_and_their_summed_rate(self):
        a, b = FakeServer(5), FakeServer(7)
        self.assertEqual(consume("nsqload", [(a, 4150), (b, 4250)], self.args), 2000.0)
        self.assertEqual(self.loads, [("nsqload", [(a, ["sub", 4150, "t", "c", 2.0, 1, 2500]),
                                                   (b, ["sub", 4250, "t", "c", 2.0, 1, 2500])], 2.0)])

    def test_a_backlog_emptied_before_the_end_fails_the_round(self):
        with self.assertRaises(ScenarioError) as caught:
            consume("nsqload", [(FakeServer(5), 4150), (FakeServer(0), 4250)], self.args)
        self.assertIn("port 4250", str(caught.exception))


class SummaryTests(unittest.TestCase):
    def test_medians_and_their_ratio(self):
        results = {"nsqtx": [(2000000, 7000000), (2400000, 6000000), (2200000, 8000000)],
                   "go": [(1000000, 500000), (1100000, 700000), (900000, 600000)]}
        self.assertEqual(summary(results, 2).splitlines(), [
            "| | publish | consume |",
            "|---|---|---|",
            "| 2 nsqtx nodes and nsqtx-lookupd | 2 200 000 | 7 000 000 |",
            "| one Go nsqd | 1 000 000 | 600 000 |",
            "| nsqtx / Go | 2.20 | 11.67 |"])


class ParseArgsTests(unittest.TestCase):
    def test_defaults(self):
        args = parse_args(["--nsqd", "/go/nsqd"])
        self.assertEqual((args.python, args.nsqd, args.rounds, args.seconds, args.warmup, args.fill, args.sub_seconds),
                         (sys.executable, "/go/nsqd", 3, 4.0, 6.0, 6.0, 1.5))
        self.assertGreaterEqual(args.nodes, 1)

    def test_go_nsqd_is_required(self):
        with contextlib.redirect_stderr(io.StringIO()) as err, self.assertRaises(SystemExit):
            parse_args([])
        self.assertIn("--nsqd", err.getvalue())
