"""The parts of ``python -m benchmarks`` that need no nsqtx server: its options, how repeated runs
become one row each, the table, the percentile of /ping latencies and what polls /ping during a
warm-up. Nothing here runs or times a load."""
from __future__ import annotations

import argparse
import contextlib
import http.server
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

from twisted.trial import unittest

from benchmarks.cli import (DEFAULT_NSQLOAD_SRC, _int_list, _positive, _scenario_list, _transport_list, parse_args,
                            rerun_stale, run_rounds)
from benchmarks import cli, meters, scenarios
from benchmarks.certificates import make_certificates
from benchmarks.meters import CPUMeter, _percentile, machine_seconds, ping_burst
from benchmarks.nsqload import LoadResult, build_nsqload
from benchmarks.errors import BenchError
from benchmarks.report import describe_nsqd, format_table, label, median_rows, report
from benchmarks.scenarios import Bench, next_backlog
from benchmarks.server import Server, free_port, nsqtx_command
from benchmarks.settings import REPO_ROOT


def _row(python="/py/a", mode="pub", connections=1, **fields) -> dict:
    """A result row as the bench makes it (Bench.row), with the given fields filled in."""
    args = parse_args(["--python", python])
    row = Bench(args, "nsqload", python, "CPython " + python, [python]).row(mode, connections)
    row.update(fields)
    return row


def _script(test: unittest.TestCase, body: str, interpreter: str = "/bin/sh") -> str:
    """A script running `body`, removed after `test`: a stand-in for nsqload or nsqd."""
    fd, path = tempfile.mkstemp(suffix=".script")
    with os.fdopen(fd, "w") as f:
        f.write("#!" + interpreter + "\n" + body + "\n")
    os.chmod(path, 0o755)
    test.addCleanup(os.remove, path)
    return path


def _cells(line: str):
    """A table line split into its cells (they are two spaces apart or more, and have none inside)."""
    return re.split(r" {2,}", line.strip())


class ParseArgsTests(unittest.TestCase):
    def _rejected(self, argv) -> str:
        """parse_args exits with status 2 on `argv`; returns what it printed."""
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            e = self.assertRaises(SystemExit, parse_args, argv)
        self.assertEqual(e.code, 2)
        return err.getvalue()

    def test_defaults(self):
        args = parse_args([])
        self.assertEqual(args.python, [sys.executable])
        self.assertEqual(args.scenarios, ["pub", "sub", "mem"])
        self.assertEqual(args.seconds, 5.0)
        self.assertEqual(args.messages, 500000)
        self.assertEqual(args.connections, [1, 2])
        self.assertEqual(args.size, 200)
        self.assertEqual(args.batch, 200)
        self.assertIsNone(args.mem_queue_size)
        self.assertEqual(args.nsqload_src, DEFAULT_NSQLOAD_SRC)
        self.assertEqual(args.repeat, 1)
        self.assertEqual(args.sub_warmup, 0.0)
        self.assertEqual(args.pub_warmup, 0.0)
        self.assertEqual(args.ping_interval, 0.01)
        self.assertEqual(args.ping_warmup, 0)
        self.assertFalse(args.json)
        self.assertEqual(args.nsqd, [])
        self.assertEqual(args.servers, [sys.executable])
        self.assertEqual(args.transports, ["plain"])

    def test_go_nsqd_after_the_default_runtime_or_the_ones_named(self):
        args = parse_args(["--nsqd", "/go/nsqd", "--nsqd", "/go/nsqd2"])
        self.assertEqual(args.servers, [sys.executable, "/go/nsqd", "/go/nsqd2"])
        args = parse_args(["--nsqd", "/go/nsqd", "--python", "/py/a"])
        self.assertEqual(args.servers, ["/py/a", "/go/nsqd"])

    def test_nsqload_source_in_the_repository(self):
        self.assertEqual(DEFAULT_NSQLOAD_SRC, os.path.join(REPO_ROOT, "benchmarks", "nsqload.c"))
        self.assertTrue(os.path.isfile(DEFAULT_NSQLOAD_SRC), DEFAULT_NSQLOAD_SRC)

    def test_repository_root_is_the_checkout_the_server_imports(self):
        # the server runs with PYTHONPATH=REPO_ROOT: the checkout that holds both the bench and nsqtx
        self.assertTrue(os.path.isfile(os.path.join(REPO_ROOT, "benchmarks", "settings.py")), REPO_ROOT)
        self.assertTrue(os.path.isfile(os.path.join(REPO_ROOT, "nsqtx", "__init__.py")), REPO_ROOT)

    def test_values(self):
        args = parse_args(["--python", "/py/a", "--python", "/py/b", "--scenarios", " mem, pub ",
                           "--seconds", "0.5", "--messages", "1000", "--connections", "8, 1,256",
                           "--size", "10", "--batch", "3", "--mem-queue-size", "0", "--nsqload-src", "x.c",
                           "--repeat", "3", "--sub-warmup", "1.5", "--ping-interval", "0", "--json",
                           "--pub-warmup", "2.5", "--ping-warmup", "1500", "--rdy", "7",
                           "--transport", "tls+snappy, plain,deflate"])
        self.assertEqual(args.python, ["/py/a", "/py/b"])
        self.assertEqual(args.scenarios, ["mem", "pub"])
        self.assertEqual(args.seconds, 0.5)
        self.assertEqual(args.messages, 1000)
        self.assertEqual(args.connections, [8, 1, 256])
        self.assertEqual((args.size, args.batch, args.repeat, args.rdy), (10, 3, 3, 7))
        self.assertEqual(args.mem_queue_size, 0)
        self.assertEqual(args.nsqload_src, "x.c")
        self.assertEqual(args.sub_warmup, 1.5)
        self.assertEqual(args.pub_warmup, 2.5)
        self.assertEqual(args.ping_interval, 0.0)
        self.assertEqual(args.ping_warmup, 1500)
        self.assertEqual(args.transports, ["tls+snappy", "plain", "deflate"])
        self.assertTrue(args.json)

    def test_rejected_values(self):
        for connections in ("0", "257", ","):
            self.assertIn("connection counts must be in [1,256]", self._rejected(["--connections", connections]))
        self.assertIn("not a comma-separated list of integers", self._rejected(["--connections", "1,two"]))
        self.assertIn("unknown scenario bogus (choose from pub,sub,mem)", self._rejected(["--scenarios", "pub,bogus"]))
        self.assertIn("unknown scenario ''", self._rejected(["--scenarios", ","]))
        self.assertIn("unknown transport snappy+tls (choose from plain,tls,snappy,deflate,tls+snappy,tls+deflate)",
                      self._rejected(["--transport", "tls,snappy+tls"]))
        self.assertIn("transport tls listed twice", self._rejected(["--transport", "tls,plain,tls"]))
        for flag in ("--seconds", "--messages", "--size", "--batch", "--repeat", "--rdy"):
            self.assertIn("must be positive", self._rejected([flag, "0"]), flag)
        self.assertIn("--rdy must be at most 2500 (nsqd's --max-rdy-count)", self._rejected(["--rdy", "2501"]))
        self.assertIn("argument --messages", self._rejected(["--messages", "1.5"]))
        self.assertIn("--mem-queue-size must not be negative", self._rejected(["--mem-queue-size", "-1"]))
        for flag in ("--pub-warmup", "--sub-warmup", "--ping-interval"):
            for value in ("-1", "nan"):
                self.assertIn("%s must not be negative" % flag, self._rejected([flag, value]))
        self.assertIn("--ping-warmup must not be negative", self._rejected(["--ping-warmup", "-1"]))
        self.assertIn("argument --ping-warmup", self._rejected(["--ping-warmup", "1.5"]))

    def test_int_list(self):
        self.assertEqual(_int_list("1,2, 4,"), [1, 2, 4])
        for text in ("", "0", "1,257", "-1", "x"):
            self.assertRaises(argparse.ArgumentTypeError, _int_list, text)

    def test_scenario_list(self):
        self.assertEqual(_scenario_list("sub"), ["sub"])
        self.assertEqual(_scenario_list("mem,sub,"), ["mem", "sub"])
        for text in ("", "pub,PUB", "all"):
            self.assertRaises(argparse.ArgumentTypeError, _scenario_list, text)

    def test_transport_list(self):
        self.assertEqual(_transport_list("plain"), ["plain"])
        self.assertEqual(_transport_list(" tls ,tls+deflate,snappy,"), ["tls", "tls+deflate", "snappy"])
        for text in ("", ",", "TLS", "ssl", "snappy+deflate", "deflate,deflate"):
            self.assertRaises(argparse.ArgumentTypeError, _transport_list, text)

    def test_positive(self):
        self.assertEqual(_positive(float)("0.25"), 0.25)
        self.assertEqual(_positive(int)("7"), 7)
        self.assertRaises(argparse.ArgumentTypeError, _positive(float), "0.0")
        self.assertRaises(argparse.ArgumentTypeError, _positive(int), "-1")
        self.assertRaises(ValueError, _positive(int), "1.5")


