"""The interpreter tuning of `twistd nsqtx` (nsqtx.tuning); ServerProcess's use of it is in test_tap."""
from __future__ import annotations

import os

from twisted.trial import unittest

from nsqtx import tuning
from tests.support import FakeJIT, replace_module


class TuneJITTests(unittest.TestCase):
    def cmdline(self, *args: bytes) -> str:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\0".join(args) + b"\0")
        return path

    def with_jit(self) -> FakeJIT:
        jit = FakeJIT()
        replace_module(self, "pypyjit", jit)
        return jit

    def test_counters_never_decay(self):
        jit = self.with_jit()
        tuning.tune_jit(self.cmdline(b"pypy3", b"-m", b"twisted", b"nsqtx", b"--mem-queue-size=0"))
        self.assertEqual(jit.params, ["decay=0"])

    def test_the_interpreters_own_jit_options_are_kept(self):
        jit = self.with_jit()
        tuning.tune_jit(self.cmdline(b"pypy3", b"-u", b"--jit", b"decay=40", b"-m", b"twisted", b"nsqtx"))
        self.assertEqual(jit.params, [])

    def test_unreadable_command_line(self):
        """Not Linux (or no /proc): tuned all the same."""
        jit = self.with_jit()
        tuning.tune_jit(os.path.join(self.mktemp(), "cmdline"))
        self.assertEqual(jit.params, ["decay=0"])

    def test_no_jit(self):
        """CPython: nothing to tune, and nothing fails."""
        replace_module(self, "pypyjit", None)
        tuning.tune_jit(self.cmdline(b"python3", b"-m", b"twisted", b"nsqtx"))
