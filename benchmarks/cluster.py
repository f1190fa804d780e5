"""``python -m benchmarks.cluster``: one nsqtx node per core behind nsqtx-lookupd against one Go nsqd,
on this machine, as a user scales nsqtx past one thread.

Each round starts, in turn, nsqtx-lookupd with ``--nodes`` nsqtx nodes registered with it, and one Go
nsqd; each node (or, for Go, the one nsqd) gets one publisher and then one consumer, all running at
once: publishers warm up on one topic, publish another for ``--seconds``, fill topic ``t`` (channel
``c``) for ``--fill`` seconds, and the consumers, which find the nsqtx nodes through lookupd's
``/lookup?topic=t`` as a Reader configured with ``lookupd_http_addresses`` does, consume for
``--sub-seconds``. The figures are the publishers' and consumers' rates summed, and their medians
over the rounds. Memory mode only: every node's ``--mem-queue-size`` holds what it is given."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys

from benchmarks.cli import DEFAULT_NSQLOAD_SRC
from benchmarks.errors import BenchError, ScenarioError
from benchmarks.nsqload import Load, build_nsqload
from benchmarks.processes import stop_all
from benchmarks.server import Server, nsqtx_command

TOPIC = "t"
CHANNEL = "c"
MEM_QUEUE_SIZE = 100000000
#: nsqd's default --max-rdy-count
RDY = 2500


class LookupdServer(Server):
    """nsqtx-lookupd on free ports of 127.0.0.1 (its TCP port is `tcp_port`), started and stopped as
    a node is."""

    def argv(self) -> list:
        return self.command + ["--tcp-address=127.0.0.1:%d" % self.tcp_port,
                               "--http-address=127.0.0.1:%d" % self.http_port, "--log-level=warn"]

    def producer_ports(self, topic: str) -> list:
        status, body = self.request("GET", "/lookup?topic=%s" % topic)
        if status != 200:
            raise ScenarioError("lookupd answered /lookup?topic=%s with %d" % (topic, status))
        return producer_ports(body)


def producer_ports(body: bytes) -> list:
    """The TCP ports of the producers in a /lookup answer (nsqlookupd's JSON, either version)."""
    doc = json.loads(body)
    doc = doc.get("data", doc)
    return sorted(producer["tcp_port"] for producer in doc.get("producers", []))


def together(nsqload: str, loads, seconds: float) -> float:
    """Run nsqload once per (server, arguments) in `loads`, all at once, for `seconds`; their rates
    summed."""
    running = [(server, Load(nsqload, args, seconds)) for server, args in loads]
    return sum(load.wait(server).rate for server, load in running)


def publish(nsqload: str, targets, args) -> float:
    """The publish rate of one publisher per (server, tcp port) in `targets`, after a warm-up; then
    TOPIC/CHANNEL filled for the consumers (the topics of the warm-up and the measure deleted first,
    so that only the backlog stays in memory)."""
    def run(topic, seconds):
        return together(nsqload, [(server, ["pub", port, topic, args.size, args.batch, seconds, 1])
                                  for server, port in targets], seconds)

    run("w", args.warmup)
    rate = run("p", args.seconds)
    for server in {id(server): server for server, _ in targets}.values():
        for topic in ("w", "p"):
            server.request("POST", "/topic/delete?topic=%s" % topic)
        server.create_channel(TOPIC, CHANNEL)
    run(TOPIC, args.fill)
    return rate


def consume(nsqload: str, targets, args) -> float:
    """The consume rate of one consumer per (server, tcp port) in `targets`; a backlog emptied before
    the end would understate it, and fails the round."""
    rate = together(nsqload, [(server, ["sub", port, TOPIC, CHANNEL, args.sub_seconds, 1, RDY])
                              for server, port in targets], args.sub_seconds)
    for server, port in targets:
        if not server.channel_stats(TOPIC, CHANNEL).get("depth"):
            raise ScenarioError("the consumers emptied %s/%s on port %d before %gs: raise --fill"
                                % (TOPIC, CHANNEL, port, args.sub_seconds))
    return rate


def nsqtx_round(nsqload: str, args) -> tuple:
    with contextlib.ExitStack() as stack:
        lookupd = stack.enter_context(LookupdServer(nsqtx_command(args.python, "nsqtx-lookupd"), 0))
        node_command = nsqtx_command(args.python) + ["--lookupd-tcp-address=127.0.0.1:%d" % lookupd.tcp_port,
                                                     "--broadcast-address=127.0.0.1"]
        nodes = [stack.enter_context(Server(node_command, MEM_QUEUE_SIZE)) for _ in range(args.nodes)]
        pub = publish(nsqload, [(node, node.tcp_port) for node in nodes], args)
        found = lookupd.producer_ports(TOPIC)
        if found != sorted(node.tcp_port for node in nodes):
            raise ScenarioError("lookupd lists %s for topic %s, not the nodes' ports" % (found, TOPIC))
        by_port = {node.tcp_port: node for node in nodes}
        return pub, consume(nsqload, [(by_port[port], port) for port in found], args)


def go_round(nsqload: str, args) -> tuple:
    with Server([args.nsqd], MEM_QUEUE_SIZE) as nsqd:
        targets = [(nsqd, nsqd.tcp_port)] * args.nodes
        pub = publish(nsqload, targets, args)
        return pub, consume(nsqload, targets, args)


def summary(results: dict, nodes: int) -> str:
    """A markdown table of the medians of `results` ({"nsqtx": [(pub, sub), ...], "go": [...]})."""
    med = {kind: [statistics.median(rates) for rates in zip(*rounds)] for kind, rounds in results.items()}

    def fmt(v):
        return "{:,}".format(int(round(v))).replace(",", " ")

    lines = ["| | publish | consume |", "|---|---|---|",
             "| %d nsqtx nodes and nsqtx-lookupd | %s | %s |" % (nodes, fmt(med["nsqtx"][0]), fmt(med["nsqtx"][1])),
             "| one Go nsqd | %s | %s |" % (fmt(med["go"][0]), fmt(med["go"][1])),
             "| nsqtx / Go | %.2f | %.2f |" % (med["nsqtx"][0] / med["go"][0], med["nsqtx"][1] / med["go"][1])]
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the nsqtx processes "
                        "(default: this one)")
    parser.add_argument("--nsqd", required=True, metavar="PATH", help="the Go nsqd binary to compare with")
    parser.add_argument("--nodes", type=int, default=os.cpu_count() or 2,
                        help="nsqtx nodes, and connections of each kind on Go's (default: one per core)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured publishing (default: 4)")
    parser.add_argument("--warmup", type=float, default=6.0, help="publishing before it (default: 6)")
    parser.add_argument("--fill", type=float, default=6.0, help="publishing the consumers' backlog (default: 6)")
    parser.add_argument("--sub-seconds", type=float, default=1.5, help="measured consuming (default: 1.5)")
    parser.add_argument("--size", type=int, default=200, help="message size in bytes (default: 200)")
    parser.add_argument("--batch", type=int, default=200, help="messages per MPUB (default: 200)")
    parser.add_argument("--nsqload-src", default=DEFAULT_NSQLOAD_SRC, metavar="PATH")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    results = {"nsqtx": [], "go": []}
    try:
        nsqload = build_nsqload(os.path.abspath(args.nsqload_src))
        for number in range(args.rounds):
            for kind, run in (("nsqtx", nsqtx_round), ("go", go_round)):
                pub, sub = run(nsqload, args)
                results[kind].append((pub, sub))
                print("round %d %s: publish %.0f consume %.0f msgs/s" % (number + 1, kind, pub, sub),
                      file=sys.stderr, flush=True)
    except (BenchError, ScenarioError) as e:
        print("benchmarks.cluster: %s" % e, file=sys.stderr)
        return 2
    finally:
        stop_all()
    print(summary(results, args.nodes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