class _PingCounter(http.server.BaseHTTPRequestHandler):
    """Answers /stats with the server's `stats` document, anything else with OK (counting /pings),
    with the server's `status`."""

    def do_GET(self):
        self.server.pings += self.path == "/ping"
        body = json.dumps(self.server.stats).encode() if self.path.startswith("/stats") else b"OK"
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _http_server(test: unittest.TestCase):
    """A _PingCounter server on a free port of 127.0.0.1, serving in a thread until `test` ends."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PingCounter)
    server.pings = 0
    server.stats = {}
    server.status = 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    test.addCleanup(thread.join)
    test.addCleanup(server.server_close)
    test.addCleanup(server.shutdown)
    return server


class StatsTests(unittest.TestCase):
    def test_the_topics_and_the_channels_part_of_stats(self):
        http_server = _http_server(self)
        http_server.stats = {"topics": [
            {"topic_name": "a", "backend_depth": 1, "channels": [{"channel_name": "c", "depth": 1}]},
            {"topic_name": "bench", "backend_depth": 2,
             "channels": [{"channel_name": "x", "depth": 3}, {"channel_name": "c", "depth": 4}]}]}
        server = Server(["/go/nsqd"], 7)
        self.addCleanup(server.close)
        server.http_port = http_server.server_address[1]
        self.assertEqual(server.topic_stats("bench")["backend_depth"], 2)
        self.assertEqual(server.channel_stats("bench", "c"), {"channel_name": "c", "depth": 4})
        self.assertEqual(server.channel_stats("bench", "y"), {})
        self.assertEqual(server.topic_stats("none"), {})
        http_server.stats = {}
        self.assertEqual(server.channel_stats("bench", "c"), {})


class WarmUpTests(unittest.TestCase):
    """Bench.warm_up against a stand-in for nsqload (a script that waits, then prints nsqload's result
    line) and an HTTP server that counts the /ping requests it answers."""

    def setUp(self):
        self.http = _http_server(self)
        self.nsqload = _script(self, "sleep 0.3\necho 'sub msgs=42 secs=0.30 rate=140.0'")
        self.server = argparse.Namespace(http_port=self.http.server_address[1], exit_note=lambda: "")

    def _warm_up(self, ping_interval: str):
        args = parse_args(["--ping-interval", ping_interval])
        bench = Bench(args, self.nsqload, sys.executable, "CPython", nsqtx_command(sys.executable))
        return bench.warm_up(self.server, ["sub"], 0.3)

    def test_polls_ping_while_the_load_runs(self):
        msgs, ping = self._warm_up("0.01")
        self.assertEqual(msgs, 42)
        self.assertGreater(ping["count"], 0)
        self.assertEqual(ping["count"], self.http.pings)
        self.assertEqual(ping["errors"], 0)

    def test_no_polling_with_an_interval_of_zero(self):
        msgs, ping = self._warm_up("0")
        self.assertEqual((msgs, ping["count"], self.http.pings), (42, 0, 0))

    def _sub_until_measured(self, depth: int, *argv, transport="plain"):
        """Bench.sub over `transport` with a backlog of 100 that /stats says is `depth` deep, up to the
        measured run: (the row, the measured run's nsqload arguments)."""
        class Measured(Exception):
            pass

        class Filled(Bench):
            def fill(self, server, count):
                return LoadResult(count, 1.0)

            def _load(self, server, row, mode_args, *args, **kwargs):
                raise Measured(mode_args)

        self.server.channel_stats = lambda topic, channel: {"depth": depth}
        self.server.create_channel = lambda topic, channel: None
        self.server.tcp_port = 4150
        bench = Filled(parse_args(["--sub-warmup", "0.3", "--ping-interval", "0"] + list(argv)), self.nsqload,
                       sys.executable, "CPython", nsqtx_command(sys.executable), transport)
        row = bench.row("sub", 1, 100)
        measured = self.assertRaises(Measured, bench.sub, self.server, row)
        return row, measured.args[0]

    def test_a_sub_warm_up_notes_when_the_backlog_ran_out(self):
        row, _ = self._sub_until_measured(0)
        self.assertEqual(row["warmup_msgs"], 42)
        self.assertGreater(row["warmup_drained_after"], 0)

    def test_a_sub_warm_up_that_left_a_backlog(self):
        row, _ = self._sub_until_measured(5)
        self.assertEqual((row["warmup_msgs"], row["warmup_drained_after"]), (42, None))

    def test_consumers_ask_for_rdy_2500_unless_told(self):
        for argv, rdy in (((), 2500), (("--rdy", "1"), 1)):
            _, load_args = self._sub_until_measured(5, *argv)
            self.assertEqual(load_args[-1], rdy)

    def test_consumers_over_a_transport_name_it_last(self):
        """nsqload's command line as before there were transports, and the transport after it."""
        row, load_args = self._sub_until_measured(5, "--rdy", "7", transport="deflate")
        self.assertEqual(load_args, ["sub", 4150, "bench", "bench", 5.0, 1, 7, "deflate"])
        self.assertEqual(row["transport"], "deflate")
        _, plain = self._sub_until_measured(5, "--rdy", "7")
        self.assertEqual(plain, load_args[:-1])


class PingWarmUpTests(unittest.TestCase):
    def setUp(self):
        self.http = _http_server(self)

    def test_a_burst_counts_what_was_answered(self):
        self.assertEqual(ping_burst(self.http.server_address[1], 7), {"count": 7, "errors": 0, "first_error": ""})
        self.assertEqual(self.http.pings, 7)

    def test_a_burst_answered_with_an_error_status(self):
        self.http.status = 503
        self.assertEqual(ping_burst(self.http.server_address[1], 2),
                         {"count": 0, "errors": 2, "first_error": "HTTP 503"})

    def test_a_burst_that_nobody_answers(self):
        ping = ping_burst(free_port(), 2)
        self.assertEqual((ping["count"], ping["errors"]), (0, 2))
        self.assertIn("ConnectionRefusedError", ping["first_error"])

    def _sub_until_it_fills(self, *argv):
        """Bench.sub up to the point where it creates the channel to fill: (/pings answered by then,
        the row's notes)."""
        class Filling(Exception):
            pass

        pinged = []

        def create_channel(topic, channel):
            pinged.append(self.http.pings)
            raise Filling()

        server = argparse.Namespace(http_port=self.http.server_address[1], create_channel=create_channel)
        bench = Bench(parse_args(list(argv)), "nsqload", "/py/a", "CPython", ["/py/a"])
        row = bench.row("sub", 1, 100)
        self.assertRaises(Filling, bench.sub, server, row)
        return pinged[0], row["notes"]

    def test_a_sub_run_pings_before_it_fills_the_backlog(self):
        self.assertEqual(self._sub_until_it_fills("--ping-warmup", "5"),
                         (5, ["5 /ping answered one after another before the load"]))

    def test_none_by_default(self):
        self.assertEqual(self._sub_until_it_fills(), (0, []))


class MemQueueSizeTests(unittest.TestCase):
    def _size(self, mode, backlog, *argv):
        return Bench(parse_args(list(argv)), "nsqload", "/py/a", "CPython", ["/py/a"]).mem_queue_size(mode, backlog)

    def test_a_pub_run_stays_in_memory_through_its_warm_up(self):
        self.assertEqual(self._size("pub", 500000, "--seconds", "4", "--pub-warmup", "6"), 50000000)
        self.assertEqual(self._size("pub", 500000, "--seconds", "4", "--pub-warmup", "0.5"), 25000000)
        self.assertEqual(self._size("pub", 500000, "--seconds", "1"), 10000000)

    def test_a_backlog_fits_twice(self):
        self.assertEqual(self._size("sub", 8000000), 16000000)
        self.assertEqual(self._size("mem", 1000000, "--pub-warmup", "60"), 10000000)

    def test_as_given(self):
        for mode in ("pub", "sub", "mem"):
            self.assertEqual(self._size(mode, 8000000, "--mem-queue-size", "0", "--pub-warmup", "6"), 0)


class NextBacklogTests(unittest.TestCase):
    def test_lasting_a_quarter_longer_than_the_run_at_the_pace_it_ran_out(self):
        # 1M consumed in the first 2 of 4 s: 2.5M lasts 5 s
        self.assertEqual(next_backlog(1000000, 1000000, 0, 2.0, 4.0, 8000000), 2500000)

    def test_the_warm_up_is_added_and_not_counted_in_the_pace(self):
        # 600k in the warm-up, then 1.4M in the first 2 of 4 s
        self.assertEqual(next_backlog(2000000, 2000000, 600000, 2.0, 4.0, 16000000), 600000 + 3500000)

    def test_at_least_doubled_rounded_up_and_capped(self):
        self.assertEqual(next_backlog(1000000, 1000000, 0, 3.9, 4.0, 8000000), 2000000)
        self.assertEqual(next_backlog(1000000, 1000000, 0, 1.9, 4.0, 8000000), 2700000)
        self.assertEqual(next_backlog(1000000, 1000000, 0, 0.1, 4.0, 8000000), 8000000)

    def test_a_warm_up_that_emptied_it_sets_the_pace_for_itself_and_the_run(self):
        # 3M consumed in the first 3 s of a 5 s warm-up: 18M last 2 x (5 + 4) s
        self.assertEqual(next_backlog(3000000, 3000000, 2999000, 0.1, 4.0, 40000000, 5.0, 3.0), 18000000)
        self.assertEqual(next_backlog(3000000, 3000000, 2999000, 0.1, 4.0, 12000000, 5.0, 3.0), 12000000)
        self.assertEqual(next_backlog(1000000, 1000000, 1000000, 0.1, 4.0, 8000000, 5.0, 4.9), 3700000)


class SubUntilBusyTests(unittest.TestCase):
    def test_a_warm_up_that_emptied_the_backlog_raises_it_at_the_warm_up_pace(self):
        backlogs = []

        class EmptiedInTheWarmUp(Bench):
            """The first run's warm-up consumes all 3M in 1.2 s; the second's lasts."""

            def _guarded(self, row, method):
                backlogs.append(row["backlog"])
                first = len(backlogs) == 1
                row.update(filled=row["backlog"], warmup_msgs=row["backlog"] if first else 0, drained=first,
                           drained_after=0.1 if first else None, warmup_drained_after=1.2 if first else None)
                return row

        args = parse_args(["--messages", "3000000", "--sub-warmup", "5", "--seconds", "4"])
        bench = EmptiedInTheWarmUp(args, "nsqload", "/py/a", "PyPy", ["/py/a"])
        with contextlib.redirect_stderr(io.StringIO()):
            bench.sub_until_busy(1)
        # 2 x (5 + 4) s at 2.5M/s, capped at 8 x --messages
        self.assertEqual(backlogs, [3000000, 24000000])


class _FakeBench:
    """Stands for a Bench: makes rows at once and notes what it was asked for."""

    def __init__(self, python: str, asked: list, transport: str = "plain"):
        self.python = self.server = python
        self.transport = transport
        self.asked = asked
        self.sub_backlog = 100

    def run(self, scenario: str, reverse: bool = False):
        self.asked.append((self.python, scenario, reverse) if self.transport == "plain"
                          else (self.python, self.transport, scenario, reverse))
        return [_row(self.python, scenario, conns, rate=1.0, backlog=self.sub_backlog, transport=self.transport)
                for conns in ((2, 1) if reverse else (1, 2))]

    def sub_until_busy(self, conns: int) -> dict:
        self.asked.append((self.python, "again", conns) if self.transport == "plain"
                          else (self.python, self.transport, "again", conns))
        return _row(self.python, "sub", conns, rate=2.0, backlog=self.sub_backlog, transport=self.transport)


class RoundsTests(unittest.TestCase):
    def setUp(self):
        self.asked = []
        self.args = parse_args(["--python", "/py/a", "--python", "/py/b", "--scenarios", "pub,sub", "--repeat", "3"])
        self.benches = [_FakeBench(python, self.asked) for python in self.args.python]
        self.runs = []
        with contextlib.redirect_stderr(io.StringIO()):
            run_rounds(self.benches, self.args, self.runs)

    def test_every_other_round_runs_backwards_and_each_run_knows_its_round(self):
        forwards = [("/py/a", "pub", False), ("/py/a", "sub", False), ("/py/b", "pub", False), ("/py/b", "sub", False)]
        backwards = [("/py/b", "pub", True), ("/py/b", "sub", True), ("/py/a", "pub", True), ("/py/a", "sub", True)]
        self.assertEqual(self.asked, forwards + backwards + forwards)
        self.assertEqual([r["round"] for r in self.runs], [0] * 8 + [1] * 8 + [2] * 8)

    def test_sub_runs_with_a_backlog_raised_since_run_again_in_their_round(self):
        self.benches[1].sub_backlog = 200
        failed = self.runs[6]
        self.assertEqual((failed["server"], failed["mode"], failed["connections"]), ("/py/b", "sub", 1))
        failed["error"] = "died"
        del self.asked[:]
        with contextlib.redirect_stderr(io.StringIO()):
            rerun_stale(self.benches, self.args, self.runs)
        again = [(r["server"], r["mode"], r["connections"], r["round"]) for r in self.runs if r["rate"] == 2.0]
        self.assertEqual(again, [("/py/b", "sub", 2, 0), ("/py/b", "sub", 2, 1), ("/py/b", "sub", 1, 1),
                                 ("/py/b", "sub", 1, 2), ("/py/b", "sub", 2, 2)])
        self.assertEqual(len(self.asked), 5)
        self.assertIs(self.runs[6], failed)


class TransportRoundsTests(unittest.TestCase):
    """Each server over each --transport is a bench of its own, in the same rounds as the servers."""

    def _rounds(self, *argv):
        asked, runs = [], []
        args = parse_args(list(argv))
        benches = [_FakeBench(server, asked, transport) for server in args.servers for transport in args.transports]
        with contextlib.redirect_stderr(io.StringIO()):
            run_rounds(benches, args, runs)
        return args, benches, asked, runs

    def test_servers_then_transports_and_every_other_round_backwards(self):
        _, _, asked, runs = self._rounds("--python", "/py/a", "--nsqd", "/go/nsqd", "--scenarios", "pub",
                                         "--transport", "plain,tls", "--repeat", "2")
        self.assertEqual(asked, [("/py/a", "pub", False), ("/py/a", "tls", "pub", False),
                                 ("/go/nsqd", "pub", False), ("/go/nsqd", "tls", "pub", False),
                                 ("/go/nsqd", "tls", "pub", True), ("/go/nsqd", "pub", True),
                                 ("/py/a", "tls", "pub", True), ("/py/a", "pub", True)])
        self.assertEqual(sorted({(r["server"], r["transport"], r["round"]) for r in runs}),
                         [(server, transport, n) for server in ("/go/nsqd", "/py/a") for transport in ("plain", "tls")
                          for n in (0, 1)])

    def test_a_raised_backlog_runs_that_transports_sub_runs_again_only(self):
        args, benches, asked, runs = self._rounds("--python", "/py/a", "--scenarios", "sub", "--transport",
                                                  "plain,snappy")
        benches[1].sub_backlog = 200
        del asked[:]
        with contextlib.redirect_stderr(io.StringIO()):
            rerun_stale(benches, args, runs)
        self.assertEqual(asked, [("/py/a", "snappy", "again", 1), ("/py/a", "snappy", "again", 2)])
        self.assertEqual([(r["transport"], r["rate"]) for r in runs],
                         [("plain", 1.0), ("plain", 1.0), ("snappy", 2.0), ("snappy", 2.0)])


class MedianRowsTests(unittest.TestCase):
    def test_median_run_of_an_odd_count(self):
        """The row is that run's, /ping and CPU included, and its first note lists every run's figure."""
        runs = [_row(rate=300.0, ping={"p99_ms": 3.0}, server_cpu_pct=30.0),
                _row(rate=100.0, ping={"p99_ms": 1.0}, server_cpu_pct=10.0),
                _row(rate=200.4, ping={"p99_ms": 2.0}, server_cpu_pct=20.0)]
        [row] = median_rows(runs, parse_args(["--python", "/py/a"]))
        self.assertEqual((row["rate"], row["ping"], row["server_cpu_pct"]), (200.4, {"p99_ms": 2.0}, 20.0))
        self.assertEqual(row["notes"], ["median of 3 runs (100, 200, 300 msgs/s)"])

    def test_lower_middle_of_an_even_count(self):
        runs = [_row(rate=r) for r in (400.0, 100.0, 300.0, 200.0)]
        [row] = median_rows(runs, parse_args(["--python", "/py/a"]))
        self.assertEqual(row["rate"], 200.0)
        self.assertEqual(row["notes"], ["median of 4 runs (100, 200, 300, 400 msgs/s)"])

    def test_mem_goes_by_bytes_per_message(self):
        runs = [_row(mode="mem", bytes_per_msg=b, rate=r) for b, r in ((90.0, 1.0), (70.0, 3.0), (80.0, 2.0))]
        [row] = median_rows(runs, parse_args(["--python", "/py/a"]))
        self.assertEqual(row["bytes_per_msg"], 80.0)
        self.assertEqual(row["notes"], ["median of 3 runs (70, 80, 90 B/msg)"])

    def test_the_runs_own_notes_follow_and_the_runs_stay_as_they_were(self):
        """--json prints the runs beside the medians: they keep their own notes."""
        runs = [_row(rate=1.0, notes=["slow"]), _row(rate=2.0, notes=["noisy"]), _row(rate=3.0, notes=[])]
        [row] = median_rows(runs, parse_args(["--python", "/py/a"]))
        self.assertEqual(row["notes"], ["median of 3 runs (1, 2, 3 msgs/s)", "noisy"])
        self.assertEqual([r["notes"] for r in runs], [["slow"], ["noisy"], []])
        self.assertIsNot(row, runs[1])

    def test_failed_runs_are_left_out_of_the_median_and_noted(self):
        runs = [_row(rate=500.0, error="first failure"), _row(rate=20.0),
                _row(rate=10.0, error="second failure"), _row(rate=30.0)]
        [row] = median_rows(runs, parse_args(["--python", "/py/a"]))
        self.assertEqual(row["rate"], 20.0)
        self.assertIsNone(row["error"])
        self.assertEqual(row["notes"], ["median of 2 runs (20, 30 msgs/s)", "2 of 4 runs failed: first failure"])

    def test_all_runs_failed(self):
        """Then the first failed run stands for them, as it was."""
        runs = [_row(error="first failure", notes=["a"]), _row(error="second failure")]
        [row] = median_rows(runs, parse_args(["--python", "/py/a"]))
        self.assertEqual(row["error"], "first failure")
        self.assertEqual(row["notes"], ["a"])

    def test_one_row_per_runtime_scenario_and_count_in_the_order_of_the_options(self):
        args = parse_args(["--python", "/py/a", "--python", "/py/b", "--scenarios", "mem,pub", "--connections", "2,1"])
        runs = [_row("/py/b", "pub", 1, rate=1.0), _row("/py/a", "pub", 1, rate=2.0),
                _row("/py/a", "pub", 2, rate=3.0), _row("/py/a", "mem", 1, bytes_per_msg=4.0),
                _row("/py/b", "pub", 1, rate=5.0), _row("/py/a", "pub", 2, rate=6.0)]
        rows = median_rows(runs, args)
        self.assertEqual([(r["server"], r["mode"], r["connections"]) for r in rows],
                         [("/py/a", "mem", 1), ("/py/a", "pub", 2), ("/py/a", "pub", 1), ("/py/b", "pub", 1)])
        self.assertEqual([r["notes"][0] for r in rows],
                         ["median of 1 runs (4 B/msg)", "median of 2 runs (3, 6 msgs/s)",
                          "median of 1 runs (2 msgs/s)", "median of 2 runs (1, 5 msgs/s)"])

    def test_a_later_count_is_compared_with_the_first_round_by_round(self):
        """Each ratio is to the first count's run of the same round, in round order, whatever order the
        runs came in; a round the first count failed in has no ratio."""
        args = parse_args(["--python", "/py/a", "--scenarios", "sub", "--connections", "1,2"])
        runs = [_row("/py/a", "sub", 1, round=0, rate=100.0), _row("/py/a", "sub", 2, round=0, rate=110.0),
                _row("/py/a", "sub", 2, round=1, rate=90.0), _row("/py/a", "sub", 1, round=1, rate=120.0),
                _row("/py/a", "sub", 1, round=2, error="died"), _row("/py/a", "sub", 2, round=2, rate=500.0),
                _row("/py/a", "sub", 1, round=3, rate=50.0), _row("/py/a", "sub", 2, round=3, rate=60.0),
                _row("/py/a", "sub", 1, round=4, rate=70.0), _row("/py/a", "sub", 2, round=4, rate=70.0)]
        one, two = median_rows(runs[3:] + runs[:3], args)
        self.assertEqual(two["notes"][1:],
                         ["against 1 connection in the same round: 1.10x, 0.75x, 1.20x, 1.00x (ahead in 2 of 4)"])
        self.assertEqual(one["notes"][1:], ["1 of 5 runs failed: died"])

    def test_a_count_with_no_round_of_the_first_to_compare_with_has_no_ratios(self):
        args = parse_args(["--python", "/py/a", "--connections", "2,4"])
        runs = [_row("/py/a", "pub", 4, round=0, rate=3.0), _row("/py/a", "pub", 2, round=0, error="refused"),
                _row("/py/a", "pub", 4, round=1, rate=5.0)]
        rows = median_rows(runs, args)
        self.assertEqual([r["notes"] for r in rows], [[], ["median of 2 runs (3, 5 msgs/s)"]])

    def test_go_nsqd_rows_come_after_the_pythons_and_keep_to_their_own_rounds(self):
        args = parse_args(["--nsqd", "/go/nsqd", "--python", "/py/a", "--scenarios", "sub"])
        runs = [_row("/go/nsqd", "sub", 1, round=0, rate=300.0), _row("/go/nsqd", "sub", 2, round=0, rate=390.0),
                _row("/py/a", "sub", 2, round=0, rate=100.0), _row("/py/a", "sub", 1, round=0, rate=200.0)]
        rows = median_rows(runs, args)
        self.assertEqual([(r["server"], r["connections"]) for r in rows],
                         [("/py/a", 1), ("/py/a", 2), ("/go/nsqd", 1), ("/go/nsqd", 2)])
        self.assertEqual(rows[1]["notes"][1:], ["against 1 connection in the same round: 0.50x (ahead in 0 of 1)"])
        self.assertEqual(rows[3]["notes"][1:], ["against 1 connection in the same round: 1.30x (ahead in 1 of 1)"])

    def test_one_row_per_transport_in_the_order_they_run(self):
        """A server's transports in the order of the option, each with its scenarios; a mem row has no
        transport and comes with the first one's. The ratios to the first connection count are taken
        within a transport."""
        args = parse_args(["--python", "/py/a", "--scenarios", "pub,mem", "--transport", "tls,plain"])
        runs = [_row("/py/a", "pub", 1, round=0, rate=100.0), _row("/py/a", "pub", 2, round=0, rate=150.0),
                _row("/py/a", "pub", 1, round=0, rate=50.0, transport="tls"),
                _row("/py/a", "pub", 2, round=0, rate=60.0, transport="tls"),
                _row("/py/a", "mem", 1, round=0, bytes_per_msg=4.0),
                _row("/py/a", "pub", 1, round=1, rate=300.0)]
        rows = median_rows(runs, args)
        self.assertEqual([(r["mode"], r["transport"], r["connections"], r["notes"][0]) for r in rows], [
            ("pub", "tls", 1, "median of 1 runs (50 msgs/s)"), ("pub", "tls", 2, "median of 1 runs (60 msgs/s)"),
            ("mem", None, 1, "median of 1 runs (4 B/msg)"),
            ("pub", "plain", 1, "median of 2 runs (100, 300 msgs/s)"),
            ("pub", "plain", 2, "median of 1 runs (150 msgs/s)")])
        self.assertEqual(rows[1]["notes"][1:], ["against 1 connection in the same round: 1.20x (ahead in 1 of 1)"])
        self.assertEqual(rows[4]["notes"][1:], ["against 1 connection in the same round: 1.50x (ahead in 1 of 1)"])

    def test_a_mem_row_whatever_the_connection_counts(self):
        """mem always runs on one connection, which --connections need not list."""
        args = parse_args(["--python", "/py/a", "--scenarios", "pub,mem", "--connections", "2"])
        runs = [_row("/py/a", "mem", 1, bytes_per_msg=4.0), _row("/py/a", "pub", 2, rate=3.0)]
        rows = median_rows(runs, args)
        self.assertEqual([(r["mode"], r["connections"]) for r in rows], [("pub", 2), ("mem", 1)])


class FormatTableTests(unittest.TestCase):
    HEADER = ["runtime", "mode", "mem-queue", "conns", "msgs/s", "B/queued msg", "/ping p99 ms", "server CPU%",
              "notes"]

    def _table(self, *rows):
        """The table's lines as dicts of column name to cell."""
        lines = format_table(rows).split("\n")
        self.assertEqual(_cells(lines[0]), self.HEADER)
        return [dict(zip(self.HEADER, _cells(line))) for line in lines[1:]]

    def test_pub_row(self):
        [cells] = self._table(_row(mode="pub", connections=2, mem_queue_size=10000000, rate=123456.7,
                                   ping={"p50_ms": 0.5, "p99_ms": 1.234}, server_cpu_pct=97.6,
                                   notes=["first", "second"]))
        self.assertEqual(cells, {"runtime": "CPython /py/a", "mode": "pub", "mem-queue": "10M", "conns": "2",
                                 "msgs/s": "123457", "B/queued msg": "-", "/ping p99 ms": "1.23",
                                 "server CPU%": "98", "notes": "first; second"})

    def test_mem_row_shows_bytes_and_no_rate(self):
        [cells] = self._table(_row(mode="mem", mem_queue_size=0, rate=1000.0, bytes_per_msg=87.4))
        self.assertEqual(cells, {"runtime": "CPython /py/a", "mode": "mem", "mem-queue": "0", "conns": "1",
                                 "msgs/s": "-", "B/queued msg": "87", "/ping p99 ms": "-", "server CPU%": "-"})

    def test_failed_row_shows_no_figures_and_leads_its_notes_with_the_error(self):
        [cells] = self._table(_row(rate=5.0, ping={"p99_ms": 2.0}, server_cpu_pct=50.0, notes=["later"],
                                   error="the server died under load"))
        self.assertEqual((cells["msgs/s"], cells["/ping p99 ms"], cells["server CPU%"]), ("-", "-", "50"))
        self.assertEqual(cells["notes"], "FAILED: the server died under load; later")

    def test_mem_queue_sizes_in_thousands_and_millions_only_when_round(self):
        sizes = [0, 999, 1000, 1500, 2500000, 3000000, 10 ** 7 + 1000]
        table = self._table(*(_row(mem_queue_size=n, rate=1.0) for n in sizes))
        self.assertEqual([cells["mem-queue"] for cells in table], ["0", "999", "1k", "1500", "2500k", "3M", "10001k"])

    def test_layout(self):
        """Names and notes to the left, figures to the right, two spaces apart; no trailing blanks."""
        pub = _row(mode="pub", mem_queue_size=10000000, rate=123456.7, ping={"p99_ms": 1.234}, server_cpu_pct=97.6)
        mem = _row(mode="mem", mem_queue_size=1000000, bytes_per_msg=87.4, notes=["n"])
        mem["runtime"] = "PyPy 3.9"
        self.assertEqual(format_table([pub, mem]).split("\n"), [
            "runtime        mode  mem-queue  conns  msgs/s  B/queued msg  /ping p99 ms  server CPU%  notes",
            "CPython /py/a  pub         10M      1  123457             -          1.23           98",
            "PyPy 3.9       mem          1M      1       -            87             -            -  n",
        ])


    def test_a_transport_column_once_a_row_went_over_another_than_plain(self):
        """Plain and mem rows say so; names, the transport's too, to the left."""
        rows = [_row(rate=200.0, connections=2, mem_queue_size=10000000),
                _row(rate=100.0, transport="tls+snappy", mem_queue_size=10000000),
                _row(mode="mem", mem_queue_size=1000000, bytes_per_msg=87.4)]
        self.assertEqual(format_table(rows).split("\n"), [
            "runtime        mode  transport   mem-queue  conns  msgs/s  B/queued msg  /ping p99 ms  server CPU%  notes",
            "CPython /py/a  pub   plain             10M      2     200             -             -            -",
            "CPython /py/a  pub   tls+snappy        10M      1     100             -             -            -",
            "CPython /py/a  mem   -                  1M      1       -            87             -            -",
        ])
        self.assertEqual(_cells(format_table(rows[:1] + rows[2:]).split("\n")[0]), self.HEADER)

    def test_progress_lines_name_a_transport_other_than_plain(self):
        rows = [_row(rate=1.0), _row(rate=2.0, transport="deflate"), _row(mode="mem", bytes_per_msg=3.0),
                _row(transport="tls", error="refused")]
        self.assertEqual([label(r) for r in rows], ["CPython /py/a pub x1", "CPython /py/a pub deflate x1",
                                                    "CPython /py/a mem x1", "CPython /py/a pub tls x1"])
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            for r in rows:
                report(r)
        self.assertEqual(err.getvalue().splitlines(), [
            "benchmarks: CPython /py/a pub x1: 1 msgs/s", "benchmarks: CPython /py/a pub deflate x1: 2 msgs/s",
            "benchmarks: CPython /py/a mem x1: 3 bytes per queued message",
            "benchmarks: CPython /py/a pub tls x1: FAILED: refused"])


class PercentileTests(unittest.TestCase):
    def test_nearest_rank(self):
        """The smallest value with at least pct% of the values at or below it."""
        ordered = list(range(1, 11))
        self.assertEqual([_percentile(ordered, p) for p in (10, 50, 51, 90, 99, 100)], [1, 5, 6, 9, 10, 10])
        self.assertEqual(_percentile(list(range(1, 201)), 99), 198)
        self.assertEqual(_percentile(list(range(1, 201)), 99.5), 199)

    def test_ends(self):
        self.assertEqual(_percentile([0.25, 0.5], 0), 0.25)
        self.assertEqual(_percentile([0.003], 99), 0.003)



class MachineSecondsTests(unittest.TestCase):
    def stat(self, first_line: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(first_line + "\ncpu0 1 1 1 1 1 1 1 1 0 0\n")
        return path

    def test_processes_interrupts_and_steal_apart(self):
        tick = float(os.sysconf("SC_CLK_TCK"))
        path = self.stat("cpu  100 20 30 4000 50 6 7 8 9 10")
        self.assertEqual(machine_seconds(path), (150 / tick, 13 / tick, 8 / tick))

    def test_kernel_without_steal(self):
        tick = float(os.sysconf("SC_CLK_TCK"))
        self.assertEqual(machine_seconds(self.stat("cpu 1 2 3 4 5 6 7")), (6 / tick, 13 / tick, 0.0))


class CPUMeterTests(unittest.TestCase):
    def test_shares_of_one_cpu(self):
        """Other processes are what processes ran besides the server, the bench and the children it
        reaped (nsqload)."""
        readings = iter([(10.0, 3.0, 0.5, 1000, 1.0, 7.0, 50.0, 5.0, 2.0),
                         (12.0, 4.0, 0.8, 1700, 1.2, 7.3, 52.0, 5.2, 2.1)])
        now = {}

        class Clock:
            @staticmethod
            def monotonic():
                now.update(zip(("wall", "server", "kernel", "faults", "bench", "client", "processes", "interrupts",
                                "steal"),
                               next(readings)))
                return now["wall"]

        class Server:
            @staticmethod
            def usage():
                return now["server"], now["kernel"], now["faults"]

        self.patch(meters, "time", Clock)
        self.patch(meters, "_own_seconds", lambda: (now["bench"], now["client"]))
        self.patch(meters, "machine_seconds", lambda: (now["processes"], now["interrupts"], now["steal"]))
        use = CPUMeter(Server).read()
        self.assertEqual(sorted(use), ["client", "faults", "interrupts", "other", "server", "server_kernel", "steal"])
        self.assertEqual(use["faults"], 700)
        for name, pct in [("server", 50.0), ("server_kernel", 15.0), ("client", 15.0), ("other", 25.0),
                          ("interrupts", 10.0), ("steal", 5.0)]:
            self.assertAlmostEqual(use[name], pct, msg=name)


_BURN = """
import os, time
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
times = os.times()
print(times.user + times.system)
"""


class OwnSecondsTests(unittest.TestCase):
    def test_a_reaped_child_is_the_client(self):
        """A child that burns 0.3 s of CPU and prints its own os.times() before it exits: once reaped,
        that much moves the second figure (nsqload's, in a load), and little of it the bench's."""
        bench, client = meters._own_seconds()
        used = float(subprocess.run([sys.executable, "-c", _BURN], stdout=subprocess.PIPE, text=True,
                                    check=True).stdout)
        bench_after, client_after = meters._own_seconds()
        self.assertGreaterEqual(client_after - client, used - 0.02)
        self.assertLess(client_after - client, used + 0.2)
        self.assertLess(bench_after - bench, 0.1)


_TOUCH_PAGES = """
import mmap, os, sys
print("ready", flush=True)
sys.stdin.readline()
pages = mmap.mmap(-1, 40000 * mmap.PAGESIZE)
for offset in range(0, len(pages), mmap.PAGESIZE):
    pages[offset] = 1
times = os.times()
print(times.user + times.system, times.system, flush=True)
sys.stdin.readline()
"""


class ServerUsageTests(unittest.TestCase):
    def test_cpu_kernel_time_and_page_faults_of_the_process(self):
        """Read from /proc/<pid>/stat of a child that touches 40 000 fresh pages (the kernel zeroes
        each: some clock ticks of kernel time) and then waits, having printed its own os.times(). A
        fresh child, not this process: the test runner's other threads and long history of CPU
        time could blur both the faults and the kernel's share."""
        child = subprocess.Popen([sys.executable, "-c", _TOUCH_PAGES], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        self.addCleanup(child.wait)
        self.addCleanup(child.stdin.close)
        self.addCleanup(child.stdout.close)
        server = Server(["/go/nsqd"], 7)
        self.addCleanup(shutil.rmtree, server.data_path)
        server.proc = child
        self.assertEqual(child.stdout.readline(), "ready\n")
        _, kernel, faults = server.usage()
        child.stdin.write("\n")
        child.stdin.flush()
        cpu, system = map(float, child.stdout.readline().split())
        cpu_after, kernel_after, faults_after = server.usage()
        self.assertGreaterEqual(faults_after - faults, 40000)
        self.assertLess(faults_after - faults, 80000)
        self.assertGreater(kernel_after - kernel, 0)
        # /proc counts clock ticks: a tick either way (trial's assertAlmostEqual ignores delta=)
        self.assertLessEqual(abs(cpu_after - cpu), 0.02, (cpu_after, cpu))
        self.assertLessEqual(abs(kernel_after - system), 0.02, (kernel_after, system))


_FAKE_NSQD = """
import http.server, json, sys
with open(%r, "w") as f:
    f.write("\\n".join(sys.argv[1:]))
STATS = {"topics": [{"topic_name": "other", "backend_depth": 1}, {"topic_name": "bench", "backend_depth": %d}]}

class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(json.dumps(STATS).encode() if self.path.startswith("/stats") else b"OK")

    def log_message(self, *args):
        pass

port = int([a for a in sys.argv if a.startswith("--http-address=")][0].rsplit(":", 1)[1])
http.server.HTTPServer(("127.0.0.1", port), Ping).serve_forever()
"""


class GoNsqdTests(unittest.TestCase):
    """What lets the bench run Go nsqd beside nsqtx: its name, its command line, its log."""

    def test_named_after_its_version(self):
        self.assertEqual(describe_nsqd(_script(self, "echo 'nsqd v1.3.0 (built w/go1.19.8)'")), "Go nsqd 1.3.0")

    def test_not_an_nsqd(self):
        for body in ("echo 'nsqlookupd v1.3.0 (built w/go1.19.8)'", "echo", "echo 'nsqd v1.3.0'; exit 1"):
            e = self.assertRaises(BenchError, describe_nsqd, _script(self, body))
            self.assertIn("not an nsqd", str(e))
        self.assertIn("cannot run --nsqd", str(self.assertRaises(BenchError, describe_nsqd, "/nonexistent/nsqd")))

    def _server(self, command) -> Server:
        server = Server(command, 7)
        self.addCleanup(server.close)
        return server

    def test_both_servers_get_nsqds_flags_after_their_command(self):
        for command in (["/go/nsqd"], nsqtx_command("/py/a")):
            server = self._server(command)
            self.assertEqual(server.argv(), command + [
                "--tcp-address=127.0.0.1:%d" % server.tcp_port, "--http-address=127.0.0.1:%d" % server.http_port,
                "--mem-queue-size=7", "--data-path=%s" % server.data_path, "--log-level=warn"])
        self.assertEqual(nsqtx_command("/py/a"), ["/py/a", "-m", "twisted", "--log-format=text", "nsqtx"])

    def test_a_tls_server_gets_the_certificate_and_its_key_last(self):
        server = Server(["/go/nsqd"], 7, _CERTIFICATES)
        self.addCleanup(server.close)
        self.assertEqual(server.argv()[-3:], ["--log-level=warn", "--tls-cert=/tmp/cert.pem", "--tls-key=/tmp/key.pem"])

    def _noted(self) -> str:
        fd, path = tempfile.mkstemp()
        os.close(fd)
        self.addCleanup(os.remove, path)
        return path

    def _pub(self, *argv, spilled=0, burn=0.0):
        """A pub run of a stand-in nsqd (answers /ping, notes its arguments, says in /stats that
        `spilled` messages went to disk) driven by a stand-in nsqload (notes each call's
        arguments, spends `burn` seconds of CPU); (the row, the nsqd's flags, the nsqload calls)."""
        flags, calls = self._noted(), self._noted()
        nsqd = _script(self, _FAKE_NSQD % (flags, spilled), sys.executable)
        spend = "%s -c 'import time\nend = time.process_time() + %r\nwhile time.process_time() < end: pass'\n" % (
            sys.executable, burn) if burn else ""
        nsqload = _script(self, spend + "echo \"$@\" >> %s\necho 'pub msgs=1000 secs=0.10 rate=10000.0'" % calls)
        args = parse_args(["--nsqd", nsqd, "--connections", "2", "--ping-interval", "0"] + list(argv))
        with contextlib.redirect_stderr(io.StringIO()):
            [row] = Bench(args, nsqload, nsqd, "Go nsqd 0", [nsqd]).run("pub")
        self.assertEqual((row["error"], row["server"], row["rate"]), (None, nsqd, 10000.0))
        with open(flags) as f, open(calls) as g:
            return row, f.read().split("\n"), [line.split()[-2:] for line in g.read().splitlines()]

    def test_a_run_starts_the_binary_with_nsqds_flags_and_measures_it(self):
        row, flags, calls = self._pub("--seconds", "0.2")
        self.assertEqual([flag.split("=")[0] for flag in flags],
                         ["--tcp-address", "--http-address", "--mem-queue-size", "--data-path", "--log-level"])
        self.assertEqual(calls, [["0.2", "2"]])
        self.assertEqual([note for note in row["notes"] if "warm-up" in note], [])

    def test_the_row_has_nsqloads_own_cpu_use(self):
        """A stand-in nsqload that spends 0.5 s of CPU in a run of about that long: most of a CPU,
        where the bench itself, waiting for it, uses next to nothing."""
        row, flags, calls = self._pub("--seconds", "0.2", burn=0.5)
        self.assertGreater(row["client_cpu_pct"], 25.0)

    def _row_reading(self, **use):
        """A pub run whose CPU meter reads `use`."""
        self.patch(scenarios, "CPUMeter", lambda server: type("Meter", (), {"read": lambda self: use})())
        return self._pub("--seconds", "0.2")[0]

    def test_each_cpu_reading_lands_in_its_own_row_field(self):
        """The noise figures are read from --json rows by name, so a reading filed under another's
        name would misattribute a run's noise."""
        row = self._row_reading(server=1.0, server_kernel=2.0, faults=3, client=4.0, other=5.0, interrupts=6.0,
                                steal=7.0)
        self.assertEqual({name: row[name] for name in (
            "server_cpu_pct", "server_kernel_cpu_pct", "server_page_faults", "client_cpu_pct", "other_cpu_pct",
            "interrupts_cpu_pct", "steal_cpu_pct")}, {
            "server_cpu_pct": 1.0, "server_kernel_cpu_pct": 2.0, "server_page_faults": 3, "client_cpu_pct": 4.0,
            "other_cpu_pct": 5.0, "interrupts_cpu_pct": 6.0, "steal_cpu_pct": 7.0})
        self.assertEqual([note for note in row["notes"] if "expect noise" in note], [])

    def test_other_processes_and_steal_together_past_15_pct_are_noted_as_noise(self):
        """Interrupts are left out: on loopback most of them are the load's own traffic."""
        row = self._row_reading(server=90.0, server_kernel=30.0, faults=0, client=30.0, other=10.0, interrupts=40.0,
                                steal=6.0)
        self.assertIn("other processes used 10% CPU and the hypervisor took 6% meanwhile: expect noise", row["notes"])

    def test_a_pub_warm_up_publishes_first_on_as_many_connections(self):
        row, flags, calls = self._pub("--seconds", "0.2", "--pub-warmup", "0.1")
        self.assertEqual(calls, [["0.1", "2"], ["0.2", "2"]])
        self.assertIn("1000 published and 0 /ping answered in a 0.1s warm-up before", row["notes"])

    def test_a_pub_run_pings_before_its_warm_up(self):
        row, flags, calls = self._pub("--seconds", "0.2", "--pub-warmup", "0.1", "--ping-warmup", "1")
        self.assertEqual(row["notes"][:2], ["1 /ping answered one after another before the load",
                                            "1000 published and 0 /ping answered in a 0.1s warm-up before"])

    def test_a_pub_run_that_spilled_to_disk_says_so(self):
        row, flags, calls = self._pub("--seconds", "0.2", spilled=1234)
        self.assertIn("1234 messages went to the disk queue (--mem-queue-size 10000000): the rate is partly "
                      "disk mode's", row["notes"])
        row, flags, calls = self._pub("--seconds", "0.2", "--mem-queue-size", "0", spilled=1234)
        self.assertEqual([note for note in row["notes"] if "disk" in note], [])

    def test_go_nsqds_warnings_and_errors_are_reported_but_not_nsqload_leaving(self):
        server = self._server(["/go/nsqd"])
        with open(server.log_path, "w") as f:
            f.write("[nsqd] 2026/11/23 02:49:00.123456 INFO: TCP: listening on 127.0.0.1:4150\n"
                    "[nsqd] 2026/11/23 02:49:01.000001 WARNING: PROTOCOL(V2): slow\n"
                    "[nsqd] 2026/11/23 02:49:02.000002 ERROR: failed to sync\n"
                    "[nsqd] 2026/11/23 02:49:03.000003 FATAL: listen failed\n"
                    "[nsqd] 2026/11/23 03:04:07.508914 ERROR: client(127.0.0.1:47294) - failed to read command - "
                    "read tcp 127.0.0.1:58403->127.0.0.1:47294: read: connection reset by peer\n"
                    "[nsqd] 2026/11/23 03:04:20.120049 ERROR: PROTOCOL(V2): [127.0.0.1:44924] messagePump error - "
                    "write tcp 127.0.0.1:37307->127.0.0.1:44924: write: broken pipe\n"
                    "[nsqd] 2026/12/07 04:07:59.655579 ERROR: PROTOCOL(V2): [127.0.0.1:43150] messagePump error - "
                    "write tcp 127.0.0.1:46101->127.0.0.1:43150: use of closed network connection\n")
        self.assertEqual([line.split(" ", 3)[3] for line in server.new_log_problems()],
                         ["WARNING: PROTOCOL(V2): slow", "ERROR: failed to sync", "FATAL: listen failed"])


_FAKE_GCC = """
out=
prev=
for a in "$@"; do
    [ "$prev" = "-o" ] && out=$a
    prev=$a
done
echo "$@" >> %s
if [ -n "$FAKE_GCC_ERROR" ]; then echo "$FAKE_GCC_ERROR"; exit 1; fi
echo built > "$out"
"""


class BuildTests(unittest.TestCase):
    """build_nsqload with a stand-in gcc on PATH that notes its arguments (and fails, when asked, with
    the given line) and a cache of the test's own."""

    def setUp(self):
        self.calls = os.path.abspath(self.mktemp())
        tools = os.path.abspath(self.mktemp())
        os.makedirs(tools)
        with open(os.path.join(tools, "gcc"), "w") as f:
            f.write("#!/bin/sh\n" + _FAKE_GCC % self.calls)
        os.chmod(os.path.join(tools, "gcc"), 0o755)
        self.cache = os.path.abspath(self.mktemp())
        self.src = os.path.abspath(self.mktemp())
        with open(self.src, "w") as f:
            f.write("int main(void) { return 0; }\n")
        self._setenv("PATH", tools + os.pathsep + os.environ.get("PATH", ""))
        self._setenv("XDG_CACHE_HOME", self.cache)

    def _setenv(self, name: str, value: str) -> None:
        """Set an environment variable (gcc's children see it too) until the test ends."""
        before = os.environ.get(name)
        os.environ[name] = value
        self.addCleanup(lambda: os.environ.__setitem__(name, before) if before is not None
                        else os.environ.pop(name, None))

    def _calls(self):
        with open(self.calls) as f:
            return [line.split() for line in f.read().splitlines()]

    def _binary(self, suffix=""):
        with open(self.src, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        return os.path.join(self.cache, "nsqtx", "nsqload-" + digest + suffix)

    def test_plain_only_as_before(self):
        binary = build_nsqload(self.src)
        self.assertEqual(binary, self._binary())
        [call] = self._calls()
        self.assertEqual(call[:3] + call[4:], ["-O2", "-pthread", "-o", self.src])

    def test_the_transports_linked_with_their_libraries_into_a_binary_of_their_own(self):
        binary = build_nsqload(self.src, transports=True)
        self.assertEqual(binary, self._binary("-transports"))
        [call] = self._calls()
        self.assertEqual(call[:3] + call[4:], ["-O2", "-pthread", "-o", "-DNSQLOAD_TRANSPORTS", self.src, "-lssl",
                                               "-lcrypto", "-lz", "-lsnappy"])
        # each is built once, and the plain one does not stand for it
        self.assertEqual(build_nsqload(self.src, transports=True), binary)
        self.assertEqual(build_nsqload(self.src), self._binary())
        self.assertEqual(len(self._calls()), 2)

    def test_another_source_is_built_anew_whatever_the_times_of_the_files(self):
        first = build_nsqload(self.src)
        with open(self.src, "w") as f:
            f.write("int main(void) { return 1; }\n")
        os.utime(self.src, (0, 0))
        second = build_nsqload(self.src)
        self.assertNotEqual(second, first)
        self.assertEqual(second, self._binary())
        self.assertEqual(len(self._calls()), 2)

    def test_a_missing_library_is_named(self):
        self._setenv("FAKE_GCC_ERROR", "nsqload.c:30:10: fatal error: snappy-c.h: No such file or directory")
        e = self.assertRaises(BenchError, build_nsqload, self.src, True)
        self.assertEqual(str(e), "building nsqload with gcc failed: nsqload.c:30:10: fatal error: snappy-c.h: No such "
                                 "file or directory (the transports other than plain need the headers and libraries "
                                 "of OpenSSL, zlib and snappy: on Debian, apt-get install libssl-dev zlib1g-dev "
                                 "libsnappy-dev)")
        self._setenv("FAKE_GCC_ERROR", "/usr/bin/ld: cannot find -lsnappy: No such file or directory")
        self.assertIn("apt-get install", str(self.assertRaises(BenchError, build_nsqload, self.src, True)))
        self._setenv("FAKE_GCC_ERROR", "nsqload.c:1:1: error: expected ';'")
        self.assertEqual(str(self.assertRaises(BenchError, build_nsqload, self.src, True)),
                         "building nsqload with gcc failed: nsqload.c:1:1: error: expected ';'")


class CertificatesTests(unittest.TestCase):
    def test_a_server_certificate_for_127_0_0_1_signed_by_the_ca(self):
        """A TLS handshake in memory: the server with "cert" and "key", the client trusting only "ca"
        and checking the name 127.0.0.1, as nsqload does with NSQLOAD_TLS_CA."""
        import ssl
        directory = self.mktemp()
        os.makedirs(directory)
        paths = make_certificates(directory)
        self.assertEqual(sorted(paths), ["ca", "cert", "key"])
        self.assertEqual({os.path.dirname(p) for p in paths.values()}, {directory})
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(paths["cert"], paths["key"])
        client_context = ssl.create_default_context(cafile=paths["ca"])
        pipes = [ssl.MemoryBIO() for _ in range(4)]
        client = client_context.wrap_bio(pipes[0], pipes[1], server_hostname="127.0.0.1")
        server = server_context.wrap_bio(pipes[2], pipes[3], server_side=True)
        done = set()
        for _ in range(10):
            for name, side, incoming, outgoing in (("client", client, pipes[0], pipes[3]),
                                                   ("server", server, pipes[2], pipes[1])):
                if name not in done:
                    try:
                        side.do_handshake()
                        done.add(name)
                    except ssl.SSLWantReadError:
                        pass
            pipes[2].write(pipes[1].read())
            pipes[0].write(pipes[3].read())
        self.assertEqual(done, {"client", "server"})
        self.assertEqual(dict(x[0] for x in client.getpeercert()["subject"]), {"commonName": "localhost"})


_CERTIFICATES = {"ca": "/tmp/ca.pem", "cert": "/tmp/cert.pem", "key": "/tmp/key.pem"}


class TransportBenchTests(unittest.TestCase):
    """What a Bench does with its transport, short of running a load."""

    def _bench(self, transport, *argv, certificates=_CERTIFICATES):
        args = parse_args(["--python", "/py/a", "--transport", "plain,tls,snappy"] + list(argv))
        return Bench(args, "nsqload", "/py/a", "CPython", ["/py/a"], transport, certificates)

    def test_nsqloads_arguments_and_environment(self):
        plain, tls, snappy = (self._bench(t) for t in ("plain", "tls", "snappy"))
        self.assertEqual((plain.transport_args, plain.load_env, plain.tls), ([], None, None))
        self.assertEqual((snappy.transport_args, snappy.load_env, snappy.tls), (["snappy"], None, None))
        self.assertEqual((tls.transport_args, tls.tls), (["tls"], _CERTIFICATES))
        self.assertEqual(tls.load_env, dict(os.environ, NSQLOAD_TLS_CA="/tmp/ca.pem"))

    def test_tls_without_certificates_is_a_mistake(self):
        self.assertRaises(ValueError, self._bench, "tls+deflate", certificates=None)
        self.assertEqual(self._bench("deflate", certificates=None).tls, None)

    def test_the_rows_transport(self):
        bench = self._bench("tls")
        self.assertEqual([bench.row(mode, 1, 100)["transport"] for mode in ("pub", "sub", "mem")], ["tls", "tls", None])

    def _servers(self, bench, mode):
        """The tls argument of the server a run of `mode` starts."""
        started = []

        class FakeServer:
            def __init__(self, command, mem_queue_size, tls=None):
                started.append(tls)

            def __enter__(self):
                return self

            def __exit__(self, *exc_info):
                pass

            def new_log_problems(self):
                return []

        self.patch(scenarios, "Server", FakeServer)
        row = bench._guarded(bench.row(mode, 1, 100), lambda server, row: None)
        self.assertIsNone(row["error"])
        return started

    def test_the_servers_of_a_tls_transport_get_the_certificate(self):
        self.assertEqual(self._servers(self._bench("tls"), "pub"), [_CERTIFICATES])
        self.assertEqual(self._servers(self._bench("tls"), "sub"), [_CERTIFICATES])
        self.assertEqual(self._servers(self._bench("snappy"), "pub"), [None])

    def test_mem_runs_once_a_server_over_plain_tcp(self):
        """In the bench of the first transport, with a server without TLS."""
        first = self._bench("tls", "--transport", "tls,plain")
        self.assertEqual(self._servers(first, "mem"), [None])
        self.assertEqual(self._bench("plain", "--transport", "tls,plain").run("mem"), [])

    def test_filling_a_backlog_goes_over_plain_tcp(self):
        calls = self.mktemp()
        fake = _script(self, 'echo "$# ${NSQLOAD_TLS_CA:--}" >> %s\necho "pub msgs=100 secs=0.05 rate=2000.0"' % calls)
        bench = Bench(parse_args(["--transport", "tls+deflate"]), fake, "/py/a", "CPython", ["/py/a"], "tls+deflate",
                      _CERTIFICATES)
        server = argparse.Namespace(tcp_port=4150, exit_note=lambda: "")
        self.assertEqual(bench.fill(server, 100).msgs, 100)
        with open(calls) as f:
            self.assertEqual(f.read(), "7 -\n")


_NOTED_NSQD = """
case "$1" in --version) echo 'nsqd v1.3.0 (built w/go1.19.8)'; exit 0;; esac
echo "$@" >> %s
exec %s %s "$@"
"""


class TransportMainTests(unittest.TestCase):
    """python -m benchmarks --transport, as a whole: a stand-in Go nsqd (answers /ping, notes its flags)
    and a stand-in nsqload (notes its arguments and whether NSQLOAD_TLS_CA names a file)."""

    def setUp(self):
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self.addCleanup(signal.signal, sig, signal.getsignal(sig))
        # absolute: the servers run in their data directories
        self.flags, self.calls = os.path.abspath(self.mktemp()), os.path.abspath(self.mktemp())
        fake_nsqd = _script(self, _FAKE_NSQD % (os.path.abspath(self.mktemp()), 0), sys.executable)
        self.nsqd = _script(self, _NOTED_NSQD % (self.flags, sys.executable, fake_nsqd))
        self.nsqload = _script(self, 'ca=-; [ -f "$NSQLOAD_TLS_CA" ] && ca=ca\necho "$* $ca" >> %s\n'
                                     'echo "pub msgs=1000 secs=0.10 rate=10000.0"' % self.calls)
        self.built = []

        def build(src, transports=False):
            self.built.append(transports)
            return self.nsqload

        self.patch(cli, "build_nsqload", build)
        # the --python runtime too is the stand-in: no real server here
        self.patch(cli, "nsqtx_command", lambda python: [self.nsqd])

    def _main(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(["--nsqd", self.nsqd, "--python", sys.executable, "--scenarios", "pub",
                               "--connections", "1", "--seconds", "0.1", "--ping-interval", "0"] + list(argv))
        with open(self.flags) as f, open(self.calls) as g:
            return status, out.getvalue(), f.read().splitlines(), g.read().splitlines()

    def test_each_transport_a_row_with_its_own_server_and_command_line(self):
        status, out, flags, calls = self._main("--transport", "plain,tls+snappy", "--json")
        self.assertEqual(status, 0)
        doc = json.loads(out)
        self.assertEqual(self.built, [True])
        self.assertEqual(doc["settings"]["transports"], ["plain", "tls+snappy"])
        self.assertEqual([(r["server"], r["transport"]) for r in doc["results"]],
                         [(sys.executable, "plain"), (sys.executable, "tls+snappy"), (self.nsqd, "plain"),
                          (self.nsqd, "tls+snappy")])
        self.assertEqual([r["transport"] for r in doc["runs"]], ["plain", "tls+snappy"] * 2)
        # nsqd's flags, and after them, for TLS only, the certificate and its key
        self.assertEqual([[flag.split("=")[0] for flag in line.split()] for line in flags], [
            ["--tcp-address", "--http-address", "--mem-queue-size", "--data-path", "--log-level"],
            ["--tcp-address", "--http-address", "--mem-queue-size", "--data-path", "--log-level", "--tls-cert",
             "--tls-key"]] * 2)
        cert, key = (flag.split("=", 1)[1] for flag in flags[1].split()[-2:])
        self.assertEqual((os.path.basename(cert), os.path.basename(key)), ("server.pem", "server_key.pem"))
        self.assertFalse(os.path.exists(os.path.dirname(cert)), "the certificates outlived the bench")
        self.assertEqual([call.split()[5:] for call in calls],
                         [["0.1", "1", "-"], ["0.1", "1", "tls+snappy", "ca"]] * 2)

    def test_plain_as_before(self):
        status, out, flags, calls = self._main()
        self.assertEqual((status, self.built), (0, [False]))
        self.assertEqual([len(line.split()) for line in flags], [5, 5])
        self.assertEqual([call.split()[5:] for call in calls], [["0.1", "1", "-"]] * 2)
        self.assertEqual(_cells(out.splitlines()[0]), FormatTableTests.HEADER)

    def test_the_table_shows_the_transport(self):
        status, out, flags, calls = self._main("--transport", "deflate")
        self.assertEqual((status, self.built), (0, [True]))
        header, *rows = out.splitlines()
        self.assertEqual(_cells(header)[:3], ["runtime", "mode", "transport"])
        self.assertEqual([_cells(line)[1:3] for line in rows], [["pub", "deflate"]] * 2)
