"""NSQ protocol V2: the framing of a client's stream, and the command set with its state rules, limits
and error codes, as nsqd 1.3 has them.

:class:`ProtocolV2` is a LineReceiver: command lines in line mode; for PUB, MPUB, DPUB, IDENTIFY and
AUTH, raw mode for exactly the declared 4-byte size and then that many body bytes, then line mode
again. Its dataReceived walks a whole chunk in one pass by offset, where LineReceiver's splits the
buffer at every line (a copy of the rest of the buffer per command). Every ClientError a command
raises becomes an error frame in :meth:`ProtocolV2._fail`; fatal ones close this connection only.
The client's state lives in :class:`~nsqtx.client_v2.ClientV2`, which the commands drive.
"""
from __future__ import annotations

import functools
import json
import struct

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from nsqtx.auth import AuthError
from nsqtx.client_v2 import STATE_CLOSING, STATE_INIT, STATE_SUBSCRIBED, ClientV2
from nsqtx.compression import CompressionError, DeflateCodec, SnappyCodec, StreamEnded
from nsqtx.errors import ClientError, FatalClientError, QueueError
from nsqtx.goformat import base10, quote, text
from nsqtx.identify import Features, decode_identify, feature_reply, negotiate
from nsqtx.log import NSQLogger, debug_enabled
from nsqtx.message import ID_LENGTH, new_batch
from nsqtx.mpub import decode_mpub
from nsqtx.names import is_valid_channel_name, is_valid_topic_name
from nsqtx.options import TLS_NOT_REQUIRED

log = NSQLogger()

MAGIC_V2 = b"  V2"
OK = b"OK"
_INT32 = struct.Struct(">l")
_unpack_int32 = _INT32.unpack_from


@functools.lru_cache(maxsize=None)
def _size_check(command: str, limit: int, message: bool = False):
    """The check of a declared body size, with nsqd's code and wording for each command; one per
    command and limit, made once rather than at every publish."""
    if message:
        code, invalid, big = "E_BAD_MESSAGE", "invalid message body size", "message too big"
    else:
        code, invalid, big = "E_BAD_BODY", "invalid body size", "body too big"

    def check(size):
        if size <= 0:
            raise FatalClientError(code, "%s %s %d" % (command, invalid, size))
        if size > limit:
            raise FatalClientError(code, "%s %s %d > %d" % (command, big, size, limit))

    return check


