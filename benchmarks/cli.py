"""``python -m benchmarks``'s options, and the order in which it runs runtimes, scenarios and rounds."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile

from benchmarks.certificates import make_certificates
from benchmarks.errors import BenchError
from benchmarks.nsqload import build_nsqload
from benchmarks.processes import Interrupted, interrupt, stop_all
from benchmarks.report import (describe_nsqd, describe_runtime, format_table, label, median_rows, report,
                               source_version)
from benchmarks.scenarios import Bench
from benchmarks.server import nsqtx_command
from benchmarks.settings import REPO_ROOT, SUB_RDY, TRANSPORTS

DEFAULT_NSQLOAD_SRC = os.path.join(REPO_ROOT, "benchmarks", "nsqload.c")

SCENARIOS = ("pub", "sub", "mem")


def _int_list(text: str):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("not a comma-separated list of integers: %r" % text)
    if not values or any(not 1 <= v <= 256 for v in values):
        raise argparse.ArgumentTypeError("connection counts must be in [1,256]: %r" % text)
    return values


def _scenario_list(text: str):
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError("unknown scenario %s (choose from %s)" % (",".join(unknown) or "''",
                                                                                   ",".join(SCENARIOS)))
    return names


def _transport_list(text: str):
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in TRANSPORTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError("unknown transport %s (choose from %s)" % (",".join(unknown) or "''",
                                                                                    ",".join(TRANSPORTS)))
    twice = sorted(n for n in set(names) if names.count(n) > 1)
    if twice:
        raise argparse.ArgumentTypeError("transport %s listed twice" % ",".join(twice))
    return names


def _positive(kind):
    def convert(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive: %r" % text)
        return value
    return convert


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark nsqtx as a subprocess (python -m twisted nsqtx) with the C load generator "
                    "nsqload: publish rate, consume rate from a backlog, memory per queued message, and "
                    "/ping p99 latency under load; Go nsqd too, the same way, with --nsqd. Traffic goes to "
                    "127.0.0.1 only.",
        epilog="The module docstring (pydoc benchmarks) describes each scenario.")
    parser.add_argument("--python", action="append", metavar="PATH",
                        help="interpreter that runs the server; repeat to compare (default: %s)" % sys.executable)
    parser.add_argument("--nsqd", action="append", default=[], metavar="PATH",
                        help="a Go nsqd binary to measure the same way, in the same rounds (its rows listed after the "
                             "--python runtimes); repeatable")
    parser.add_argument("--scenarios", type=_scenario_list, default=list(SCENARIOS), metavar="LIST",
                        help="comma-separated, from pub,sub,mem (default: all)")
    parser.add_argument("--transport", dest="transports", type=_transport_list, default=["plain"], metavar="LIST",
                        help="comma-separated, from %s: how nsqload talks to the servers, each a row of its own in "
                             "the same rounds (tls: the servers get a throwaway certificate; default: plain)"
                             % ",".join(TRANSPORTS))
    parser.add_argument("--seconds", type=_positive(float), default=5.0,
                        help="duration of each pub and sub load (default: 5)")
    parser.add_argument("--pub-warmup", type=float, default=0.0, metavar="SECONDS",
                        help="publish this long before each measured pub run, on the same connections and "
                             "with /ping polled (default: 0)")
    parser.add_argument("--sub-warmup", type=float, default=0.0, metavar="SECONDS",
                        help="consume this long before each measured sub run, from the same backlog and "
                             "with /ping polled (PyPy's JIT compiles both paths meanwhile; default: 0)")
    parser.add_argument("--messages", type=_positive(int), default=500000,
                        help="backlog for sub and queued count for mem (default: 500000)")
    parser.add_argument("--connections", type=_int_list, default=[1, 2], metavar="LIST",
                        help="connection counts for pub and sub (default: 1,2)")
    parser.add_argument("--size", type=_positive(int), default=200, help="message size in bytes (default: 200)")
    parser.add_argument("--batch", type=_positive(int), default=200, help="messages per MPUB (default: 200)")
    parser.add_argument("--rdy", type=_positive(int), default=SUB_RDY,
                        help="RDY count of each sub connection (default: %d, nsqd's --max-rdy-count; "
                             "a client that handles one message at a time, as pynsq's default, sends 1)" % SUB_RDY)
    parser.add_argument("--mem-queue-size", type=int, default=None, metavar="N",
                        help="passed to the server (default: all in memory: max(10000000, 2 x the backlog), "
                             "and for pub runs 5000000 per second of warm-up and run); 0 puts every message "
                             "through the disk queue")
    parser.add_argument("--ping-interval", type=float, default=0.01, metavar="SECONDS",
                        help="how often a second client GETs /ping during pub and sub loads, for the "
                             "/ping p99 column; 0 for none (each /ping costs the server some CPU; "
                             "default: 0.01)")
    parser.add_argument("--ping-warmup", type=int, default=0, metavar="N",
                        help="GET /ping N times, one after another, before each pub and sub run's fill and "
                             "warm-up: a long-running server's health checks (PyPy's JIT compiles the /ping "
                             "path after about 1000; default: 0)")
    parser.add_argument("--nsqload-src", default=DEFAULT_NSQLOAD_SRC, metavar="PATH",
                        help="nsqload.c to build (default: %s)" % DEFAULT_NSQLOAD_SRC)
    parser.add_argument("--repeat", type=_positive(int), default=1, metavar="N",
                        help="run everything N times, alternating the order of runtimes and connection "
                             "counts, and report each figure's median (default: 1)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.mem_queue_size is not None and args.mem_queue_size < 0:
        parser.error("--mem-queue-size must not be negative")
    if args.rdy > SUB_RDY:
        parser.error("--rdy must be at most %d (nsqd's --max-rdy-count)" % SUB_RDY)
    for name in ("pub_warmup", "sub_warmup", "ping_interval", "ping_warmup"):
        if not getattr(args, name) >= 0:
            parser.error("--%s must not be negative" % name.replace("_", "-"))
    args.python = args.python or [sys.executable]
    #: every server measured, in order: what each row's "server" names
    args.servers = args.python + args.nsqd
    return args


def run_rounds(benches, args, runs: list) -> None:
    """Run every bench's scenarios --repeat times, adding each run to `runs` as it ends (with its
    round, by which report.median_rows pairs connection counts). Every other round runs backwards,
    so that no runtime or count is always first."""
    for round_number in range(args.repeat):
        backwards = round_number % 2 == 1
        for bench in benches[::-1] if backwards else benches:
            for scenario in args.scenarios:
                for row in bench.run(scenario, reverse=backwards):
                    row["round"] = round_number
                    runs.append(row)
                    report(row)


def rerun_stale(benches, args, runs: list) -> None:
    """A later round may have raised the sub backlog of a runtime over a transport: sub runs with a
    smaller one run again (in their round), so that every count's median comes from the same
    backlog; until none is left, as a run again may raise it once more, up to its limit."""
    by_key = {(bench.server, bench.transport): bench for bench in benches}
    stale = True
    while stale:
        stale = False
        for i, row in enumerate(runs):
            if row["mode"] != "sub" or row["error"]:
                continue
            bench = by_key[(row["server"], row["transport"])]
            if row["backlog"] < bench.sub_backlog:
                runs[i] = bench.sub_until_busy(row["connections"])
                runs[i]["round"] = row["round"]
                report(runs[i])
                stale = True


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    runs = []
    certificates_dir = None
    try:
        nsqload = build_nsqload(os.path.abspath(args.nsqload_src), transports=args.transports != ["plain"])
        certificates = None
        if any(t.startswith("tls") for t in args.transports):
            certificates_dir = tempfile.mkdtemp(prefix="nsqtx-bench-tls.")
            certificates = make_certificates(certificates_dir)
        servers = ([(python, describe_runtime(python), nsqtx_command(python)) for python in args.python]
                   + [(nsqd, describe_nsqd(nsqd), [nsqd]) for nsqd in args.nsqd])
        benches = [Bench(args, nsqload, server, runtime, command, transport, certificates)
                   for server, runtime, command in servers for transport in args.transports]
        run_rounds(benches, args, runs)
        rerun_stale(benches, args, runs)
    except BenchError as e:
        print("benchmarks: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmarks: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Interrupted as e:
        print("benchmarks: stopped by signal %d" % e.args[0], file=sys.stderr)
        return 128 + e.args[0]
    finally:
        stop_all()
        if certificates_dir:
            shutil.rmtree(certificates_dir, ignore_errors=True)
    rows = median_rows(runs, args) if args.repeat > 1 else runs
    if args.json:
        names = ("servers", "transports", "seconds", "pub_warmup", "sub_warmup", "messages", "connections", "size",
                 "batch", "rdy", "mem_queue_size", "scenarios", "repeat", "ping_interval", "ping_warmup")
        settings = {name: getattr(args, name) for name in names}
        settings.update(source=source_version(), cpus=os.cpu_count())
        json.dump({"settings": settings, "results": rows, "runs": runs}, sys.stdout, indent=2)
        print()
    else:
        print(format_table(rows))
        for r in runs:
            for line in r["server_log"][:5]:
                print("server log (%s): %s" % (label(r), line))
    return 1 if any(r["error"] for r in runs) else 0
