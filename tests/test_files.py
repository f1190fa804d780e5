"""Replacing nsqd.dat and the disk queues' metadata files crash-safely (nsqtx.files)."""
from __future__ import annotations

import errno
import os

from twisted.trial.unittest import TestCase

from nsqtx import files, metadata
from nsqtx.batch import Batch
from nsqtx.diskqueue import DiskQueue
from tests.support import data_dir

#: the real functions, for the stand-ins to call once os's are patched
_open, _write, _fsync, _replace, _close = os.open, os.write, os.fsync, os.replace, os.close


class SteppedOS:
    """Stands in for the os functions replace_file calls, recording each step in order: every write
    takes half of what it is given (a short write), and with `fail_write` the first one stops
    half-way with ENOSPC, as a full disk does."""

    def __init__(self, case, fail_write=False):
        self.steps = []
        self.fail_write = fail_write
        self._names = {}
        for name in ("open", "write", "fsync", "replace", "close"):
            case.patch(files.os, name, getattr(self, name))

    def open(self, path, flags, mode=0o777):
        fd = _open(path, flags, mode)
        self._names[fd] = "dir" if os.path.isdir(path) else os.path.basename(path)
        return fd

    def write(self, fd, data):
        if self.fail_write:
            self.fail_write = False
            _write(fd, bytes(data[:len(data) // 2]))
            self.steps.append(("write half", self._names[fd]))
            raise OSError(errno.ENOSPC, "No space left on device")
        written = _write(fd, bytes(data[:max(len(data) // 2, 1)]))
        self.steps.append(("write", self._names[fd]))
        return written

    def fsync(self, fd):
        _fsync(fd)
        self.steps.append(("fsync", self._names.get(fd, fd)))

    def replace(self, src, dst):
        _replace(src, dst)
        self.steps.append(("rename", os.path.basename(dst)))

    def close(self, fd):
        _close(fd)
        self._names.pop(fd, None)


class ReplaceFileTests(TestCase):
    def setUp(self):
        self.dir = data_dir(self)
        self.path = os.path.join(self.dir, "nsqd.dat")
        with open(self.path, "wb") as f:
            f.write(b"old content")

    def test_new_content_is_written_whole_even_in_short_writes(self):
        steps = SteppedOS(self)
        files.replace_file(self.path, b"0123456789" * 10)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"0123456789" * 10)
        self.assertGreater(steps.steps.count(("write", "nsqd.dat.%d.tmp" % os.getpid())), 1)

    def test_temporary_file_fsynced_then_renamed_then_directory_fsynced(self):
        steps = SteppedOS(self)
        files.replace_file(self.path, b"new")
        tmp = "nsqd.dat.%d.tmp" % os.getpid()
        self.assertEqual([step for step in steps.steps if step[0] != "write"],
                         [("fsync", tmp), ("rename", "nsqd.dat"), ("fsync", "dir")])

    def test_a_write_failing_half_way_leaves_the_old_content_and_no_temporary_file(self):
        SteppedOS(self, fail_write=True)
        self.assertRaises(OSError, files.replace_file, self.path, b"new content that does not fit")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"old content")
        self.assertEqual(os.listdir(self.dir), ["nsqd.dat"])


class ReplacedFilesTests(TestCase):
    """Both small files nsqd replaces go through replace_file's steps."""

    def setUp(self):
        self.dir = data_dir(self)

    def test_metadata_file(self):
        steps = SteppedOS(self)
        metadata.write(self.dir, {"topics": [], "version": "1.3.0"})
        self.assertEqual([step for step in steps.steps if step[0] != "write"],
                         [("fsync", "nsqd.dat.%d.tmp" % os.getpid()), ("rename", "nsqd.dat"), ("fsync", "dir")])

    def test_metadata_file_write_failing_half_way(self):
        metadata.write(self.dir, {"topics": [{"name": "t", "paused": False, "channels": []}], "version": "1.3.0"})
        SteppedOS(self, fail_write=True)
        self.assertRaises(OSError, metadata.write, self.dir, {"topics": [], "version": "1.3.0"})
        self.assertEqual(metadata.read(self.dir), [("t", False, [])])

    def test_disk_queue_metadata_file(self):
        from twisted.internet.task import Clock

        queue = DiskQueue("t", self.dir, 1 << 20, 1, 100, 1, 2.0, Clock())
        self.addCleanup(queue.close)
        steps = SteppedOS(self)
        queue.put(Batch.of([b"x"]))
        meta = "t.diskqueue.meta.dat"
        self.assertEqual([step for step in steps.steps if step[0] in ("fsync", "rename")],
                         [("fsync", "t.diskqueue.000000.dat"), ("fsync", meta + ".%d.tmp" % os.getpid()),
                          ("rename", meta), ("fsync", "dir")])

    def test_disk_queue_metadata_write_failing_half_way(self):
        from twisted.internet.task import Clock

        queue = DiskQueue("t", self.dir, 1 << 20, 1, 100, 1000, 2.0, Clock())
        queue.put(Batch.of([b"x"]))
        queue.sync()
        meta_path = queue.meta_file_name()
        with open(meta_path, "rb") as f:
            before = f.read()
        queue.put(Batch.of([b"y"]))
        SteppedOS(self, fail_write=True)
        queue.sync()
        with open(meta_path, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(sorted(os.listdir(self.dir)), ["t.diskqueue.000000.dat", "t.diskqueue.meta.dat"])
        queue.close()
