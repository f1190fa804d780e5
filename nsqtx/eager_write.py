"""Writing to a TCP transport at once instead of at the reactor's next turn.

Twisted's TCP transport queues every write until its next doWrite, so what a consumer is sent
waits for the reactor to come round; under a consume load that is every message of the pump, and
on PyPy a buffer alive when the nursery is collected is copied into the old generation (in raw
memory, for a 16 KB buffer) and stays there until a major collection. Sending at once when nothing
is queued before it lets the buffer die young and skips the transport's own join of its queue, as
asyncio's transports and Go's bufio.Writer do. What the socket does not take goes to the
transport's queue as usual, so order, flow control (IPushProducer) and error handling stay
Twisted's.

What it reads of the transport is Twisted's internal state (as in Twisted 25.5 and 26.10). A
transport without one of those attributes (a Twisted that renamed one) gets its own write() rather
than an AttributeError at every write; a test that writes more than the socket takes checks that
nothing overtakes what the transport still holds.
"""
from __future__ import annotations

from twisted.internet.tcp import Connection


#: the transport's state that the eager path reads
_STATE = ("offset", "dataBuffer", "_tempDataLen", "TLS", "connected", "disconnecting", "_writeDisconnected",
          "writeSomeData")


def eager_writer(transport):
    """A function writing bytes to `transport`: at once where it is a TCP connection with nothing
    queued, else through its write() (looked up at each call, as a caller of write() would)."""
    if not isinstance(transport, Connection) or not all(hasattr(transport, name) for name in _STATE):
        return lambda data: transport.write(data)
    queue_write = transport.write

    def write(data: bytes) -> None:
        # dataBuffer[offset:] and _tempDataBuffer are what the transport has yet to send; once TLS
        # is started, its write() encrypts
        if (transport.offset == len(transport.dataBuffer) and not transport._tempDataLen and not transport.TLS
                and transport.connected and not transport.disconnecting and not transport._writeDisconnected):
            sent = transport.writeSomeData(data)
            if not isinstance(sent, int):  # the connection is lost: leave it to the transport to find out
                sent = 0
            if sent == len(data):
                return
            if sent:
                data = data[sent:]
        queue_write(data)

    return write
