"""Protocol errors as values: raised where detected, framed in one place (the protocol)."""
from __future__ import annotations


class ClientError(Exception):
    """An error a client caused; the connection survives it."""

    fatal = False

    def __init__(self, code: str, description: str = ""):
        Exception.__init__(self, code, description)
        self.code = code
        self.description = description

    def __str__(self) -> str:
        if self.description:
            return "%s %s" % (self.code, self.description)
        return self.code


class FatalClientError(ClientError):
    """An error after which the stream can no longer be trusted: the connection is closed."""

    fatal = True


class QueueError(Exception):
    """A topic or channel could not take a message (exiting, or no room left)."""
