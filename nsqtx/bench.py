"""Benchmark an nsqtx server the way a user runs it: ``python -m nsqtx.bench``.

A tool, not a test: nothing in the test suite runs it, and nothing in CI times anything.

For each scenario it starts a fresh server as a subprocess,
``<python> -m twisted nsqtx --tcp-address=127.0.0.1:<free> --http-address=127.0.0.1:<free>
--mem-queue-size=<n> --data-path=<tmp dir> --log-level=warn``, waits for ``/ping``, drives it with
the neutral C load generator ``nsqload`` (built from ``../shared/bench/nsqload.c`` next to the
repository, or ``--nsqload-src``, with ``gcc -O2 -pthread`` into ``~/.cache/nsqtx/``) and stops it.
All traffic goes to 127.0.0.1.

Scenarios (``--scenarios``, default ``pub,sub,mem``):

``pub``
    MPUB batches of ``--batch`` messages of ``--size`` bytes for ``--seconds``, with each count of
    ``--connections`` (default 1 then 2) on a topic without channels (the topic holds what it gets).
``sub``
    Fill a channel made beforehand (``POST /topic/create``, ``/channel/create``) with ``--messages``
    messages, then consume it with RDY 2500 and FIN for ``--seconds``, for each count of
    ``--connections``. A backlog the consumers empty before the time is up (seen in ``/stats``)
    would make the rate a lower bound, so the run is then repeated on a fresh server with a backlog
    sized to last (up to 8 x ``--messages``); the row says so. All connection counts of a runtime
    consume the same backlog (on PyPy a bigger one is slower to consume): a count measured before
    another raised it runs again, also across ``--repeat`` rounds.
``mem``
    The server's RSS (``VmRSS``) before and after queueing ``--messages`` messages in one channel;
    reports (after - before) / messages, in bytes per queued message.

While ``pub`` and ``sub`` load runs, a thread polls ``GET /ping`` every 10 ms (a new connection
each time, as a health checker would); the table shows its 99th percentile latency, the server's
CPU use (% of one CPU) and, in the notes, CPU taken meanwhile by unrelated processes, which makes
the figures noisy. The server's own warnings and errors are printed after the table. ``--json``
gives every figure (also /ping p50 and max, RSS, fill rates) for machines.

Examples::

    python -m nsqtx.bench
    python -m nsqtx.bench --python /tmp/pvenv/bin/python --scenarios pub --seconds 10
    python -m nsqtx.bench --python /tmp/venv/bin/python --python /tmp/pvenv/bin/python --json
    python -m nsqtx.bench --mem-queue-size=0 --scenarios pub
    python -m nsqtx.bench --python /tmp/venv/bin/python --python /tmp/pvenv/bin/python --repeat 3

The machine this runs on is usually shared, and single runs vary by tens of percent: ``--repeat N``
runs everything N times, alternating the order of runtimes and connection counts, and reports for
each figure the run with the median (its notes list every run's figure; ``--json`` has every run).

``--python`` picks the server's interpreter (repeat it to compare runtimes); the server imports
nsqtx from this source tree (``PYTHONPATH`` is set to the repository root) and inherits the
environment, so e.g. ``PYPY_GC_NURSERY=64MB python -m nsqtx.bench ...`` measures that PyPy setting. ``--mem-queue-size``
is passed through to the server (default: large enough to keep the whole run in memory; 0 sends
every message through the disk queue in the temporary data directory). A publish the server
refuses (``E_MPUB_FAILED``, e.g. a disk that is full) is reported as the scenario's error instead
of a rate. The exit status is 1 when any scenario failed, 2 when the
bench could not start at all (no gcc, no nsqload.c).
"""
from __future__ import annotations

import argparse
import ctypes
import http.client
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_NSQLOAD_SRC = os.path.join(os.path.dirname(REPO_ROOT), "shared", "bench", "nsqload.c")

SCENARIOS = ("pub", "sub", "mem")
TOPIC = "bench"
CHANNEL = "bench"
#: nsqd's default --max-rdy-count, and what the sub scenario asks for
SUB_RDY = 2500
PING_INTERVAL = 0.010
DRAIN_POLL = 0.1
PING_TIMEOUT = 5.0
#: how long a server may take to answer /ping after start (PyPy's start-up is the slow one)
START_TIMEOUT = 60.0
#: how long a server may take to exit after SIGTERM before it is killed
STOP_TIMEOUT = 10.0
#: nsqload runs for its SECONDS argument; allowed on top before it is presumed stuck on a stalled server
LOAD_GRACE = 30.0
#: CPU used by unrelated processes during a load (% of one CPU) above which a row says so
OTHER_CPU_NOTE = 15.0