@implementer(IHandshakeListener)
class ProtocolV2(LineReceiver):
    delimiter = b"\n"
    #: longest command line, as nsqd's 16 KB read buffer allows (its newline included)
    MAX_LENGTH = 16 * 1024 - 1

    def __init__(self, node, number: int):
        self.node = node
        self.clock = node.clock
        self.number = number
        self.client = None
        self._magic = False
        #: raw mode: the bytes the current reader needs, who gets them, and what arrived of them so far
        #: (kept as a list so that a large body arriving in pieces is joined once)
        self._need = 0
        self._reader = None
        self._chunks = []
        self._chunks_len = 0
        #: while the 4-byte size is read: its check, and who then gets the body
        self._check_size = None
        self._body_reader = None
        self._body_context = None
        #: the last topic name this connection published to (as sent, and decoded): already valid
        self._topic_bytes = None
        self._topic_name = None
        #: the negotiated compression (nsqtx.compression), and whether the stream just changed
        self._codec = None
        self._stream_switched = False
        #: the node's AuthClient (None: AUTH disabled); while one answers, input waits in _held
        self._auth = node.auth
        self._suspended = False
        self._replay = b""
        self._held = b""
        self._tls_required = node.options.tls_required != TLS_NOT_REQUIRED
        self._commands = {
            b"FIN": self.FIN, b"RDY": self.RDY, b"REQ": self.REQ, b"PUB": self.PUB, b"MPUB": self.MPUB,
            b"DPUB": self.DPUB, b"NOP": self.NOP, b"TOUCH": self.TOUCH, b"SUB": self.SUB, b"CLS": self.CLS,
            b"AUTH": self.AUTH, b"IDENTIFY": self.IDENTIFY,
        }

    # -- connection

    def connectionMade(self):
        self.client = ClientV2(self.node, self.transport, self.number)
        self.node.client_connected(self.client)
        log.info("TCP: new client({client})", client=self.client.remote_address)

    def handshakeCompleted(self):
        """The TLS handshake a tls_v1 IDENTIFY started is done."""
        self.client.handshake_done()

    def connectionLost(self, reason=None):
        client = self.client
        client.connection_lost()
        self.node.client_disconnected(client)
        log.info("PROTOCOL(V2): [{client}] exiting ioloop", client=client.remote_address)

    # -- framing

    def dataReceived(self, data: bytes) -> None:
        client = self.client
        if client.closed:
            return
        client.last_read = self.clock.seconds()
        if self._codec is None:
            self._received(data)
        else:
            self._decompressed(data)

    def _decompressed(self, data: bytes) -> None:
        """A compressed stream's bytes, parsed piece by piece as they decompress; garbage closes
        the connection, as a read error does in nsqd, and so does the stream's end, quietly, as end
        of file does."""
        try:
            for piece in self._codec.decode(data):
                if self.client.closed:
                    return
                self._received(piece)
        except StreamEnded:
            self.client.close()
        except CompressionError as err:
            log.error("PROTOCOL(V2): [{client}] failed to read command - {err}", client=self.client.remote_address,
                      err=err)
            self.client.close()

    def _received(self, data: bytes) -> None:
        """Plain bytes of the command stream."""
        if self._suspended:
            self._held += data
            return
        if not self.line_mode:
            self.rawDataReceived(data)
            return
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        self._parse(data)

    def rawDataReceived(self, data: bytes) -> None:
        """Bytes of a body (or of its size) that did not arrive whole with its command line: gathered
        until the reader has all it needs, then read in place, with what follows them."""
        self._chunks.append(data)
        self._chunks_len += len(data)
        if self._chunks_len < self._need:
            return
        buf = b"".join(self._chunks)
        self._chunks = []
        self._chunks_len = 0
        self._parse(buf)

    def _parse(self, buf: bytes) -> None:
        """Read `buf` from its start: lines in line mode, bodies in raw mode, switching as the
        commands ask; what is left unread waits for the next chunk. The responses go out together,
        once the chunk is read."""
        pos = 0
        if not self._magic:
            if len(buf) < 4:
                self._buffer = buf
                return
            if buf[:4] != MAGIC_V2:
                log.error("client({client}) bad protocol magic {magic!r}", client=self.client.remote_address,
                          magic=bytes(buf[:4]))
                self.client.send_error(b"E_BAD_PROTOCOL")
                self.client.close()
                return
            self._magic = True
            pos = 4
        client = self.client
        client.reading()
        end = len(buf)
        #: what followed IDENTIFY in this read, once the stream changed after it (TLS, compression)
        rest = None
        try:
            while not client.closed:
                if self.line_mode:
                    if client.channel is not None:
                        fins_end = self._finish_fins(buf, pos)
                        if fins_end != pos:
                            pos = fins_end
                            continue
                    nl = buf.find(b"\n", pos)
                    if nl < 0 or nl - pos > self.MAX_LENGTH:
                        if end - pos > self.MAX_LENGTH:
                            self.lineLengthExceeded(buf[pos:pos + self.MAX_LENGTH + 1])
                        break
                    line = buf[pos:nl]
                    pos = nl + 1
                    if line[-1:] == b"\r":
                        line = line[:-1]
                    self.lineReceived(line)
                    if self._suspended:
                        self._held = self._replay + buf[pos:]
                        pos = end
                        break
                else:
                    need = self._need
                    if end - pos < need:
                        break
                    start = pos
                    pos += need
                    self._need = 0
                    self._run(self._reader, buf, start, pos)
                    if not self._need:
                        self.setLineMode()
                    if self._stream_switched:
                        rest = buf[pos:]
                        pos = end
                        break
                    if self._suspended:
                        self._held = buf[pos:]
                        pos = end
                        break
            if pos < end and not client.closed:
                if self.line_mode:
                    self._buffer = buf[pos:]
                else:
                    self._chunks = [buf[pos:]]
                    self._chunks_len = end - pos
        finally:
            client.read_done()
        if rest is not None:
            self._stream_switched = False
            if rest and not client.closed:
                self._after_switch(rest)

    def _after_switch(self, rest: bytes) -> None:
        """Bytes that came with IDENTIFY, after it: a compressed stream's first, or, before a TLS
        handshake the client was to wait for, nothing that can be read."""
        if self.client.tls:
            log.error("PROTOCOL(V2): [{client}] data before the TLS handshake", client=self.client.remote_address)
            self.client.close()
        else:
            self._decompressed(rest)

    def _finish_fins(self, buf: bytes, pos: int) -> int:
        """FIN the messages named by the FIN lines that start at buf[pos:]; returns where the first
        other line starts (`pos` if there is none).

        A consumer's stream is mostly FINs: they are handled in a loop of their own, without the
        generic split and dispatch and without cutting out the ID, under the same rules and errors
        as FIN below (which also gets lines ending in CRLF and IDs of the wrong length)."""
        client = self.client
        finish = client.channel.finish
        done = 0
        while buf.startswith(b"FIN ", pos) and buf.find(b"\n", pos, pos + 21) == pos + 20 and buf[pos + 19] != 13:
            try:
                finish(client, buf, pos + 4)
                done += 1
            except QueueError as err:
                if b" " in buf[pos + 4:pos + 20]:
                    break  # not one ID but several parameters: FIN below refuses the line as nsqd does
                self._fail(ClientError("E_FIN_FAILED", "FIN %s failed %s" % (text(buf[pos + 4:pos + 20]), err)))
            pos += 21
        if done:
            client.finished(done)
        return pos

    def lineLengthExceeded(self, line: bytes) -> None:
        self._fail(FatalClientError("E_INVALID", "command line too long"))

    def lineReceived(self, line: bytes) -> None:
        params = line.split(b" ")
        if debug_enabled():
            log.debug("PROTOCOL(V2): [{client}] {params}", client=self.client.remote_address, params=params)
        if self._tls_required and not self.client.tls and params[0] != b"IDENTIFY":
            self._fail(FatalClientError("E_INVALID", "cannot %s in current state (TLS required)" % text(params[0])))
            return
        command = self._commands.get(params[0])
        if command is None:
            self._fail(FatalClientError("E_INVALID", "invalid command %s" % text(params[0])))
            return
        self._run(command, params)

    def _run(self, handler, *args) -> None:
        try:
            handler(*args)
        except ClientError as err:
            self._fail(err)
        except _Suspended:
            pass
        except Exception:
            log.failure("PROTOCOL(V2): [{client}] internal error", client=self.client.remote_address)
            self._fail(FatalClientError("E_INVALID", "internal error"))

    def _fail(self, err: ClientError) -> None:
        """The one place where errors become frames."""
        wire = str(err).encode("utf-8", "surrogateescape")
        log.error("[{client}] - {err}", client=self.client.remote_address, err=wire.decode("utf-8", "replace"))
        self.client.send_error(wire)
        if err.fatal:
            self._need = 0
            self.client.close()

    def _read_body(self, check_size, on_body, context=None) -> None:
        """Raw mode: a 4-byte size (checked by `check_size`), then that many bytes, given to `on_body`
        as (buffer, start, end) so that a large MPUB body is never copied out whole."""
        self._body_context = context
        self._check_size = check_size
        self._body_reader = on_body
        self._need = 4
        self._reader = self._got_size
        self.setRawMode()

    def _got_size(self, buf, start, end) -> None:
        size = _unpack_int32(buf, start)[0]
        self._check_size(size)
        self._need = size
        self._reader = self._body_reader

    # -- IDENTIFY / AUTH

    def IDENTIFY(self, params) -> None:
        if self.client.state != STATE_INIT:
            raise FatalClientError("E_INVALID", "cannot IDENTIFY in current state")
        self._read_body(_size_check("IDENTIFY", self.node.options.max_body_size), self._identify_body)

    def _identify_body(self, buf, start, end) -> None:
        client = self.client
        options = self.node.options
        data = decode_identify(buf[start:end])
        current = (client.heartbeat_interval, client.output_buffer_size, client.output_buffer_timeout,
                   client.msg_timeout)
        try:
            settings = negotiate(data, current, options)
        except ValueError as err:
            raise FatalClientError("E_BAD_BODY", "IDENTIFY %s" % err)
        client.identified(data.get("client_id", ""), data.get("hostname", ""), data.get("user_agent", ""),
                          data.get("sample_rate", 0), settings)
        log.info("[{client}] IDENTIFY: {data}", client=client.remote_address, data=data)
        if not data.get("feature_negotiation"):
            client.send_response(OK)
            return
        features = Features(data, options, self.node.tls is not None)
        client.respond_now(feature_reply(options, features, client.msg_timeout, client.output_buffer_size,
                                         client.output_buffer_timeout, client.sample_rate, self._auth is not None))
        # each upgrade, then its OK through it, in nsqd's order
        if features.tls:
            log.info("PROTOCOL(V2): [{client}] upgrading connection to TLS", client=client.remote_address)
            client.start_tls(self.node.tls)
            self._stream_switched = True
            client.respond_now(OK)
        if features.snappy:
            log.info("PROTOCOL(V2): [{client}] upgrading connection to snappy", client=client.remote_address)
            self._switch_codec(SnappyCodec())
        if features.deflate:
            log.info("PROTOCOL(V2): [{client}] upgrading connection to deflate (level {deflate_level})",
                     client=client.remote_address, deflate_level=features.deflate_level)
            self._switch_codec(DeflateCodec(features.deflate_level))

    def _switch_codec(self, codec) -> None:
        """From here on both directions are compressed: what follows IDENTIFY in this read too."""
        self._codec = codec
        self.client.compress_with(codec)
        self._stream_switched = True
        self.client.respond_now(OK)

    def AUTH(self, params) -> None:
        if self.client.state != STATE_INIT:
            raise FatalClientError("E_INVALID", "cannot AUTH in current state")
        if len(params) != 1:
            raise FatalClientError("E_INVALID", "AUTH invalid number of parameters")
        self._read_body(_size_check("AUTH", self.node.options.max_body_size), self._auth_body)

    def _auth_body(self, buf, start, end) -> None:
        client = self.client
        if client.has_authorizations():
            raise FatalClientError("E_INVALID", "AUTH already set")
        if self._auth is None:
            raise FatalClientError("E_AUTH_DISABLED", "AUTH disabled")
        client.auth_secret = text(buf[start:end])
        self._suspend(self._query_auth().addCallback(self._authed))

    def _authed(self, _) -> None:
        client = self.client
        if not client.has_authorizations():
            raise FatalClientError("E_UNAUTHORIZED", "AUTH no authorizations found")
        state = client.auth_state
        client.send_response(json.dumps({"identity": state.identity, "identity_url": state.identity_url,
                                         "permission_count": len(state.authorizations)},
                                        separators=(",", ":")).encode())

    def _query_auth(self):
        """Ask the auth servers about the client's secret; its state is replaced when they answer,
        and any failure is E_AUTH_FAILED (the reason goes to the log only, as nsqd)."""
        client = self.client

        def answered(state):
            client.auth_state = state

        def failed(failure):
            failure.trap(AuthError)
            log.warn("PROTOCOL(V2): [{client}] AUTH failed {err}", client=client.remote_address, err=failure.value)
            raise FatalClientError("E_AUTH_FAILED", "AUTH failed")

        host = client.remote_address.rpartition(":")[0]
        return self._auth.query(host, client.tls, client.peer_common_name(), client.auth_secret).addCallbacks(
            answered, failed)

    def _check_auth(self, command: str, params, topic: str, channel: str = "") -> None:
        """nsqd's CheckAuth, with auth enabled: authorisations first, asked again once expired (the
        command is then read again when they come), then the topic and channel."""
        client = self.client
        if not client.has_authorizations():
            raise FatalClientError("E_AUTH_FIRST", "AUTH required before %s" % command)
        if client.auth_state.expires <= self.clock.seconds():
            self._suspend(self._query_auth(), replay=b" ".join(params) + b"\n")
            raise _Suspended()
        if not client.auth_state.allows(topic, channel):
            raise FatalClientError("E_UNAUTHORIZED", "AUTH failed for %s on %s %s" % (command, quote(topic),
                                                                                       quote(channel)))

    # -- waiting for an auth server

    def _suspend(self, waiting, replay: bytes = b"") -> None:
        """Read nothing more of this client until `waiting` fires; then go on with `replay` (the
        command to run again) and what came meanwhile. Only this client waits."""
        self._suspended = True
        self._replay = replay
        self._held = b""
        self.client.hold_input()
        waiting.addErrback(self._failed_while_suspended).addBoth(self._resume)

    def _failed_while_suspended(self, failure) -> None:
        if failure.check(ClientError):
            self._fail(failure.value)
        else:
            log.failure("PROTOCOL(V2): [{client}] internal error", failure, client=self.client.remote_address)
            self._fail(FatalClientError("E_INVALID", "internal error"))

    def _resume(self, _) -> None:
        self._suspended = False
        held, self._held, self._replay = self._held, b"", b""
        client = self.client
        if client.closed:
            return
        client.release_input()
        if held:
            self._received(held)
        else:
            client.read_done()

    # -- consuming

    def SUB(self, params) -> None:
        client = self.client
        if client.state != STATE_INIT:
            raise FatalClientError("E_INVALID", "cannot SUB in current state")
        if client.heartbeat_interval <= 0:
            raise FatalClientError("E_INVALID", "cannot SUB with heartbeats disabled")
        if len(params) < 3:
            raise FatalClientError("E_INVALID", "SUB insufficient number of parameters")
        topic_name = text(params[1])
        if not is_valid_topic_name(topic_name):
            raise FatalClientError("E_BAD_TOPIC", "SUB topic name %s is not valid" % quote(topic_name))
        channel_name = text(params[2])
        if not is_valid_channel_name(channel_name):
            raise FatalClientError("E_BAD_CHANNEL", "SUB channel name %s is not valid" % quote(channel_name))
        if self._auth is not None:
            self._check_auth("SUB", params, topic_name, channel_name)
        try:
            channel = self.node.get_topic(topic_name).get_channel(channel_name)
            channel.add_client(client)
        except QueueError as err:
            raise FatalClientError("E_SUB_FAILED", "SUB failed %s" % err)
        client.subscribed(channel)
        client.send_response(OK)

    def RDY(self, params) -> None:
        client = self.client
        state = client.state
        if state == STATE_CLOSING:
            log.info("PROTOCOL(V2): [{client}] ignoring RDY after CLS in state ClientStateV2Closing",
                     client=client.remote_address)
            return
        if state != STATE_SUBSCRIBED:
            raise FatalClientError("E_INVALID", "cannot RDY in current state")
        count = 1
        if len(params) > 1:
            try:
                count = base10(params[1])
            except ValueError:
                raise FatalClientError("E_INVALID", "RDY could not parse count %s" % text(params[1]))
        max_rdy = self.node.options.max_rdy_count
        if count > max_rdy:
            raise FatalClientError("E_INVALID", "RDY count %d out of range 0-%d" % (count, max_rdy))
        client.set_ready(count)

    def _in_flight_command(self, params, command: str):
        """The message ID of a FIN, REQ or TOUCH, once the client may send one."""
        state = self.client.state
        if state != STATE_SUBSCRIBED and state != STATE_CLOSING:
            raise FatalClientError("E_INVALID", "cannot %s in current state" % command)
        if len(params) < (3 if command == "REQ" else 2):
            raise FatalClientError("E_INVALID", "%s insufficient number of params" % command)
        if len(params[1]) != ID_LENGTH:
            raise FatalClientError("E_INVALID", "invalid message ID")
        return params[1]

    def FIN(self, params) -> None:
        msg_id = self._in_flight_command(params, "FIN")
        client = self.client
        try:
            client.channel.finish(client, msg_id)
        except QueueError as err:
            raise ClientError("E_FIN_FAILED", "FIN %s failed %s" % (text(msg_id), err))
        client.finished(1)

    def REQ(self, params) -> None:
        msg_id = self._in_flight_command(params, "REQ")
        client = self.client
        try:
            timeout_ms = base10(params[2])
        except ValueError:
            raise FatalClientError("E_INVALID", "REQ could not parse timeout %s" % text(params[2]))
        max_req = self.node.options.max_req_timeout
        delay = min(timeout_ms, int(max_req * 1000)) / 1000.0
        try:
            client.channel.requeue(client, msg_id, delay)
        except QueueError as err:
            raise ClientError("E_REQ_FAILED", "REQ %s failed %s" % (text(msg_id), err))
        client.requeued()

    def TOUCH(self, params) -> None:
        msg_id = self._in_flight_command(params, "TOUCH")
        client = self.client
        try:
            client.channel.touch(client, msg_id)
        except QueueError as err:
            raise ClientError("E_TOUCH_FAILED", "TOUCH %s failed %s" % (text(msg_id), err))

    def CLS(self, params) -> None:
        client = self.client
        if client.state != STATE_SUBSCRIBED:
            raise FatalClientError("E_INVALID", "cannot CLS in current state")
        client.start_closing()
        client.send_response(b"CLOSE_WAIT")

    def NOP(self, params) -> None:
        pass

    # -- publishing

    def _publish_topic(self, params, command: str, min_params: int):
        """The topic's name; a publisher's usual one topic is decoded and checked only once."""
        if len(params) < min_params:
            raise FatalClientError("E_INVALID", "%s insufficient number of parameters" % command)
        raw = params[1]
        if raw == self._topic_bytes:
            return self._topic_name
        name = text(raw)
        if not is_valid_topic_name(name):
            prefix = "E_BAD_TOPIC " if command == "MPUB" else ""
            raise FatalClientError("E_BAD_TOPIC", "%s%s topic name %s is not valid" % (prefix, command, quote(name)))
        self._topic_bytes, self._topic_name = raw, name
        return name

    def _put(self, topic_name: str, bodies, last: bool, error_code: str, command: str,
             delay: float = 0.0) -> None:
        """Encode and queue new messages, then answer OK; or answer first, when the body was the
        last thing read (`last`: the answer would go out at once anyway) and nothing can refuse the
        messages any more (they stay in memory, see Topic.put_may_fail): a publisher waiting for
        each OK then sends its next publish while this one is encoded and queued."""
        client = self.client
        topic = self.node.get_topic(topic_name)
        early = last and not delay and not topic.put_may_fail(len(bodies))
        if early:
            client.respond_now(OK)
        try:
            topic.put(new_batch(self.node, bodies), delay)
        except QueueError as err:
            raise FatalClientError(error_code, "%s failed %s" % (command, err))
        client.published(topic_name, len(bodies))
        if not early:
            client.send_response(OK)

    def PUB(self, params) -> None:
        name = self._publish_topic(params, "PUB", 2)
        if self._auth is not None:
            self._check_auth("PUB", params, name)
        self._read_body(_size_check("PUB", self.node.options.max_msg_size, message=True), self._pub_body, name)

    def _pub_body(self, buf, start, end) -> None:
        self._put(self._body_context, (buf[start:end],), end == len(buf), "E_PUB_FAILED", "PUB")

    def DPUB(self, params) -> None:
        name = self._publish_topic(params, "DPUB", 3)
        if self._auth is not None:
            self._check_auth("DPUB", params, name)
        try:
            timeout_ms = base10(params[2])
        except ValueError:
            raise FatalClientError("E_INVALID", "DPUB could not parse timeout %s" % text(params[2]))
        max_req = self.node.options.max_req_timeout
        if timeout_ms > max_req * 1000:
            raise FatalClientError("E_INVALID", "DPUB timeout %d out of range 0-%d" % (timeout_ms, max_req * 1000))
        self._read_body(_size_check("DPUB", self.node.options.max_msg_size, message=True), self._dpub_body,
                        (name, timeout_ms / 1000.0))

    def _dpub_body(self, buf, start, end) -> None:
        name, delay = self._body_context
        self._put(name, (buf[start:end],), end == len(buf), "E_DPUB_FAILED", "DPUB", delay)

    def MPUB(self, params) -> None:
        name = self._publish_topic(params, "MPUB", 2)
        if self._auth is not None:
            self._check_auth("MPUB", params, name)
        self._read_body(_size_check("MPUB", self.node.options.max_body_size), self._mpub_body, name)

    def _mpub_body(self, buf, start, end) -> None:
        options = self.node.options
        bodies = decode_mpub(buf, options.max_msg_size, options.max_body_size, start=start, end=end)
        self._put(self._body_context, bodies, end == len(buf), "E_MPUB_FAILED", "MPUB")


class _Suspended(Exception):
    """The command waits for an auth server; it is read again when the answer comes."""


class V2Factory(Factory):
    """Builds one ProtocolV2 per TCP connection of a node."""

    noisy = False

    def __init__(self, node):
        self.node = node
        self._count = 0

    def buildProtocol(self, addr):
        self._count += 1
        proto = ProtocolV2(self.node, self._count)
        proto.factory = self
        return proto
