"""One logger type for nsqtx: twisted.logger events, filtered by --log-level before they are built."""
from __future__ import annotations

from twisted.logger import Logger, LogLevel

_ORDER = {LogLevel.debug: 0, LogLevel.info: 1, LogLevel.warn: 2, LogLevel.error: 3, LogLevel.critical: 4}
_BY_NAME = {"debug": 0, "info": 1, "warn": 2, "error": 3, "fatal": 4}
_threshold = [1]


def set_log_level(name: str) -> None:
    """Applies to every nsqtx logger at once; the level is process-wide, like nsqd's."""
    _threshold[0] = _BY_NAME[name]


def debug_enabled() -> bool:
    """Lets hot paths skip building debug arguments entirely."""
    return _threshold[0] == 0


class NSQLogger(Logger):
    """A Logger that drops events below the configured level without formatting them."""

    def emit(self, level, format=None, **kwargs):
        if _ORDER[level] >= _threshold[0]:
            Logger.emit(self, level, format, **kwargs)
