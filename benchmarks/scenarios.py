"""The pub, sub and mem scenarios of one runtime, each on a fresh server: a scenario that fails
becomes its row's error, and the bench goes on."""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time

from benchmarks.errors import ScenarioError
from benchmarks.meters import CPUMeter, DrainWatcher, PingPoller, ping_burst
from benchmarks.nsqload import Load, LoadResult
from benchmarks.report import label
from benchmarks.server import Server
from benchmarks.settings import CHANNEL, TOPIC

#: publishes per second above any measured here, Go nsqd's included (1.4M)
PUB_RATE_BOUND = 5000000
#: CPU used by unrelated processes and stolen by the hypervisor during a load (% of one CPU) above
#: which a row says so
OTHER_CPU_NOTE = 15.0


def next_backlog(backlog: int, filled: int, warmup_msgs: int, lasted: float, seconds: float,
                 limit: int, warmup: float = 0.0, warmup_lasted=None) -> int:
    """The backlog for a sub run again after consumers emptied `filled` messages, `warmup_msgs` of
    them in the warm-up and the rest in the first `lasted` of the measured `seconds`: enough for the
    warm-up and 1.25 x the measured run at that pace, at least twice `backlog`, at most `limit`,
    rounded up to 100 000.

    If the warm-up itself emptied it, after `warmup_lasted` of its `warmup` seconds, the measured
    run's pace is that of a few leftover messages, so the warm-up's stands for both: twice what the
    warm-up and the run take at that pace, as a fresh PyPy server's first seconds of consuming
    (compiling) are slower than the rest. (Doubling the backlog instead took three fresh servers to
    get from 3M to 24M with a 5 s warm-up, about 30 s of filling each; 1.25 x that pace took two.)"""
    if warmup_lasted is not None:
        wanted = 2 * warmup_msgs * (warmup + seconds) / warmup_lasted
    else:
        wanted = warmup_msgs + 1.25 * (filled - warmup_msgs) * seconds / lasted
    return min(limit, -(-int(max(2 * backlog, wanted)) // 100000) * 100000)


class Bench:
    """One server (a --python runtime or an --nsqd binary) over one --transport: its pub and sub runs
    go through that transport, its servers get the `certificates` for it (TLS; the "ca", "cert" and
    "key" of :func:`benchmarks.certificates.make_certificates`). Its mem scenario fills over plain TCP
    whatever the transport, so only the bench of the first transport runs it."""

    def __init__(self, args, nsqload: str, server: str, runtime: str, command: list, transport: str = "plain",
                 certificates=None):
        self.args = args
        self.nsqload = nsqload
        #: what --python or --nsqd named: with the transport, the key of this bench's rows
        self.server = server
        self.runtime = runtime
        self.command = command
        self.transport = transport
        uses_tls = transport.startswith("tls")
        if uses_tls and not certificates:
            raise ValueError("transport %s needs certificates" % transport)
        #: the server's --tls-cert and --tls-key for this transport, or None
        self.tls = certificates if uses_tls else None
        #: what nsqload's command lines end with, and the environment it runs in (None: the bench's)
        self.transport_args = [] if transport == "plain" else [transport]
        self.load_env = dict(os.environ, NSQLOAD_TLS_CA=certificates["ca"]) if uses_tls else None
        #: the sub scenario's backlog: --messages, raised while consumers empty it before the time is up
        self.sub_backlog = args.messages

    def mem_queue_size(self, mode: str, backlog: int) -> int:
        """--mem-queue-size, or by default one that keeps a run in memory: a pub run's is sized for
        PUB_RATE_BOUND over its warm-up and run."""
        a = self.args
        if a.mem_queue_size is not None:
            return a.mem_queue_size
        if mode == "pub":
            return max(10000000, PUB_RATE_BOUND * int(math.ceil(a.pub_warmup + a.seconds)))
        return max(10000000, 2 * backlog)

    def row(self, mode: str, conns: int, backlog=None) -> dict:
        return {"runtime": self.runtime, "server": self.server, "mode": mode,
                "transport": None if mode == "mem" else self.transport, "connections": conns,
                "mem_queue_size": self.mem_queue_size(mode, backlog or self.args.messages), "backlog": backlog,
                "round": None, "rate": None, "msgs": None, "secs": None,
                "bytes_per_msg": None, "ping": None, "server_cpu_pct": None, "notes": [], "error": None,
                "server_log": []}

    def run(self, scenario: str, reverse: bool = False):
        """One run of `scenario` for each connection count (in reverse order if `reverse`)."""
        messages = self.args.messages
        if scenario == "mem":
            if self.transport != self.args.transports[0]:
                return []
            return [self._guarded(self.row("mem", 1, messages), self.mem)]
        counts = self.args.connections[::-1] if reverse else self.args.connections
        if scenario == "pub":
            return [self._guarded(self.row("pub", conns), self.pub) for conns in counts]
        rows = {conns: self.sub_until_busy(conns) for conns in counts}
        # every count consumes the same backlog: a bigger heap makes consuming slower on PyPy, so a
        # count run before another one raised it is run again
        for conns in counts:
            if rows[conns]["backlog"] < self.sub_backlog and not rows[conns]["error"]:
                rows[conns] = self.sub_until_busy(conns)
        return [rows[conns] for conns in counts]

    def sub_until_busy(self, conns: int) -> dict:
        """The sub scenario, repeated on a fresh server with a bigger backlog while the consumers
        emptied it before the end of the run (which makes the rate a lower bound): big enough to last
        1.25 x --seconds at the pace it ran out, at most 8 x --messages. The backlog reached is kept
        for this runtime's later runs."""
        a = self.args
        limit = 8 * a.messages
        for _ in range(4):
            backlog = self.sub_backlog
            row = self._guarded(self.row("sub", conns, backlog), self.sub)
            if row["error"] or not row.get("drained") or backlog >= limit:
                break
            lasted = row.get("drained_after") or a.seconds / 2
            self.sub_backlog = next_backlog(backlog, row["filled"], row["warmup_msgs"], lasted, a.seconds, limit,
                                            a.sub_warmup, row.get("warmup_drained_after"))
            print("benchmarks: %s: %d messages ran out after %.1fs; again with %d"
                  % (label(row), row["filled"], lasted, self.sub_backlog), file=sys.stderr)
        if row["backlog"] > a.messages:
            row["notes"].append("backlog raised to %d: %d ran out before %gs" % (row["backlog"], a.messages, a.seconds))
        return row

    def _guarded(self, row: dict, method) -> dict:
        try:
            with Server(self.command, row["mem_queue_size"], self.tls if row["transport"] else None) as server:
                try:
                    method(server, row)
                finally:
                    row["server_log"] = server.new_log_problems()
        except ScenarioError as e:
            row["error"] = str(e)
        except OSError as e:  # e.g. /proc/<pid> gone: the server died between two checks
            row["error"] = "%s: %s" % (type(e).__name__, e)
        return row

    def _load(self, server: Server, row: dict, mode_args, seconds: float, watch_drain: bool = False) -> LoadResult:
        """Run nsqload with /ping polled alongside; fill `row` with the rate, latency and CPU use
        (and, if `watch_drain`, "drained_after": when the channel's depth first read 0, or None)."""
        cpu = CPUMeter(server)
        load = Load(self.nsqload, mode_args, seconds, self.load_env)
        poller = self._poller(server)
        watcher = DrainWatcher(server) if watch_drain else None
        with watcher or contextlib.nullcontext():
            try:
                result = load.wait(server)
            finally:
                row["ping"] = _finish(poller)
        if watcher is not None:
            row["drained_after"] = watcher.drained_after
        if server.alive():
            use = cpu.read()
            row.update(server_cpu_pct=use["server"], server_kernel_cpu_pct=use["server_kernel"],
                       server_page_faults=use["faults"], client_cpu_pct=use["client"], other_cpu_pct=use["other"],
                       interrupts_cpu_pct=use["interrupts"], steal_cpu_pct=use["steal"])
            if use["other"] + use["steal"] > OTHER_CPU_NOTE:
                row["notes"].append("other processes used %.0f%% CPU and the hypervisor took %.0f%% meanwhile: "
                                    "expect noise" % (use["other"], use["steal"]))
        row.update(msgs=result.msgs, secs=result.secs, rate=result.rate)
        if row["ping"]["errors"]:
            row["notes"].append("%d /ping failures (%s)" % (row["ping"]["errors"], row["ping"]["first_error"]))
        if not server.alive():
            raise ScenarioError("the server died under load%s" % server.exit_note())
        return result

    def _poller(self, server: Server):
        """A PingPoller started on `server`, or None with --ping-interval 0. Called after nsqload is
        spawned: threads start after the spawn, so that none runs while the child is forked."""
        if self.args.ping_interval <= 0:
            return None
        poller = PingPoller(server.http_port, self.args.ping_interval)
        poller.start()
        return poller

    def warm_up(self, server: Server, mode_args, seconds: float):
        """Run nsqload unmeasured, with /ping polled as in the measured run; returns how many messages
        it moved and the poller's summary. A fresh PyPy server compiles its /ping path under load
        as it does its consume path: first polled in the measured run, a /ping every 10 ms took
        20-30% of a warm consume rate; after a 6 s warm-up polled as well, 5% and 18% in two
        rounds."""
        load = Load(self.nsqload, mode_args, seconds, self.load_env)
        poller = self._poller(server)
        try:
            msgs = load.wait(server).msgs
        finally:
            ping = _finish(poller)
        return msgs, ping

    def fill(self, server: Server, count: int) -> LoadResult:
        """Publish about `count` messages. nsqload runs for a time, so this runs it in steps aimed at
        most of what is left at the best rate seen so far, each at most twice the last: rates climb
        (PyPy's JIT warming up) and jump between steps (garbage collection pauses), and a step sized on
        a slow one would overshoot by far. Over plain TCP whatever the transport: filling is not
        measured."""
        a = self.args
        total, secs, step, best = 0, 0.0, 0.05, 0.0
        for _ in range(1000):
            if total >= count:
                break
            load = Load(self.nsqload, ["pub", server.tcp_port, TOPIC, a.size, a.batch, "%.3f" % step, 1], step)
            try:
                result = load.wait(server)
            except ScenarioError as e:
                raise ScenarioError("filling %d messages stopped after %d: %s" % (count, total, e))
            total += result.msgs
            secs += result.secs
            if result.msgs == 0:
                raise ScenarioError("filling %d messages stalled after %d (no MPUB answered in %.1fs)"
                                    % (count, total, step))
            best = max(best, result.rate)
            step = min(2 * step, 30.0, max(0.02, 0.8 * (count - total) / best))
        return LoadResult(total, secs)

    def check_queued(self, server: Server, row: dict, accepted: int) -> None:
        """Compare what /stats says the channel holds with what the server accepted (said OK to)."""
        channel = server.channel_stats(TOPIC, CHANNEL)
        if not channel:
            row["notes"].append("no stats for %s/%s from /stats" % (TOPIC, CHANNEL))
            return
        queued = channel.get("depth", 0)
        row["stats_depth"] = queued
        if queued != accepted:
            row["notes"].append("/stats says depth %d (backend %d) after %d messages accepted"
                                % (queued, channel.get("backend_depth", 0), accepted))

    def _warm(self, server: Server, row: dict, load_args, seconds: float, what: str) -> int:
        """:meth:`warm_up` for `seconds` with `load_args(seconds)` if `seconds` > 0, noted in `row` (a
        figure after a warm-up is a long-running server's, not a fresh one's); returns how many
        messages it moved."""
        if seconds <= 0:
            return 0
        msgs, ping = self.warm_up(server, load_args(seconds), seconds)
        row["notes"].append("%d %s and %d /ping answered in a %gs warm-up before"
                            % (msgs, what, ping["count"], seconds))
        if ping["errors"]:
            row["notes"].append("%d /ping failures in the warm-up (%s)" % (ping["errors"], ping["first_error"]))
        return msgs

    def _sub_warm_up(self, server: Server, row: dict, consume) -> None:
        """:meth:`_warm` for --sub-warmup, noting in `row` how many messages it consumed and when,
        if at all, the backlog ran out in it (see next_backlog)."""
        with DrainWatcher(server) as watcher:
            row["warmup_msgs"] = self._warm(server, row, consume, self.args.sub_warmup, "consumed")
        row["warmup_drained_after"] = watcher.drained_after

    def _ping_warm_up(self, server: Server, row: dict) -> None:
        """--ping-warmup /pings one after another, noted in `row`."""
        count = self.args.ping_warmup
        if count <= 0:
            return
        ping = ping_burst(server.http_port, count)
        row["notes"].append("%d /ping answered one after another before the load" % ping["count"])
        if ping["errors"]:
            row["notes"].append("%d /ping failures before the load (%s)" % (ping["errors"], ping["first_error"]))

    def pub(self, server: Server, row: dict) -> None:
        a = self.args
        self._ping_warm_up(server, row)

        def publish(secs: float):
            return ["pub", server.tcp_port, TOPIC, a.size, a.batch, secs, row["connections"]] + self.transport_args

        self._warm(server, row, publish, a.pub_warmup, "published")
        self._load(server, row, publish(a.seconds), a.seconds)
        spilled = server.topic_stats(TOPIC).get("backend_depth", 0)
        if spilled and row["mem_queue_size"]:
            row["notes"].append("%d messages went to the disk queue (--mem-queue-size %d): the rate is partly "
                                "disk mode's" % (spilled, row["mem_queue_size"]))

    def sub(self, server: Server, row: dict) -> None:
        seconds = self.args.seconds
        self._ping_warm_up(server, row)
        server.create_channel(TOPIC, CHANNEL)
        backlog = self.fill(server, row["backlog"])
        row["filled"] = backlog.msgs
        row["fill_rate"] = backlog.rate
        self.check_queued(server, row, backlog.msgs)

        def consume(secs: float):
            return (["sub", server.tcp_port, TOPIC, CHANNEL, secs, row["connections"], self.args.rdy]
                    + self.transport_args)

        self._sub_warm_up(server, row, consume)
        result = self._load(server, row, consume(seconds), seconds, watch_drain=True)
        # running out in the last 5% of the run hardly lowers the rate
        lasted = row["drained_after"]
        row["drained"] = (row["warmup_msgs"] + result.msgs >= backlog.msgs
                          or (lasted is not None and lasted < 0.95 * seconds))
        after = server.channel_stats(TOPIC, CHANNEL)
        row["after_sub"] = {k: after.get(k) for k in ("depth", "in_flight_count", "requeue_count", "timeout_count")}
        if row["drained"]:
            row["notes"].append("backlog of %d ran out before %gs: the rate is a lower bound (raise --messages)"
                                % (backlog.msgs, seconds))

    def mem(self, server: Server, row: dict) -> None:
        a = self.args
        server.create_channel(TOPIC, CHANNEL)
        time.sleep(0.5)
        before = server.rss()
        queued = self.fill(server, row["backlog"])
        time.sleep(1.0)
        if not server.alive():
            raise ScenarioError("the server died while filling%s" % server.exit_note())
        after, peak = server.rss(), server.peak_rss()
        self.check_queued(server, row, queued.msgs)
        row.update(msgs=queued.msgs, secs=queued.secs, fill_rate=queued.rate, rss_before=before, rss_after=after,
                   rss_peak=peak, bytes_per_msg=(after - before) / queued.msgs)
        row["notes"].append("%d msgs of %d B queued; RSS %.0f -> %.0f MiB (peak %.0f)"
                            % (queued.msgs, a.size, before / 2**20, after / 2**20, peak / 2**20))


def _finish(poller) -> dict:
    """The poller's summary once stopped (no poller: nothing polled)."""
    return poller.finish() if poller is not None else {"count": 0, "errors": 0}
