"""The node's health, as nsqd reports it on /ping and /stats: "OK", or the last failure to write to a
disk queue until a write succeeds again."""
from __future__ import annotations

from nsqtx.log import NSQLogger

log = NSQLogger()


class Health:
    def __init__(self):
        #: None while healthy, else what failed
        self.error = None

    def __str__(self) -> str:
        return "OK" if self.error is None else "NOK - %s" % (self.error,)

    def failed(self, error: str) -> None:
        self.error = error

    def recovered(self) -> None:
        self.error = None
