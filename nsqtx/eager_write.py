"""Writing to a TCP transport at once instead of at the reactor's next turn.

Twisted's TCP transport queues every write until its next doWrite, so what a consumer is sent
waits for the reactor to come round; under a consume load that is every message of the pump, and
on PyPy a buffer alive when the nursery is collected is copied into the old generation (in raw
memory, for a 16 KB buffer) and stays there until a major collection. Sending at once when nothing
is queued before it lets the buffer die young and skips the transport's own join of its queue, as
asyncio's transports and Go's bufio.Writer do. What the socket does not take goes to the
transport's queue as usual, so order, flow control (IPushProducer) and error handling stay
Twisted's. Several buffers go out with one sendmsg, without joining them first: a consumer's pump
share is a few runs of frames, each a slice of its batch (see ClientConnection.hold).

What it reads of the transport is Twisted's internal state (see :mod:`nsqtx.tcp_internals`): a
transport without it gets its own write(). A test that writes more than the socket takes checks
that nothing overtakes what the transport still holds.
"""
from __future__ import annotations

import os

from nsqtx.tcp_internals import has_internals


#: the transport's state that the eager path reads
_STATE = ("offset", "dataBuffer", "_tempDataLen", "TLS", "connected", "disconnecting", "_writeDisconnected",
          "socket")
#: most buffers one sendmsg takes: 1024 on Linux, at least 16 by POSIX
try:
    _IOV_MAX = max(os.sysconf("SC_IOV_MAX"), 16)
except (AttributeError, ValueError, OSError):
    _IOV_MAX = 16


def eager_writer(transport):
    """A function writing a list of buffers (bytes, memoryviews) to `transport`, in order: at once
    where it is a TCP connection with nothing queued (several with one sendmsg), else joined,
    through its write() (looked up at each call, as a caller of write() would)."""
    if not has_internals(transport, _STATE) or not hasattr(transport.socket, "sendmsg"):
        return lambda parts: transport.write(_joined(parts))
    queue_write = transport.write

    def write(parts: list) -> None:
        # dataBuffer[offset:] and _tempDataBuffer are what the transport has yet to send; once TLS
        # is started, its write() encrypts
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
