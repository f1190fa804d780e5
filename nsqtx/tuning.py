"""How `twistd nsqtx` tunes the interpreter it runs in, for a long-lived server rather than a script.

Only the twistd process is tuned (:meth:`nsqtx.server_process.ServerProcess.startService`): a program embedding
nsqtx keeps its interpreter's settings.
"""
from __future__ import annotations

#: what tune_jit sets on PyPy: counters that never decay (its default is decay=40)
JIT_PARAMS = "decay=0"


def tune() -> None:
    tune_jit()


def tune_jit(cmdline_path: str = "/proc/self/cmdline") -> None:
    """Let PyPy's JIT compile what the server runs often but not all the time.

    PyPy counts how often each function and loop runs and compiles it past a threshold, but decays
    every count as it goes, so what runs only ~100 times a second is interpreted forever: a health
    checker's ``/ping`` on a new connection every 10 ms still cost a server 1.8 ms of CPU per
    request after a minute (0.6 ms after 9 s with counts that never decay), which a publisher waiting for its
    ``OK`` meanwhile lost as throughput. A server runs for days, so whatever it has run a few
    thousand times is worth compiling. An interpreter started with its own ``--jit`` is left as
    it is (read from `cmdline_path`, where Linux keeps the interpreter's arguments)."""
    try:
        import pypyjit
    except ImportError:
        return
    if not _jit_chosen(cmdline_path):
        pypyjit.set_param(JIT_PARAMS)


def _jit_chosen(cmdline_path: str) -> bool:
    try:
        with open(cmdline_path, "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return b"--jit" in args