_RESULT_LINE = re.compile(r"^(pub|sub) msgs=(\d+) secs=([0-9.]+) rate=([0-9.]+)$", re.M)
_PROBLEM = re.compile(r"#(warn|error|critical)\]|Traceback|Unhandled")


class BenchError(Exception):
    """Stops the bench with one line (nothing to build or run with)."""


class ScenarioError(Exception):
    """One scenario failed; its row reports this message and the bench goes on."""


# -- child processes: own process group, die with the bench, always reaped

_children = set()
_libc = None


def _die_with_parent() -> None:
    # Runs in the child before exec: if the bench is killed outright (SIGKILL), the kernel sends
    # the child SIGTERM, so neither the server nor nsqload outlives it.
    if _libc is not None:
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(args, **kwargs) -> subprocess.Popen:
    """Start a child in its own process group (Ctrl-C reaches only the bench, which then stops it)."""
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(None)
        except OSError:
            pass
    proc = subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with_parent, **kwargs)
    _children.add(proc)
    return proc


def stop(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it is still there after `timeout`."""
    try:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout)
    finally:
        _children.discard(proc)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all() -> None:
    for proc in list(_children):
        stop(proc)


class Interrupted(BaseException):
    """SIGTERM or SIGHUP, handled like Ctrl-C: the bench stops its children and exits."""


def _interrupt(signum, frame):
    raise Interrupted(signum)


# -- nsqload

def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nsqtx")


def build_nsqload(src: str) -> str:
    """Return the path of an nsqload binary built from `src`, (re)building it when `src` is newer."""
    if not os.path.isfile(src):
        raise BenchError("nsqload source not found at %s (give it with --nsqload-src)" % src)
    directory = cache_dir()
    binary = os.path.join(directory, "nsqload")
    if os.path.isfile(binary) and os.path.getmtime(binary) >= os.path.getmtime(src):
        return binary
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BenchError("gcc not found on PATH; it is needed to build nsqload from %s" % src)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="nsqload.", dir=directory)
    os.close(fd)
    try:
        result = subprocess.run([gcc, "-O2", "-pthread", "-o", tmp, src], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
        if result.returncode != 0:
            lines = result.stdout.strip().splitlines() or ["exit status %d" % result.returncode]
            first = next((line for line in lines if "error" in line), lines[-1])
            raise BenchError("building nsqload with gcc failed: %s" % first)
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)  # atomic: two benches building at once both end with a whole binary
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary


class LoadResult:
    def __init__(self, msgs: int, secs: float, rate=None):
        self.msgs = msgs
        self.secs = secs
        #: nsqload's own figure when there is one (its secs are rounded to 10 ms)
        self.rate = rate if rate is not None else (msgs / secs if secs > 0 else 0.0)


class Load:
    """One nsqload run; `wait` returns its LoadResult or raises ScenarioError with its error line."""

    def __init__(self, nsqload: str, args, seconds: float):
        self.args = [nsqload] + [str(a) for a in args]
        self.seconds = seconds
        self.proc = spawn(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)

    def wait(self, server: "Server") -> LoadResult:
        limit = self.seconds + LOAD_GRACE
        try:
            out, err = self.proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            stop(self.proc)
            raise ScenarioError("nsqload %s did not finish within %.0fs: the server stopped answering%s"
                                % (self.args[1], limit, server.exit_note()))
        _children.discard(self.proc)
        match = _RESULT_LINE.search(out)
        if self.proc.returncode != 0 or match is None:
            lines = [line for line in err.splitlines() if line.strip()]
            detail = lines[-1] if lines else "exit status %d, no output" % self.proc.returncode
            raise ScenarioError("nsqload %s failed: %s%s" % (self.args[1], detail, server.exit_note()))
        return LoadResult(int(match.group(2)), float(match.group(3)), float(match.group(4)))


# -- the server under test

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m twisted nsqtx ...` in a temporary data directory, removed again by :meth:`close`."""

    def __init__(self, python: str, mem_queue_size: int):
        self.python = python
        self.mem_queue_size = mem_queue_size
        self.tcp_port = free_port()
        self.http_port = free_port()
        self.data_path = tempfile.mkdtemp(prefix="nsqtx-bench.")
        self.log_path = os.path.join(self.data_path, "server.log")
        self._log_offset = 0
        self.proc = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
        args = [self.python, "-m", "twisted", "--log-format=text", "nsqtx",
                "--tcp-address=127.0.0.1:%d" % self.tcp_port,
                "--http-address=127.0.0.1:%d" % self.http_port,
                "--mem-queue-size=%d" % self.mem_queue_size,
                "--data-path=%s" % self.data_path,
                "--log-level=warn"]
        with open(self.log_path, "wb") as log:
            self.proc = spawn(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                              env=env, cwd=self.data_path)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise ScenarioError("the server exited during start-up%s" % self.exit_note())
            try:
                status, _ = self.request("GET", "/ping", timeout=1.0)
                if status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise ScenarioError("the server did not answer /ping within %.0fs" % START_TIMEOUT)
            time.sleep(0.1)

    def close(self) -> None:
        try:
            if self.proc is not None:
                stop(self.proc)
        finally:
            shutil.rmtree(self.data_path, ignore_errors=True)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info):
        self.close()

    def request(self, method: str, path: str, timeout: float = PING_TIMEOUT):
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def create_channel(self, topic: str, channel: str) -> None:
        """POST /topic/create, then /channel/create (which, as in nsqd, wants an existing topic)."""
        for path in ("/topic/create?topic=%s" % topic, "/channel/create?topic=%s&channel=%s" % (topic, channel)):
            try:
                status, body = self.request("POST", path)
            except (OSError, http.client.HTTPException) as e:
                raise ScenarioError("POST %s failed: %s" % (path, e))
            if status != 200:
                raise ScenarioError("POST %s answered %d %s" % (path, status, body.decode("utf-8", "replace").strip()))

    def channel_stats(self, topic: str, channel: str) -> dict:
        """The channel's part of /stats?format=json, or {} if the server does not answer it."""
        path = "/stats?format=json&include_clients=false&include_mem=false&topic=%s&channel=%s" % (topic, channel)
        try:
            status, body = self.request("GET", path)
            doc = json.loads(body) if status == 200 else {}
        except (OSError, http.client.HTTPException, ValueError):
            return {}
        for t in doc.get("topics", []):
            for c in t.get("channels", []):
                if t.get("topic_name") == topic and c.get("channel_name") == channel:
                    return c
        return {}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_note(self) -> str:
        """'' while the server runs, else how it ended and the last line it logged."""
        if self.alive() or self.proc is None:
            return ""
        code = self.proc.returncode
        how = "signal %d" % -code if code < 0 else "status %d" % code
        tail = self.log_tail(1)
        return " (server exited with %s%s)" % (how, ": " + tail[0] if tail else "")

    def log_tail(self, n: int):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return [line.rstrip() for line in f.readlines()[-n:] if line.strip()]
        except OSError:
            return []

    def new_log_problems(self):
        """Warnings, errors and tracebacks the server logged since the last call; of a traceback
        (its lines are tab-indented in Twisted's text log) only the last line, the exception."""
        try:
            with open(self.log_path, "r", errors="replace") as f:
                f.seek(self._log_offset)
                text = f.read()
                self._log_offset = f.tell()
        except OSError:
            return []
        problems = []
        exception = None
        for line in text.splitlines() + [""]:
            if line.startswith("\t"):
                exception = line.strip() or exception
                continue
            if exception:
                problems.append("  " + exception)
                exception = None
            if _PROBLEM.search(line):
                problems.append(line)
        return problems

    def _status(self) -> dict:
        values = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                key, _, value = line.partition(":")
                values[key] = value.strip()
        return values

    def rss(self) -> int:
        """Resident set size in bytes; VmHWM (the peak) via :meth:`peak_rss`."""
        return int(self._status()["VmRSS"].split()[0]) * 1024

    def peak_rss(self) -> int:
        return int(self._status()["VmHWM"].split()[0]) * 1024

    def cpu_seconds(self) -> float:
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- CPU use during a load

