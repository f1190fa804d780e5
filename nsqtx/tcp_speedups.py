"""Writing to and reading from a plain TCP connection below Twisted's public interface.

Two speed-ups for a consume load, each one function of a transport:
- :func:`writer_for`: a buffer list goes to the socket at once (several buffers with one sendmsg)
  when the transport has nothing queued, instead of waiting for the reactor's next turn and a join;
  what the socket does not take is queued by the transport as usual, so order, flow control and
  errors stay Twisted's.
- :func:`read_into`: a read lands in one buffer shared by all connections and is copied out at once,
  instead of a new 64 KB string per recv (which PyPy charges whole to its nursery).

Both read Twisted's internal TCP state, as in the Twisted versions setup.py admits, and check for it
first: any other transport (a test's, or one from a Twisted that renamed an attribute) keeps its own
write and read. Once TLS is started on a connection (its ``TLS`` attribute), its writes go through
its own write(), which encrypts; reads stay below the TLS layer, which gets them as before. The
figures are in docs/performance.md.
"""
from __future__ import annotations

import os
import platform

from twisted.internet import main
from twisted.internet.tcp import Connection

#: the transport's state that the eager writer reads
_WRITE_STATE = ("offset", "dataBuffer", "_tempDataLen", "TLS", "connected", "disconnecting",
                "_writeDisconnected", "socket")
#: the transport's state that read_into reads and replaces
_READ_STATE = ("socket", "_dataReceived")
#: most buffers one sendmsg takes: 1024 on Linux, at least 16 by POSIX
try:
    _IOV_MAX = max(os.sysconf("SC_IOV_MAX"), 16)
except (AttributeError, ValueError, OSError):
    _IOV_MAX = 16
#: on CPython recv() allocates only what arrived, so reading into a shared buffer gains nothing
READ_INTO = platform.python_implementation() == "PyPy"
_BUFFER = bytearray(Connection.bufferSize)
_VIEW = memoryview(_BUFFER)


def is_plain_tcp(transport, names) -> bool:
    """Whether `transport` is a Twisted TCP connection with every attribute in `names`."""
    return isinstance(transport, Connection) and all(hasattr(transport, name) for name in names)


def writer_for(transport):
    """A function writing a list of buffers (bytes, memoryviews) to `transport`, in order: at once
    where it is a plain TCP connection with nothing queued, else joined, through its write()."""
    if not is_plain_tcp(transport, _WRITE_STATE) or not hasattr(transport.socket, "sendmsg"):
        return lambda parts: transport.write(_joined(parts))
    queue_write = transport.write

    def write(parts: list) -> None:
        # dataBuffer[offset:] and _tempDataBuffer are what the transport has yet to send
        if (transport.offset == len(transport.dataBuffer) and not transport._tempDataLen and not transport.TLS
                and transport.connected and not transport.disconnecting and not transport._writeDisconnected):
            if len(parts) == 1:
                data = parts[0]
                try:
                    sent = transport.socket.send(data)
                except OSError:  # would block, or the connection is lost: the transport finds out
                    sent = 0
                if sent == len(data):
                    return
                if sent:
                    parts = [data[sent:]]
            else:
                parts = _send_parts(transport.socket, parts)
                if not parts:
                    return
        queue_write(_joined(parts))

    return write


def _joined(parts: list) -> bytes:
    """What the transport's write() takes: bytes, whatever buffers `parts` holds."""
    return parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)


def _send_parts(sock, parts: list) -> list:
    """Send `parts` with as few sendmsg calls as IOV_MAX allows; returns what the socket did not take
    (empty once everything went). An error is left for the transport to find out at its own write."""
    done = 0
    while done < len(parts):
        group = parts[done:done + _IOV_MAX] if done or len(parts) > _IOV_MAX else parts
        try:
            sent = sock.sendmsg(group)
        except OSError:
            sent = 0
        size = sum(map(len, group))
        if sent == size:
            done += len(group)
            continue
        rest = parts[done:]
        i = 0
        while sent >= len(rest[i]):
            sent -= len(rest[i])
            i += 1
        rest = rest[i:]
        if sent:
            rest[0] = rest[0][sent:]
        return rest
    return []


def read_into(transport) -> None:
    """Make `transport`, if it is a plain TCP connection, read into the shared buffer. The reactor
    reads one connection at a time, and what a read brought is copied out before dataReceived sees
    it, so one buffer serves every connection."""
    if not is_plain_tcp(transport, _READ_STATE):
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
