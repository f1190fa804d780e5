"""Per-connection state: negotiated settings, RDY/in-flight accounting, the output buffer, heartbeats
and back-pressure. The command set that drives it lives in :mod:`nsqtx.protocol_v2`."""
from __future__ import annotations

import struct

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from nsqtx.eager_write import eager_writer
from nsqtx.log import NSQLogger
from nsqtx.read_into import WANTED as READ_INTO, read_into

log = NSQLogger()

FRAME_TYPE_RESPONSE = 0
FRAME_TYPE_ERROR = 1
_FRAME_HEADER = struct.Struct(">lL")
HEARTBEAT = b"_heartbeat_"

#: nsqd's client states, as numbered in /stats
STATE_INIT = 0
STATE_SUBSCRIBED = 3
STATE_CLOSING = 4

DEFAULT_OUTPUT_BUFFER_SIZE = 16 * 1024
#: most bytes of flushed frames held back while the pump hands a client its share (see
#: ClientConnection.hold): what Twisted itself sends at most in one call
HOLD_LIMIT = FileDescriptor.SEND_LIMIT


def frame(frame_type: int, data: bytes) -> bytes:
    return _FRAME_HEADER.pack(len(data) + 4, frame_type) + data


@implementer(IPushProducer)
class ClientConnection(LineReceiver):
    """A connected client. Frames go to a write buffer that is flushed with one transport.write:
    at once for responses and errors, and for messages when the buffer passes output_buffer_size,
    when the client can take no more (RDY reached), when the channel's pump ends its slice with
    this client still ready (see :meth:`~nsqtx.channel.Channel._deliver`), or when
    output_buffer_timeout has passed. Flushes while the pump hands over a share wait for its end
    (see :meth:`hold`)."""

    node = None

    def __init__(self, node, client_number: int):
        self.node = node
        self.clock = node.clock
        options = node.options
        self.client_number = client_number
        self.state = STATE_INIT
        self.connect_time = 0.0
        self.remote_address = ""
        self.client_id = ""
        self.hostname = ""
        self.user_agent = ""
        self.heartbeat_interval = options.client_timeout / 2
        self.output_buffer_size = DEFAULT_OUTPUT_BUFFER_SIZE
        self.output_buffer_timeout = options.output_buffer_timeout
        self.msg_timeout = options.msg_timeout
        self.sample_rate = 0
        self.channel = None
        self.ready_count = 0
        self.in_flight_count = 0
        self.message_count = 0
        self.finish_count = 0
        self.requeue_count = 0
        self.timeout_count = 0
        self.pub_counts = {}
        #: False while the transport's buffer is full (IPushProducer) or the connection is going away
        self.can_receive = True
        self.closed = False
        self._wbuf = []
        #: bytes in the output buffer since its last flush
        self._wsize = 0
        #: while the channel's pump hands us our share (see hold), and whether a flush waits for its end
        self._holding = False
        self._flush_due = False
        #: inside dataReceived: responses wait for the end of the chunk, then go out in one write
        self._batching = False
        self._response_pending = False
        self._flush_timer = None
        self._heartbeat = None
        self._idle_timer = None
        self._last_read = 0.0

    def __str__(self) -> str:
        return self.remote_address or "client-%d" % self.client_number

    # -- connection lifecycle

    def connectionMade(self):
        peer = self.transport.getPeer()
        host = getattr(peer, "host", "")
        self.remote_address = "%s:%s" % (host, getattr(peer, "port", ""))
        self.client_id = self.hostname = host
        self.connect_time = self._last_read = self.clock.seconds()
        self.transport.registerProducer(self, True)
        self._write = eager_writer(self.transport)
        if READ_INTO:
            read_into(self.transport)
        self._start_heartbeats()
        self.node.client_connected(self)
        log.info("TCP: new client({client})", client=self.remote_address)

    def connectionLost(self, reason=None):
        self.closed = True
        self.can_receive = False
        self._stop_timers()
        if self.channel is not None:
            self.channel.remove_client(self)
        self.node.client_disconnected(self)
        log.info("PROTOCOL(V2): [{client}] exiting ioloop", client=self.remote_address)

    def close(self) -> None:
        """Flush what is buffered, then close; used for fatal errors, shutdown and deleted channels."""
        if self.closed:
            return
        self.closed = True
        self.can_receive = False
        self._stop_timers()
        self.flush()
        self.transport.loseConnection()

    def _stop_timers(self) -> None:
        for timer in (self._flush_timer, self._idle_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._flush_timer = self._idle_timer = None
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = None

    # -- heartbeats and idle detection

    def _start_heartbeats(self) -> None:
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = None
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None
        interval = self.heartbeat_interval
        if interval <= 0 or self.closed:
            return
        self._heartbeat = LoopingCall(self._send_heartbeat)
        self._heartbeat.clock = self.clock
        self._heartbeat.start(interval, now=False)
        self._idle_timer = self.clock.callLater(2 * interval, self._check_idle)

    def _send_heartbeat(self) -> None:
        self.send_response(HEARTBEAT)

    def _check_idle(self) -> None:
        """nsqd closes a client that sent nothing for two heartbeat intervals; the timer is moved
        lazily here rather than on every read."""
        limit = 2 * self.heartbeat_interval
        silent = self.clock.seconds() - self._last_read
        if silent >= limit:
            self._idle_timer = None
            log.warn("PROTOCOL(V2): [{client}] closing: no data for {secs:.1f}s",
                     client=self.remote_address, secs=silent)
            self.close()
        else:
            self._idle_timer = self.clock.callLater(limit - silent, self._check_idle)

    # -- output

    def send_response(self, data: bytes) -> None:
        self._append(frame(FRAME_TYPE_RESPONSE, data))
        self._flush_soon()

    def respond_now(self, data: bytes) -> None:
        """A response written at once, even while a chunk is being read (see ProtocolV2._put)."""
        self._append(frame(FRAME_TYPE_RESPONSE, data))
        self.flush()

    def send_error(self, text: bytes) -> None:
        self._append(frame(FRAME_TYPE_ERROR, text))
        self._flush_soon()

    def _append(self, data: bytes) -> None:
        self._wbuf.append(data)
        self._wsize += len(data)

    def _flush_soon(self) -> None:
        if self._batching:
            self._response_pending = True
        else:
            self.flush()

    def buffer_room(self) -> int:
        """How many bytes of messages fill the output buffer (at least one message's worth)."""
        size = max(self.output_buffer_size, HOLD_LIMIT) if self._holding else self.output_buffer_size
        return max(size - self._wsize, 1)

    def send_messages(self, records: bytes, start: int, end: int, count: int) -> None:
        """Deliver `count` messages whose frames lie at records[start:end] (a batch's records are
        frames, see :mod:`nsqtx.message`); called by the channel's pump with the messages already
        recorded in flight to us.

        The run is a view of the batch, not a copy: what a flush sends goes out with sendmsg or
        send, which copy it anyway (PyPy copies a view at an offset into raw memory), so a slice
        was a second copy and, on PyPy, the largest allocation left per consumed message (about
        235 B). With views, PyPy consumed 1.06-1.52x as fast (four pairs of servers, taking turns,
        every pair ahead with one consumer and with two)."""
        self.in_flight_count += count
        self.message_count += count
        self._wbuf.append(memoryview(records)[start:end])
        self._wsize += end - start
        if self._wsize >= self.output_buffer_size or self.in_flight_count >= self.ready_count:
            self.flush()
        elif self._flush_timer is None:
            if self.output_buffer_timeout > 0:
                self._flush_timer = self.clock.callLater(self.output_buffer_timeout, self._flush_timeout)
            else:
                self.flush()

    def _flush_timeout(self) -> None:
        self._flush_timer = None
        self.flush()

    def flush(self) -> None:
        """The buffer list is emptied in place, not replaced: on PyPy a list that has outlived a
        minor collection is old, and an old list let go of still counts as alive until the next
        major collection, so the young frames it last held were copied out of the nursery at the
        next minor one (raw memory for frames over a few KB, which made consuming fault in new
        pages)."""
        wbuf = self._wbuf
        if self._holding and self._wsize < HOLD_LIMIT:
            self._flush_due = True
            return
        self._flush_due = False
        if wbuf:
            self._write(wbuf)
            wbuf.clear()
            self._wsize = 0

    def hold(self) -> None:
        """Until release(), flushes wait for it, and the output buffer may take up to HOLD_LIMIT
        bytes: called by the channel's pump around the share it hands us, so that a share from a
        backlog goes out with one system call rather than one per output buffer. Frames that would
        have waited for the next flush go with it (earlier than they had to); a share that fills
        no buffer waits for the timeout as before. With one send() per 16 KB buffer, those calls
        were a third of the server's time consuming on PyPy (perf); holding made consuming 9-15%
        faster on CPython and 5-9% on PyPy (medians, four pairs of servers, taking turns)."""
        self._holding = True

    def release(self) -> None:
        self._holding = False
        if self._flush_due:
            self.flush()

    # -- IPushProducer: the transport tells us when its buffer fills and drains

    def pauseProducing(self):
        """Stop reading this client and stop handing it messages until its output drains."""
        self.can_receive = False
        self.transport.pauseProducing()

    def resumeProducing(self):
        if self.closed:
            return
        self.can_receive = True
        self.transport.resumeProducing()
        if self.channel is not None:
            self.channel.pump()

    def stopProducing(self):
        self.can_receive = False