def _busy_seconds() -> float:
    """CPU time the whole machine spent busy (all CPUs) since boot."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU time of the bench and its reaped children (nsqload runs are reaped when they end)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CPUMeter:
    """The server's CPU use during a load, and that of processes other than the server, nsqload and
    the bench: on a shared machine they make the figures noisy, so the results say so."""

    def __init__(self, server: Server):
        self.server = server
        self.start = (time.monotonic(), server.cpu_seconds(), _busy_seconds(), _own_seconds())

    def read(self):
        """(server %, others %) of one CPU, since construction."""
        wall, server, busy, own = (a - b for a, b in zip(
            (time.monotonic(), self.server.cpu_seconds(), _busy_seconds(), _own_seconds()), self.start))
        return 100.0 * server / wall, 100.0 * max(0.0, busy - server - own) / wall


# -- when a backlog runs out

class DrainWatcher(threading.Thread):
    """Polls the channel's depth in /stats every DRAIN_POLL and notes when it first reads 0."""

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

    def finish(self):
        self._halt.set()
        self.join(PING_TIMEOUT + 1)
        return self.drained_after


# -- /ping latency under load

class PingPoller(threading.Thread):
    """GET /ping every PING_INTERVAL on a new connection, recording latencies and failures."""

    def __init__(self, port: int):
        threading.Thread.__init__(self, name="ping-poller", daemon=True)
        self.port = port
        self.latencies = []
        self.errors = 0
        self.first_error = ""
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            start = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PING_TIMEOUT)
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
            took = time.perf_counter() - start
            if ok:
                self.latencies.append(took)
            else:
                self.errors += 1
                self.first_error = self.first_error or failure
            self._halt.wait(max(0.0, PING_INTERVAL - took))

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


