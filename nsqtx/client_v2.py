"""A V2 client's state (Go's clientV2): identity, negotiated settings, RDY and in-flight counts, the
output buffer, heartbeats and back-pressure.

Only the client changes its own state: the protocol (:mod:`nsqtx.protocol_v2`) calls its methods as
commands arrive, and its channel sees it as an :class:`~nsqtx.consumer.IConsumer`.
"""
from __future__ import annotations

import struct

from cryptography.x509.oid import NameOID
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from zope.interface import implementer

from nsqtx.consumer import IConsumer
from nsqtx.log import NSQLogger
from nsqtx.tcp_speedups import READ_INTO, read_into, writer_for

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
#: most bytes of frames held back while the pump hands a client its share (see start_share): what
#: Twisted itself sends at most in one call
HOLD_LIMIT = FileDescriptor.SEND_LIMIT


def frame(frame_type: int, data: bytes) -> bytes:
    return _FRAME_HEADER.pack(len(data) + 4, frame_type) + data


@implementer(IConsumer, IPushProducer)
class ClientV2:
    """One connected client. Frames go to an output buffer that is sent with one write: responses
    and errors at the end of the chunk being read (or at once outside one); messages when the buffer
    passes output_buffer_size, when the client has no RDY left, when the channel's pump ends its
    slice with this client, or when output_buffer_timeout has passed."""

    def __init__(self, node, transport, number: int):
        self.node = node
        self.clock = node.clock
        self.transport = transport
        options = node.options
        self.number = number
        peer = transport.getPeer()
        host = getattr(peer, "host", "")
        self.remote_address = "%s:%s" % (host, getattr(peer, "port", ""))
        self.client_id = self.hostname = host
        self.user_agent = ""
        self.state = STATE_INIT
        #: when it connected, and when it last sent anything (read lazily by the idle check)
        self.connect_time = self.last_read = self.clock.seconds()
        self.heartbeat_interval = options.client_timeout / 2
        self.output_buffer_size = DEFAULT_OUTPUT_BUFFER_SIZE
        self.output_buffer_timeout = options.output_buffer_timeout
        self.msg_timeout = options.msg_timeout
        self.sample_rate = 0
        #: negotiated in IDENTIFY
        self.tls = False
        self.snappy = False
        self.deflate = False
        #: AUTH's secret, and what the auth server granted for it (nsqtx.auth.AuthState)
        self.auth_secret = ""
        self.auth_state = None
        self.channel = None
        self.ready_count = 0
        self.in_flight_count = 0
        self.message_count = 0
        self.finish_count = 0
        self.requeue_count = 0
        self.timeout_count = 0
        self.pub_counts = {}
        self.can_receive = True
        self.closed = False
        #: while the TLS handshake runs: the TLS layer holds our writes back and pauses us meanwhile,
        #: but the handshake needs the connection read
        self._handshaking = False
        self._wbuf = []
        #: bytes in the output buffer since its last flush
        self._wsize = 0
        #: while the pump hands us a share, and whether a flush waits for its end
        self._holding = False
        self._flush_due = False
        #: while a chunk is read: responses wait for its end, and so does asking the channel for more
        self._reading = False
        self._response_pending = False
        self._pump_due = False
        self._flush_timer = None
        self._heartbeat = None
        self._idle_timer = None
        #: the one function every byte to the client goes through
        self._write = writer_for(transport)
        if READ_INTO:
            read_into(transport)
        transport.registerProducer(self, True)
        self._start_heartbeats()

    def __str__(self) -> str:
        return self.remote_address or "client-%d" % self.number

    # -- what the commands change

    def identified(self, client_id: str, hostname: str, user_agent: str, sample_rate: int, settings) -> None:
        """IDENTIFY: who it is, the share of its channel's messages it wants delivered (0: all), and
        the settings negotiated (see :func:`nsqtx.identify.negotiate`)."""
        self.client_id = client_id
        self.hostname = hostname
        self.user_agent = user_agent
        self.sample_rate = sample_rate
        heartbeat_interval, self.output_buffer_size, self.output_buffer_timeout, self.msg_timeout = settings
        if heartbeat_interval != self.heartbeat_interval:
            self.heartbeat_interval = heartbeat_interval
            self._start_heartbeats()

    def start_tls(self, context_factory) -> None:
        """From here on the connection is TLS (the server's side of the handshake). What was written
        before goes out in plain text first, as nsqd's IDENTIFY response does."""
        self._handshaking = True
        self.transport.startTLS(context_factory)
        self.tls = True

    def handshake_done(self) -> None:
        self._handshaking = False

    def has_authorizations(self) -> bool:
        return self.auth_state is not None and bool(self.auth_state.authorizations)

    def hold_input(self) -> None:
        """Stop reading the client (its AUTH waits for an auth server)."""
        self.transport.pauseProducing()

    def release_input(self) -> None:
        self.transport.resumeProducing()

    def tls_state(self):
        """(cipher suite, protocol version) once the TLS handshake is done, as nsqd names the
        version ("TLS1.2"); the cipher suite as OpenSSL names it. Empty strings without TLS."""
        if not self.tls:
            return "", ""
        connection = self.transport.getHandle()
        version = connection.get_protocol_version_name() or ""
        return connection.get_cipher_name() or "", version.replace("TLSv", "TLS")

    def peer_common_name(self) -> str:
        """The common name of the client's certificate, if it sent one over TLS."""
        certificate = self.transport.getPeerCertificate() if self.tls else None
        if certificate is None:
            return ""
        names = certificate.to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return names[0].value if names else ""

    def compress_with(self, codec) -> None:
        """From here on every flush goes out compressed by `codec` (nsqtx.compression)."""
        write = self._write
        self._write = lambda parts: write([codec.encode(parts)])
        self.snappy = codec.name == "snappy"
        self.deflate = codec.name == "deflate"

    def subscribed(self, channel) -> None:
        self.state = STATE_SUBSCRIBED
        self.channel = channel

    def set_ready(self, count: int) -> None:
        """RDY: a larger count asks the channel for more at the end of the chunk; a smaller one that
        leaves no room sends what waits at once."""
        if count > self.ready_count:
            self._pump_due = True
        self.ready_count = count
        if self.in_flight_count >= count:
            self.flush()

    def start_closing(self) -> None:
        """CLS: nothing more is delivered; what is in flight may still be answered."""
        self.ready_count = 0
        self.state = STATE_CLOSING

    def finished(self, count: int) -> None:
        """`count` messages were FINed: their room is asked to be filled at the end of the chunk."""
        self.in_flight_count -= count
        self.finish_count += count
        self._pump_due = True

    def requeued(self) -> None:
        self.in_flight_count -= 1
        self.requeue_count += 1
        self._pump_due = True

    def published(self, topic_name: str, count: int) -> None:
        self.pub_counts[topic_name] = self.pub_counts.get(topic_name, 0) + count

    # -- reading

    def reading(self) -> None:
        """A chunk is being read: until read_done, responses wait so they go out in one write."""
        self.last_read = self.clock.seconds()
        self._reading = True

    def read_done(self) -> None:
        """The chunk is read: ask the channel for more if room was freed, then send the responses."""
        self._reading = False
        if self._pump_due:
            self._pump_due = False
            self._ask_for_more()
        if self._response_pending:
            self._response_pending = False
            self.flush()

    def _ask_for_more(self) -> None:
        """The one place a client starts its channel's pump."""
        if self.channel is not None:
            self.channel.pump()

    # -- connection lifecycle

    def connection_lost(self) -> None:
        self.closed = True
        self.can_receive = False
        self._stop_timers()
        if self.channel is not None:
            self.channel.remove_client(self)

    def close(self) -> None:
        """Flush what is buffered, then close; used for fatal errors, shutdown and deleted channels."""
        if self.closed:
            return
        self.closed = True
        self.can_receive = False
        self._stop_timers()
        self.flush()
        # a TLS connection closes only once its producer is gone
        self.transport.unregisterProducer()
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
        self._heartbeat = LoopingCall(self.send_response, HEARTBEAT)
        self._heartbeat.clock = self.clock
        self._heartbeat.start(interval, now=False)
        self._idle_timer = self.clock.callLater(2 * interval, self._check_idle)

    def _check_idle(self) -> None:
        """nsqd closes a client that sent nothing for two heartbeat intervals; the timer is moved
        lazily here rather than at every read."""
        limit = 2 * self.heartbeat_interval
        silent = self.clock.seconds() - self.last_read
        if silent >= limit:
            self._idle_timer = None
            log.warn("PROTOCOL(V2): [{client}] closing: no data for {secs:.1f}s",
                     client=self.remote_address, secs=silent)
            self.close()
        else:
            self._idle_timer = self.clock.callLater(limit - silent, self._check_idle)

    # -- responses

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
        if self._reading:
            self._response_pending = True
        else:
            self.flush()

    # -- IConsumer: what the channel asks of it

    def room(self) -> int:
        room = self.ready_count - self.in_flight_count
        return room if room > 0 and self.can_receive else 0

    def buffer_room(self) -> int:
        size = max(self.output_buffer_size, HOLD_LIMIT) if self._holding else self.output_buffer_size
        return max(size - self._wsize, 1)

    def start_share(self) -> None:
        """Until end_share, flushes wait, and the buffer may take up to HOLD_LIMIT bytes: a share from
        a backlog goes out in one system call rather than one per output buffer."""
        self._holding = True

    def deliver(self, records: bytes, start: int, end: int, count: int) -> None:
        """The frames wait in the buffer as a view of their batch, not a copy: the send copies them
        anyway."""
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

    def end_share(self, last: bool) -> None:
        """A share that ends the pump's slice goes out now: its frames would otherwise wait for the
        other subscribers' shares."""
        if last:
            self._flush_due = True
        self._holding = False
        if self._flush_due:
            self.flush()

    def timed_out(self, count: int) -> None:
        self.in_flight_count -= count
        self.timeout_count += count

    def emptied(self) -> None:
        self.in_flight_count = 0

    # -- output buffer

    def _flush_timeout(self) -> None:
        self._flush_timer = None
        self.flush()

    def flush(self) -> None:
        """The buffer list is emptied in place, not replaced, so that it stays one long-lived list."""
        wbuf = self._wbuf
        if self._holding and self._wsize < HOLD_LIMIT:
            self._flush_due = True
            return
        self._flush_due = False
        if wbuf:
            self._write(wbuf)
            wbuf.clear()
            self._wsize = 0

    # -- IPushProducer: the transport says when its buffer fills and drains

    def pauseProducing(self):
        """Stop reading this client and stop handing it messages until its output drains."""
        self.can_receive = False
        if not self._handshaking:
            self.transport.pauseProducing()

    def resumeProducing(self):
        if self.closed:
            return
        self.can_receive = True
        self.transport.resumeProducing()
        self._ask_for_more()

    def stopProducing(self):
        self.can_receive = False
