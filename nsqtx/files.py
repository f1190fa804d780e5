"""Replacing a small file atomically (as nsqd does for nsqd.dat and go-diskqueue for its meta file),
and removing one that may already be gone."""
from __future__ import annotations

import os

from nsqtx.log import NSQLogger

log = NSQLogger()


def replace_file(path: str, data: bytes) -> None:
    """Write `data` to a temp file, fsync it, rename it over `path` and fsync the directory: a
    reader or a crash sees the old content or the new, never a mix, and once this returns the new
    one survives a power loss. A write that fails leaves the old file as it was and no temp file."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        remove_file(tmp)
        raise
    fsync_dir(os.path.dirname(path))


def fsync_dir(path: str) -> None:
    """Make a rename or removal in directory `path` durable."""
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_file(path: str) -> None:
    """Delete `path`; a file already gone is fine and any other failure is logged, not raised,
    because this may run in a thread that nothing waits on."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        log.error("failed to remove {path} - {err}", path=path, err=err)
