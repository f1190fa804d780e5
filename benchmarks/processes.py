"""The bench's child processes (servers, nsqload runs): each in a process group of its own, dying
with the bench and always reaped, so that neither Ctrl-C nor a signal nor a crash leaves one running."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

#: how long a server may take to exit after SIGTERM before it is killed
STOP_TIMEOUT = 10.0

#: children not yet known to have ended: what stop_all stops (nsqload.Load drops a run it reaped)
children = set()
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
    children.add(proc)
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
        children.discard(proc)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all() -> None:
    for proc in list(children):
        stop(proc)


class Interrupted(BaseException):
    """SIGTERM or SIGHUP, handled like Ctrl-C: the bench stops its children and exits."""


def interrupt(signum, frame):
    """The SIGTERM and SIGHUP handler: the bench's `finally` then stops its children."""
    raise Interrupted(signum)
