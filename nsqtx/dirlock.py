"""The exclusive lock of a node's --data-path (Go nsqd's internal/dirlock): an advisory ``flock`` on
the directory itself, held while the node runs, so that a second server started on the same
directory refuses to start instead of writing the same disk queues and nsqd.dat. Go nsqd takes the
same lock, so nsqtx and Go nsqd keep each other out too.

A flock belongs to the open file, which the kernel closes when the process dies: a server killed
with SIGKILL leaves no stale lock behind to block the next start.
"""
from __future__ import annotations

import fcntl
import os


class DataPathLocked(OSError):
    """Another open file holds the lock: another server (or node in this process) uses the path."""


class DirLock:
    def __init__(self, path: str):
        #: the directory, absolute (an empty --data-path is the current directory, as for Go nsqd)
        self.path = os.path.abspath(path or ".")
        self._fd = None

    def lock(self) -> None:
        """Take the lock, or raise DataPathLocked (one line, naming the directory) at once."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise DataPathLocked("failed to lock data-path %s - %s (possibly in use by another instance "
                                 "of nsqd or nsqtx)" % (self.path, e.strerror)) from None
        self._fd = fd

    def unlock(self) -> None:
        """Release the lock (closing the file releases it); nothing if it is not held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
