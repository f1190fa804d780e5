"""Where disk work that may block (fsync, replacing a metadata file, removing a large file) runs: off
the reactor thread, reported back through Deferreds.

Jobs are keyed by the file they concern: those of one key run one after another, in the order they
were submitted (a queue's sync, its next sync, its files' removal), those of different keys at once.
"""
from __future__ import annotations

from collections import deque

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from zope.interface import Interface, implementer


class IDiskWorker(Interface):
    def submit(key, function, *args):
        """Run function(*args) away from the reactor thread, once every job submitted before with the
        same `key` has finished. Returns a Deferred that fires with its result or failure."""


@implementer(IDiskWorker)
class ThreadPoolWorker:
    """Runs jobs in the reactor's thread pool, which the reactor starts when it runs and stops, once
    the services have stopped, when it stops."""

    def __init__(self, reactor, pool=None):
        self.reactor = reactor
        self._pool = pool
        #: key -> its jobs not yet finished, the first one running
        self._queues = {}

    def submit(self, key, function, *args):
        done = defer.Deferred()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append((function, args, done))
        if len(queue) == 1:
            self._start(key, queue)
        return done

    def _start(self, key, queue) -> None:
        function, args, _ = queue[0]
        pool = self._pool if self._pool is not None else self.reactor.getThreadPool()
        deferToThreadPool(self.reactor, pool, function, *args).addBoth(self._finished, key, queue)

    def _finished(self, result, key, queue) -> None:
        _, _, done = queue.popleft()
        if queue:
            self._start(key, queue)
        else:
            del self._queues[key]
        if isinstance(result, Failure):
            done.errback(result)
        else:
            done.callback(result)


@implementer(IDiskWorker)
class InlineWorker:
    """Runs each job at once, on the calling thread: for tests on a fake reactor, and for a disk queue
    used on its own. Jobs of a key are in order by construction."""

    def submit(self, key, function, *args):
        return defer.maybeDeferred(function, *args)
