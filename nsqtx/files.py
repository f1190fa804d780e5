"""Replacing a small file atomically (as nsqd does for nsqd.dat and go-diskqueue for its meta file),
and removing one that may already be gone."""
from __future__ import annotations

import os

from nsqtx.log import NSQLogger

log = NSQLogger()


def replace_file(path: str, data: bytes) -> None:
    """Write `data` to a temp file, fsync it and rename it over `path`: a reader or a crash sees the
    old content or the new, never a mix."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def remove_file(path: str) -> None:
    """Delete `path`; a file already gone is fine and any other failure is logged, not raised,
    because this may run in a thread that nothing waits on."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        log.error("failed to remove {path} - {err}", path=path, err=err)
