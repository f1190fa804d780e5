"""The root of a server process's service tree (`twistd nsqtx`, `twistd nsqtx-lookupd`, a .tac file):
start-up failures as one line on stderr and exit status 1, an interpreter tuned for a long-lived
server, and exit status 0 on SIGTERM or SIGINT, as Go's servers do."""
from __future__ import annotations

import signal

from twisted.application.service import MultiService, Service
from twisted.internet.error import CannotListenError

from nsqtx.metadata import MetadataError
from nsqtx.tuning import tune


class ExitZeroOnSignals(Service):
    """SIGTERM/SIGINT stop the reactor (so the services stop cleanly) and the process exits with 0.
    twistd's own handlers re-raise the signal after the clean stop, which makes a service manager
    report a killed process; these replace them once the reactor is running."""

    name = "exit-zero-on-signals"

    def __init__(self, reactor):
        self.reactor = reactor

    def startService(self):
        Service.startService(self)
        # After startup, since the reactor installs its own handlers while starting.
        self.reactor.callWhenRunning(self._install)

    def _install(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)

    def _stop(self, signum, frame):
        self.reactor.callFromThread(self.reactor.stop)


class ServerProcess(MultiService):
    """A start-up failure (a port in use, an unreadable nsqd.dat, a missing data path) ends the
    process with one line on stderr, prefixed with `program`, and status 1, instead of twistd's
    traceback. Once started, it tunes the interpreter (:mod:`nsqtx.tuning`)."""

    def __init__(self, program: str, reactor):
        MultiService.__init__(self)
        self.program = program
        ExitZeroOnSignals(reactor).setServiceParent(self)

    def startService(self):
        try:
            MultiService.startService(self)
        except (CannotListenError, MetadataError, OSError, ValueError) as e:
            raise SystemExit("%s: %s" % (self.program, e)) from None
        tune()
