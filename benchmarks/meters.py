"""What the bench watches while nsqload runs, besides nsqload's own figures: the server's CPU use
(and the machine's, which makes the figures noisy), when a backlog runs out, and /ping latency."""
from __future__ import annotations

import http.client
import math
import os
import resource
import threading
import time

from benchmarks.server import Server
from benchmarks.settings import CHANNEL, PING_TIMEOUT, TOPIC

DRAIN_POLL = 0.1


# -- CPU use during a load

def machine_seconds(path: str = "/proc/stat") -> tuple:
    """CPU time of the whole machine (all CPUs) since boot, in seconds: (run by processes, spent on
    interrupts, stolen by the hypervisor for other machines).

    Interrupt time is kept apart because Linux charges it to no process: much of it here is the
    load's own loopback traffic (softirq), 10-15% of a CPU under a publish load, which is not
    noise from elsewhere. Steal is: the hypervisor ran another machine on our CPU."""
    with open(path) as f:
        fields = [int(v) for v in f.readline().split()[1:]] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system) / tick, (irq + softirq) / tick, steal / tick


def _own_seconds() -> tuple:
    """CPU time of (the bench, its reaped children): nsqload counts once its run ends and it is reaped,
    while the server, reaped after its rows, never does."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


class CPUMeter:
    """The server's CPU use during a load, and the machine's besides the server, nsqload and the
    bench: on a shared machine it makes the figures noisy, so the results say so."""

    def __init__(self, server: Server):
        self.server = server
        self.start = self._now()

    def _now(self) -> tuple:
        return (time.monotonic(),) + self.server.usage() + _own_seconds() + machine_seconds()

    def read(self) -> dict:
        """% of one CPU since construction: "server" (of which "server_kernel"), "client" (the
        children reaped meanwhile: the load's nsqload), "other" (other processes), "interrupts" and
        "steal" (see machine_seconds); and the server's minor page "faults" (a count). On 2 cores,
        the client's share bounds what any server could gain from a second connection."""
        wall, server, kernel, faults, bench, client, processes, interrupts, steal = (
            a - b for a, b in zip(self._now(), self.start))
        return {"server": 100.0 * server / wall, "server_kernel": 100.0 * kernel / wall, "faults": faults,
                "client": 100.0 * client / wall,
                "other": 100.0 * max(0.0, processes - server - bench - client) / wall,
                "interrupts": 100.0 * interrupts / wall, "steal": 100.0 * steal / wall}


# -- when a backlog runs out

class DrainWatcher(threading.Thread):
    """Polls the channel's depth in /stats every DRAIN_POLL, for the length of a with block, and
    notes when it first reads 0."""

    def __init__(self, server: Server):
        threading.Thread.__init__(self, name="drain-watcher", daemon=True)
        self.server = server
        self.start_time = time.monotonic()
        #: seconds from the start until the depth read 0, or None
        self.drained_after = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(DRAIN_POLL):
            if self.server.channel_stats(TOPIC, CHANNEL).get("depth") == 0:
                self.drained_after = time.monotonic() - self.start_time
                return

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self._halt.set()
        self.join(PING_TIMEOUT + 1)


# -- /ping latency under load

def ping_once(port: int) -> tuple:
    """GET /ping on a new connection, as a health checker does: (answered 200, what failed
    otherwise, seconds taken)."""
    start = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PING_TIMEOUT)
        try:
            conn.request("GET", "/ping")
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
            failure = "HTTP %d" % response.status
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as e:
        ok, failure = False, "%s: %s" % (type(e).__name__, e)
    return ok, failure, time.perf_counter() - start


def ping_burst(port: int, count: int) -> dict:
    """`count` /pings one after another, before a load: the health checks a long-running server
    has answered. PyPy's JIT compiles the /ping path after about a thousand (3-4 ms of server CPU
    each before, 0.4-0.6 ms after); polled only from a load's warm-up on, a fresh PyPy server was
    still compiling it in the measured run, which cost a consume run a quarter to a half of its rate."""
    errors, first_error = 0, ""
    for _ in range(count):
        ok, failure, _took = ping_once(port)
        if not ok:
            errors += 1
            first_error = first_error or failure
    return {"count": count - errors, "errors": errors, "first_error": first_error}


class PingPoller(threading.Thread):
    """GET /ping every `interval` seconds on a new connection, recording latencies and failures."""

    def __init__(self, port: int, interval: float):
        threading.Thread.__init__(self, name="ping-poller", daemon=True)
        self.port = port
        self.interval = interval
        self.latencies = []
        self.errors = 0
        self.first_error = ""
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            ok, failure, took = ping_once(self.port)
            if ok:
                self.latencies.append(took)
            else:
                self.errors += 1
                self.first_error = self.first_error or failure
            self._halt.wait(max(0.0, self.interval - took))

    def finish(self) -> dict:
        self._halt.set()
        self.join(PING_TIMEOUT + 1)
        lat = sorted(self.latencies)
        summary = {"count": len(lat), "errors": self.errors}
        if lat:
            summary.update(p50_ms=_percentile(lat, 50) * 1e3, p99_ms=_percentile(lat, 99) * 1e3,
                           max_ms=lat[-1] * 1e3)
        if self.errors:
            summary["first_error"] = self.first_error
        return summary


def _percentile(ordered, pct: float) -> float:
    return ordered[max(0, math.ceil(pct / 100.0 * len(ordered)) - 1)]
