"""nsqtx.disk_worker: jobs of one key one after another in submission order, of different keys at
once, off the reactor thread, their results and failures reported through Deferreds."""
from __future__ import annotations

import threading

from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThread
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from nsqtx.disk_worker import InlineWorker, ThreadPoolWorker


class ThreadPoolWorkerTests(TestCase):
    def setUp(self):
        self.pool = ThreadPool(2, 2, "test-disk-worker")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.worker = ThreadPoolWorker(reactor, self.pool)

    @defer.inlineCallbacks
    def test_jobs_of_one_key_run_one_after_another_in_order(self):
        """The first job blocks until the test lets it go: the second, of the same key, must not
        have started meanwhile, although a thread is free."""
        release = threading.Event()
        first_started = threading.Event()
        started = []

        def job(name):
            started.append(name)
            if name == "first":
                first_started.set()
                release.wait(10)
            return name

        first = self.worker.submit("k", job, "first")
        second = self.worker.submit("k", job, "second")
        yield deferToThread(first_started.wait, 10)
        other = yield self.worker.submit("other", job, "other")
        self.assertEqual((other, started), ("other", ["first", "other"]))
        release.set()
        results = yield defer.gatherResults([first, second])
        self.assertEqual((results, started), (["first", "second"], ["first", "other", "second"]))

    @defer.inlineCallbacks
    def test_jobs_run_off_the_reactor_thread_and_failures_come_back(self):
        thread = yield self.worker.submit("k", threading.current_thread)
        self.assertIsNot(thread, threading.main_thread())
        failed = self.worker.submit("k", int, "x")
        yield self.assertFailure(failed, ValueError)
        after = yield self.worker.submit("k", int, "7")
        self.assertEqual(after, 7)

    @defer.inlineCallbacks
    def test_the_reactors_pool_by_default(self):
        worker = ThreadPoolWorker(reactor)
        name = yield worker.submit("k", lambda: threading.current_thread().name)
        self.assertIn("PoolThread", name)


class InlineWorkerTests(TestCase):
    def test_runs_at_once_on_the_calling_thread(self):
        worker = InlineWorker()
        self.assertIs(self.successResultOf(worker.submit("k", threading.current_thread)), threading.current_thread())
        self.failureResultOf(worker.submit("k", int, "x"), ValueError)