# -- scenarios

class Bench:
    def __init__(self, args, nsqload: str, python: str, runtime: str):
        self.args = args
        self.nsqload = nsqload
        self.python = python
        self.runtime = runtime
        #: the sub scenario's backlog: --messages, raised while consumers empty it before the time is up
        self.sub_backlog = args.messages

    def mem_queue_size(self, backlog: int) -> int:
        if self.args.mem_queue_size is not None:
            return self.args.mem_queue_size
        return max(10000000, 2 * backlog)

    def row(self, mode: str, conns: int, backlog=None) -> dict:
        return {"runtime": self.runtime, "python": self.python, "mode": mode, "connections": conns,
                "mem_queue_size": self.mem_queue_size(backlog or self.args.messages), "backlog": backlog,
                "rate": None, "msgs": None, "secs": None,
                "bytes_per_msg": None, "ping": None, "server_cpu_pct": None, "notes": [], "error": None,
                "server_log": []}

    def run(self, scenario: str, reverse: bool = False):
        """One run of `scenario` for each connection count (in reverse order if `reverse`)."""
        messages = self.args.messages
        if scenario == "mem":
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
            wanted = max(2 * backlog, 1.25 * row["filled"] * a.seconds / lasted)
            self.sub_backlog = min(limit, -(-int(wanted) // 100000) * 100000)
            print("nsqtx.bench: %s sub x%d: %d messages ran out after %.1fs; again with %d"
                  % (self.runtime, conns, row["filled"], lasted, self.sub_backlog), file=sys.stderr)
        if row["backlog"] > a.messages:
            row["notes"].append("backlog raised to %d: %d ran out before %gs" % (row["backlog"], a.messages, a.seconds))
        return row

    def _guarded(self, row: dict, method) -> dict:
        try:
            with Server(self.python, row["mem_queue_size"]) as server:
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
        load = Load(self.nsqload, mode_args, seconds)
        # threads start after the spawn, so that none runs while the child is forked
        poller = PingPoller(server.http_port)
        poller.start()
        watcher = DrainWatcher(server) if watch_drain else None
        if watcher is not None:
            watcher.start()
        try:
            result = load.wait(server)
        finally:
            row["ping"] = poller.finish()
            if watcher is not None:
                row["drained_after"] = watcher.finish()
        if server.alive():
            row["server_cpu_pct"], row["other_cpu_pct"] = cpu.read()
            if row["other_cpu_pct"] > OTHER_CPU_NOTE:
                row["notes"].append("other processes used %.0f%% CPU meanwhile: expect noise" % row["other_cpu_pct"])
        row.update(msgs=result.msgs, secs=result.secs, rate=result.rate)
        if row["ping"]["errors"]:
            row["notes"].append("%d /ping failures (%s)" % (row["ping"]["errors"], row["ping"]["first_error"]))
        if not server.alive():
            raise ScenarioError("the server died under load%s" % server.exit_note())
        return result

    def fill(self, server: Server, count: int) -> LoadResult:
        """Publish about `count` messages. nsqload runs for a time, so this runs it in steps aimed at
        most of what is left at the best rate seen so far, each at most twice the last: rates climb
        (PyPy's JIT warming up) and jump between steps (garbage collection pauses), and a step sized on
        a slow one would overshoot by far."""
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

    def pub(self, server: Server, row: dict) -> None:
        a = self.args
        self._load(server, row, ["pub", server.tcp_port, TOPIC, a.size, a.batch, a.seconds, row["connections"]],
                   a.seconds)

    def sub(self, server: Server, row: dict) -> None:
        seconds = self.args.seconds
        server.create_channel(TOPIC, CHANNEL)
        backlog = self.fill(server, row["backlog"])
        row["filled"] = backlog.msgs
        row["fill_rate"] = backlog.rate
        self.check_queued(server, row, backlog.msgs)
        result = self._load(server, row, ["sub", server.tcp_port, TOPIC, CHANNEL, seconds, row["connections"],
                                          SUB_RDY], seconds, watch_drain=True)
        # running out in the last 5% of the run hardly lowers the rate
        lasted = row["drained_after"]
        row["drained"] = result.msgs >= backlog.msgs or (lasted is not None and lasted < 0.95 * seconds)
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


# -- runtime name, output

def source_version() -> str:
    """The commit of the server's source tree, "+" if it has changes, or "" outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, universal_newlines=True, timeout=10)
        dirty = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                               timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if head.returncode != 0:
        return ""
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def describe_runtime(python: str) -> str:
    code = ("import platform, sys; v = getattr(sys, 'pypy_version_info', None); "
            "print(platform.python_implementation() + ' ' + platform.python_version()"
            " + (' (PyPy %d.%d.%d)' % tuple(v[:3]) if v else ''))")
    try:
        result = subprocess.run([python, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError("cannot run --python %s: %s" % (python, e))
    if result.returncode != 0:
        raise BenchError("cannot run --python %s: %s" % (python, (result.stderr.strip().splitlines() or ["?"])[-1]))
    return result.stdout.strip()


def _count(n: int) -> str:
    for size, suffix in ((10 ** 6, "M"), (10 ** 3, "k")):
        if n >= size and n % size == 0:
            return "%d%s" % (n // size, suffix)
    return str(n)


def median_rows(runs, args) -> list:
    """One row per (runtime, scenario, connection count): the run with the median figure (the
    lower one of the middle two for an even count), so its /ping and CPU figures belong to it too,
    noting every run's figure."""
    groups = {}
    for row in runs:
        groups.setdefault((row["python"], row["mode"], row["connections"]), []).append(row)

    def figure(row):
        return row["bytes_per_msg"] if row["mode"] == "mem" else row["rate"]

    def position(key):
        python, mode, conns = key
        return args.python.index(python), args.scenarios.index(mode), args.connections.index(conns)

    out = []
    for key in sorted(groups, key=position):
        group = groups[key]
        ok = sorted((r for r in group if not r["error"]), key=figure)
        failed = [r for r in group if r["error"]]
        if not ok:
            out.append(failed[0])
            continue
        row = dict(ok[(len(ok) - 1) // 2])
        unit = "B/msg" if row["mode"] == "mem" else "msgs/s"
        row["notes"] = ["median of %d runs (%s %s)" % (len(ok), ", ".join("%.0f" % figure(r) for r in ok), unit)
                        ] + row["notes"]
        if failed:
            row["notes"].append("%d of %d runs failed: %s" % (len(failed), len(group), failed[0]["error"]))
        out.append(row)
    return out


def format_table(rows) -> str:
    header = ("runtime", "mode", "mem-queue", "conns", "msgs/s", "B/queued msg", "/ping p99 ms", "server CPU%",
              "notes")
    lines = [header]
    for r in rows:
        ping = r["ping"] or {}
        notes = list(r["notes"])
        if r["error"]:
            notes.insert(0, "FAILED: " + r["error"])
        lines.append((
            r["runtime"], r["mode"], _count(r["mem_queue_size"]), str(r["connections"]),
            "-" if r["rate"] is None or r["mode"] == "mem" or r["error"] else "%.0f" % r["rate"],
            "-" if r["bytes_per_msg"] is None else "%.0f" % r["bytes_per_msg"],
            "%.2f" % ping["p99_ms"] if "p99_ms" in ping and not r["error"] else "-",
            "-" if r["server_cpu_pct"] is None else "%.0f" % r["server_cpu_pct"],
            "; ".join(notes)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [cell.rjust(w) if 1 < i < len(widths) else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells + [line[-1]]).rstrip())
    return "\n".join(out)


def _progress(row: dict) -> str:
    if row["error"]:
        return "FAILED: " + row["error"]
    if row["mode"] == "mem":
        return "%.0f bytes per queued message" % row["bytes_per_msg"]
    return "%.0f msgs/s" % row["rate"]


def _report(row: dict) -> None:
    print("nsqtx.bench: %s %s x%d: %s" % (row["runtime"], row["mode"], row["connections"], _progress(row)),
          file=sys.stderr, flush=True)


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


def _positive(kind):
    def convert(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive: %r" % text)
        return value
    return convert


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m nsqtx.bench",
        description="Benchmark nsqtx as a subprocess (python -m twisted nsqtx) with the C load generator "
                    "nsqload: publish rate, consume rate from a backlog, memory per queued message, and "
                    "/ping p99 latency under load. Traffic goes to 127.0.0.1 only.",
        epilog="The module docstring (pydoc nsqtx.bench) describes each scenario.")
    parser.add_argument("--python", action="append", metavar="PATH",
                        help="interpreter that runs the server; repeat to compare (default: %s)" % sys.executable)
    parser.add_argument("--scenarios", type=_scenario_list, default=list(SCENARIOS), metavar="LIST",
                        help="comma-separated, from pub,sub,mem (default: all)")
    parser.add_argument("--seconds", type=_positive(float), default=5.0,
                        help="duration of each pub and sub load (default: 5)")
    parser.add_argument("--messages", type=_positive(int), default=500000,
                        help="backlog for sub and queued count for mem (default: 500000)")
    parser.add_argument("--connections", type=_int_list, default=[1, 2], metavar="LIST",
                        help="connection counts for pub and sub (default: 1,2)")
    parser.add_argument("--size", type=_positive(int), default=200, help="message size in bytes (default: 200)")
    parser.add_argument("--batch", type=_positive(int), default=200, help="messages per MPUB (default: 200)")
    parser.add_argument("--mem-queue-size", type=int, default=None, metavar="N",
                        help="passed to the server (default: max(10000000, 2 x --messages), all in memory); "
                             "0 puts every message through the disk queue")
    parser.add_argument("--nsqload-src", default=DEFAULT_NSQLOAD_SRC, metavar="PATH",
                        help="nsqload.c to build (default: %s)" % DEFAULT_NSQLOAD_SRC)
    parser.add_argument("--repeat", type=_positive(int), default=1, metavar="N",
                        help="run everything N times, alternating the order of runtimes and connection "
                             "counts, and report each figure's median (default: 1)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.mem_queue_size is not None and args.mem_queue_size < 0:
        parser.error("--mem-queue-size must not be negative")
    args.python = args.python or [sys.executable]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    runs = []
    try:
        nsqload = build_nsqload(os.path.abspath(args.nsqload_src))
        benches = [Bench(args, nsqload, python, describe_runtime(python)) for python in args.python]
        for round_number in range(args.repeat):
            # every other round runs backwards, so that no runtime or count is always first
            backwards = round_number % 2 == 1
            for bench in benches[::-1] if backwards else benches:
                for scenario in args.scenarios:
                    for row in bench.run(scenario, reverse=backwards):
                        runs.append(row)
                        _report(row)
        # a later round may have raised a runtime's sub backlog: earlier sub runs with a smaller one
        # run again, so that every count's median comes from the same backlog
        # (until none is left: a run again may raise it once more, up to its limit)
        stale = True
        while stale:
            stale = False
            for i, row in enumerate(runs):
                bench = benches[args.python.index(row["python"])]
                if row["mode"] == "sub" and not row["error"] and row["backlog"] < bench.sub_backlog:
                    runs[i] = bench.sub_until_busy(row["connections"])
                    _report(runs[i])
                    stale = True
    except BenchError as e:
        print("nsqtx.bench: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nsqtx.bench: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Interrupted as e:
        print("nsqtx.bench: stopped by signal %d" % e.args[0], file=sys.stderr)
        return 128 + e.args[0]
    finally:
        stop_all()
    rows = median_rows(runs, args) if args.repeat > 1 else runs
    if args.json:
        settings = {name: getattr(args, name) for name in ("seconds", "messages", "connections", "size", "batch",
                                                           "mem_queue_size", "scenarios", "repeat")}
        settings.update(source=source_version(), cpus=os.cpu_count())
        json.dump({"settings": settings, "results": rows, "runs": runs}, sys.stdout, indent=2)
        print()
    else:
        print(format_table(rows))
        for r in runs:
            for line in r["server_log"][:5]:
                print("server log (%s %s x%d): %s" % (r["runtime"], r["mode"], r["connections"], line))
    return 1 if any(r["error"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
