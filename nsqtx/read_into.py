"""Reading a TCP connection into one reused buffer instead of into a new string per read.

Twisted's TCP transport reads with socket.recv(65536). PyPy charges the whole 64 KB to its
nursery at every such read, however little arrives, and a consumer's FINs come about 11 KB to a
read: reads were a fifth of what a consuming server allocated (about 117 B a message), and every
1 MB of allocation is one more minor collection, each tracing the in-flight table again.
recv_into one buffer, copied out at once, charges only what arrived. The buffer is shared by the
connections: the reactor reads one at a time, and what a read brought is copied out before
dataReceived sees it.

On CPython recv(65536) is a malloc shrunk in place once the read is done, and consuming measured
the same either way (paired windows: 1.009 and 0.998 of the rate without), so only PyPy reads
into the buffer (WANTED).

It replaces the transport's doRead, using Twisted's internal state (see
:mod:`nsqtx.tcp_internals`): a transport without that state keeps its own doRead.
"""
from __future__ import annotations

import platform

from twisted.internet import main
from twisted.internet.tcp import Connection

from nsqtx.tcp_internals import has_internals

WANTED = platform.python_implementation() == "PyPy"
_BUFFER = bytearray(Connection.bufferSize)
_VIEW = memoryview(_BUFFER)


def read_into(transport) -> None:
    """Make `transport` read into the shared buffer, if it is a TCP connection."""
    if not has_internals(transport, ("socket", "_dataReceived")):
        return
    recv_into = transport.socket.recv_into
    received = transport._dataReceived

    def doRead():
        try:
            count = recv_into(_BUFFER)
        except BlockingIOError:
            return None
        except OSError:
            return main.CONNECTION_LOST
        return received(_VIEW[:count].tobytes())

    transport.doRead = doRead
