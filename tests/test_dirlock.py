"""The exclusive lock of a data path (nsqtx.dirlock): Go nsqd's flock on the directory."""
from __future__ import annotations

import os

from twisted.trial.unittest import TestCase

from nsqtx.dirlock import DataPathLocked, DirLock
from tests.support import data_dir


class DirLockTests(TestCase):
    def setUp(self):
        self.path = data_dir(self)

    def locked(self) -> DirLock:
        lock = DirLock(self.path)
        lock.lock()
        self.addCleanup(lock.unlock)
        return lock

    def test_a_second_lock_is_refused_in_one_line_naming_the_directory(self):
        self.locked()
        e = self.assertRaises(DataPathLocked, DirLock(self.path).lock)
        self.assertEqual(str(e), "failed to lock data-path %s - Resource temporarily unavailable (possibly in use "
                                 "by another instance of nsqd or nsqtx)" % (self.path,))

    def test_unlocked_it_can_be_taken_again(self):
        lock = self.locked()
        lock.unlock()
        lock.unlock()
        self.locked()

    def test_files_in_the_directory_stay_usable(self):
        """flock is advisory: it keeps out other servers, not the server's own files."""
        self.locked()
        with open(os.path.join(self.path, "nsqd.dat"), "w") as f:
            f.write("{}")

    def test_empty_path_is_the_current_directory(self):
        self.assertEqual(DirLock("").path, os.getcwd())

    def test_missing_directory(self):
        self.assertRaises(FileNotFoundError, DirLock(os.path.join(self.path, "missing")).lock)
