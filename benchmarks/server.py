"""The server under test, started as a user starts it (``python -m twisted nsqtx``, or a Go nsqd
binary with the same flags) on free ports of 127.0.0.1 with a data directory of its own, and asked
over HTTP and /proc how it is doing."""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from benchmarks.errors import ScenarioError
from benchmarks.processes import spawn, stop
from benchmarks.settings import PING_TIMEOUT, REPO_ROOT

#: how long a server may take to answer /ping after start (PyPy's start-up is the slow one)
START_TIMEOUT = 60.0

#: a warning or error in nsqtx's text log (Twisted's "[name#level]") or in Go nsqd's ("LEVEL: ")
_PROBLEM = re.compile(r"#(warn|error|critical)\]|Traceback|Unhandled| (WARNING|ERROR|FATAL): ")
#: nsqload leaving: it closes its connections with messages in flight at the end of every run, which
#: Go nsqd logs as an ERROR ("write: broken pipe", "read: connection reset by peer", or, when its
#: reader has closed the connection first, "use of closed network connection")
_PEER_LEFT = re.compile(r": (broken pipe|connection reset by peer|use of closed network connection)$")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nsqtx_command(python: str, plugin: str = "nsqtx") -> list:
    """How a user starts nsqtx (or another of its twistd plugins, as nsqtx-lookupd) with `python`,
    up to the flags it shares with Go's binary."""
    return [python, "-m", "twisted", "--log-format=text", plugin]


class Server:
    """`command` (:func:`nsqtx_command`, or a Go nsqd binary) with nsqd's flags, in a temporary data
    directory, removed again by :meth:`close`; with `tls` (the "cert" and "key" files of
    :func:`benchmarks.certificates.make_certificates`), ready for IDENTIFY's tls_v1."""

    def __init__(self, command: list, mem_queue_size: int, tls=None):
        self.command = command
        self.mem_queue_size = mem_queue_size
        self.tls = tls
        self.tcp_port = free_port()
        self.http_port = free_port()
        self.data_path = tempfile.mkdtemp(prefix="nsqtx-bench.")
        self.log_path = os.path.join(self.data_path, "server.log")
        self._log_offset = 0
        self.proc = None

    def argv(self) -> list:
        argv = self.command + ["--tcp-address=127.0.0.1:%d" % self.tcp_port,
                               "--http-address=127.0.0.1:%d" % self.http_port,
                               "--mem-queue-size=%d" % self.mem_queue_size,
                               "--data-path=%s" % self.data_path,
                               "--log-level=warn"]
        if self.tls:
            argv += ["--tls-cert=%s" % self.tls["cert"], "--tls-key=%s" % self.tls["key"]]
        return argv

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
        with open(self.log_path, "wb") as log:
            self.proc = spawn(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
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

    def topic_stats(self, topic: str) -> dict:
        """The topic's part of /stats?format=json, or {} if the server does not answer it."""
        path = "/stats?format=json&include_clients=false&include_mem=false&topic=%s" % topic
        try:
            status, body = self.request("GET", path)
            doc = json.loads(body) if status == 200 else {}
        except (OSError, http.client.HTTPException, ValueError):
            return {}
        return next((t for t in doc.get("topics", []) if t.get("topic_name") == topic), {})

    def channel_stats(self, topic: str, channel: str) -> dict:
        """The channel's part of /stats?format=json, or {} if the server does not answer it."""
        channels = self.topic_stats(topic).get("channels", [])
        return next((c for c in channels if c.get("channel_name") == channel), {})

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
        """Warnings, errors and tracebacks the server logged since the last call, but for nsqload
        leaving; of a traceback (its lines are tab-indented in Twisted's text log) only the last
        line, the exception."""
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
            if _PROBLEM.search(line) and not _PEER_LEFT.search(line):
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

    def usage(self) -> tuple:
        """(CPU seconds, of which in the kernel, minor page faults) since the server started.

        The faults are kept because on the VM measured here new memory costs 6x more (15-18 us a
        page rather than 2.5) past the 1.5-3.25 GB of free memory the host has backed (it takes freed
        memory back within seconds), and a publishing server grows all the time: the kernel's share
        tells that apart from the server's own work."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        user, system = int(fields[11]), int(fields[12])
        return (user + system) / tick, system / tick, int(fields[7])
