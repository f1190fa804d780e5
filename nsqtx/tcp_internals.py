"""Twisted's TCP connections, reached into where their public interface costs a consume load too much
(see :mod:`nsqtx.eager_write` and :mod:`nsqtx.read_into`).

What those modules read and replace is internal state, as in Twisted 25.5 and 26.10, so they check
for it first: a transport of another kind, or from a Twisted that renamed an attribute, keeps its
own behaviour rather than raising AttributeError at every write or read.
"""
from __future__ import annotations

from twisted.internet.tcp import Connection


def has_internals(transport, names) -> bool:
    """Whether `transport` is a Twisted TCP connection with every attribute in `names`."""
    return isinstance(transport, Connection) and all(hasattr(transport, name) for name in names)
