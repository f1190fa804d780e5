"""The neutral C load generator nsqload: built from its source into the user's cache, run for a given
time, and read back from its one result line."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile

from benchmarks.errors import BenchError, ScenarioError
from benchmarks.processes import children, spawn, stop
from benchmarks.server import Server

#: nsqload runs for its SECONDS argument; allowed on top before it is presumed stuck on a stalled server
LOAD_GRACE = 30.0

_RESULT_LINE = re.compile(r"^(pub|sub) msgs=(\d+) secs=([0-9.]+) rate=([0-9.]+)$", re.M)


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nsqtx")


#: what nsqload's transports (TLS, snappy, deflate) need besides ``gcc -O2 -pthread``: before the source
#: a define, after it the libraries
TRANSPORT_DEFINES = ["-DNSQLOAD_TRANSPORTS"]
TRANSPORT_LIBRARIES = ["-lssl", "-lcrypto", "-lz", "-lsnappy"]
_MISSING_LIBRARY = re.compile(r"\.h: No such file|cannot find -l")


def build_nsqload(src: str, transports: bool = False) -> str:
    """Return the path of an nsqload binary built from `src`, named after its content, so that each
    source (the repository's, the workplace's, an edited one) is built once and never stands for another;
    with `transports`, one that also speaks TLS, snappy and deflate (linked with OpenSSL, zlib and
    snappy), kept apart from the plain one: both are built from the same source, and a plain one
    (as any ``gcc -O2 -pthread`` makes it) cannot stand for it."""
    if not os.path.isfile(src):
        raise BenchError("nsqload source not found at %s (give it with --nsqload-src)" % src)
    directory = cache_dir()
    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    binary = os.path.join(directory, "nsqload-%s%s" % (digest, "-transports" if transports else ""))
    if os.path.isfile(binary):
        return binary
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BenchError("gcc not found on PATH; it is needed to build nsqload from %s" % src)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="nsqload.", dir=directory)
    os.close(fd)
    try:
        command = [gcc, "-O2", "-pthread", "-o", tmp] + (
            TRANSPORT_DEFINES + [src] + TRANSPORT_LIBRARIES if transports else [src])
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                timeout=120)
        if result.returncode != 0:
            lines = result.stdout.strip().splitlines() or ["exit status %d" % result.returncode]
            first = next((line for line in lines if "error" in line), lines[-1])
            hint = ""
            if transports and _MISSING_LIBRARY.search(result.stdout):
                hint = (" (the transports other than plain need the headers and libraries of OpenSSL, zlib and "
                        "snappy: on Debian, apt-get install libssl-dev zlib1g-dev libsnappy-dev)")
            raise BenchError("building nsqload with gcc failed: %s%s" % (first, hint))
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

    def __init__(self, nsqload: str, args, seconds: float, env=None):
        self.args = [nsqload] + [str(a) for a in args]
        self.seconds = seconds
        self.proc = spawn(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env)

    def wait(self, server: Server) -> LoadResult:
        limit = self.seconds + LOAD_GRACE
        try:
            out, err = self.proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            stop(self.proc)
            raise ScenarioError("nsqload %s did not finish within %.0fs: the server stopped answering%s"
                                % (self.args[1], limit, server.exit_note()))
        children.discard(self.proc)
        match = _RESULT_LINE.search(out)
        if self.proc.returncode != 0 or match is None:
            lines = [line for line in err.splitlines() if line.strip()]
            detail = lines[-1] if lines else "exit status %d, no output" % self.proc.returncode
            raise ScenarioError("nsqload %s failed: %s%s" % (self.args[1], detail, server.exit_note()))
        return LoadResult(int(match.group(2)), float(match.group(3)), float(match.group(4)))
