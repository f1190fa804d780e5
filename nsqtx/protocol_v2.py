"""NSQ protocol V2: the command set, its state rules, limits and error codes, as nsqd 1.3 has them.

The parser is a LineReceiver whose dataReceived walks a whole chunk in one pass: command lines in
line mode, and for PUB/MPUB/DPUB/IDENTIFY/AUTH a raw read of exactly the declared 4-byte size and then
that many body bytes. Every ClientError raised by a command becomes an error frame here, in
:meth:`ProtocolV2._fail`; fatal ones close this connection only.
"""
from __future__ import annotations

import json
import struct

from twisted.internet.protocol import Factory

from nsqtx.client import STATE_CLOSING, STATE_INIT, STATE_SUBSCRIBED, ClientConnection
from nsqtx.errors import ClientError, FatalClientError, QueueError
from nsqtx.log import NSQLogger, debug_enabled
from nsqtx.message import ID_LENGTH, Message
from nsqtx.names import is_valid_channel_name, is_valid_topic_name
from nsqtx.version import NSQD_VERSION

log = NSQLogger()

MAGIC_V2 = b"  V2"
OK = b"OK"
_INT32 = struct.Struct(">l")
_unpack_int32 = _INT32.unpack_from


def _base10(value: bytes) -> int:
    """nsqd's ByteToBase10: ASCII digits only (no sign); the empty string is 0."""
    if value and not value.isdigit():
        raise ValueError(value)
    return int(value) if value else 0


def _message_id(value: bytes) -> bytes:
    if len(value) != ID_LENGTH:
        raise FatalClientError("E_INVALID", "invalid message ID")
    return value


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def _quote(value: str) -> str:
    """Go's %q, close enough for names that failed validation."""
    out = ['"']
    for ch in value:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0xDC80 <= o <= 0xDCFF:
            out.append("\\x%02x" % (o - 0xDC00))
        elif o < 0x20 or o == 0x7f:
            out.append({7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}.get(o, "\\x%02x" % o))
        elif not ch.isprintable():
            out.append("\\u%04x" % o if o < 0x10000 else "\\U%08x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# IDENTIFY fields and the JSON type nsqd's struct decoding demands of each.
_IDENTIFY_FIELDS = {
    "client_id": str, "hostname": str, "user_agent": str,
    "heartbeat_interval": int, "output_buffer_size": int, "output_buffer_timeout": int,
    "msg_timeout": int, "sample_rate": int, "deflate_level": int,
    "feature_negotiation": bool, "tls_v1": bool, "deflate": bool, "snappy": bool,
    "topology_region": str, "topology_zone": str,
}


def _decode_identify(body: bytes) -> dict:
    def no_constants(name):
        raise ValueError(name)
    try:
        data = json.loads(body.decode("utf-8", "replace"), parse_constant=no_constants)
    except (ValueError, RecursionError):
        data = False
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FatalClientError("E_BAD_BODY", "IDENTIFY failed to decode JSON body")
    out = {}
    for key, kind in _IDENTIFY_FIELDS.items():
        value = data.get(key)
        if value is None:
            continue
        if kind is int:
            bits = 31 if key == "sample_rate" else 63
            ok = isinstance(value, int) and not isinstance(value, bool) and -(1 << bits) <= value < (1 << bits)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise FatalClientError("E_BAD_BODY", "IDENTIFY failed to decode JSON body")
        out[key] = value
    return out


class ProtocolV2(ClientConnection):
    MAX_LENGTH = 16 * 1024

    def __init__(self, node, client_number: int):
        ClientConnection.__init__(self, node, client_number)
        self._magic = False
        #: unparsed input: kept as a list of chunks so a large body arriving in pieces is joined once
        self._chunks = []
        self._chunks_len = 0
        #: raw mode: bytes the current body reader needs (0 in line mode) and who gets them
        self._need = 0
        self._reader = None
        self._body_context = None
        self._pump_pending = False
        self._commands = {
            b"FIN": self.FIN, b"RDY": self.RDY, b"REQ": self.REQ, b"PUB": self.PUB, b"MPUB": self.MPUB,
            b"DPUB": self.DPUB, b"NOP": self.NOP, b"TOUCH": self.TOUCH, b"SUB": self.SUB, b"CLS": self.CLS,
            b"AUTH": self.AUTH, b"IDENTIFY": self.IDENTIFY,
        }

    # -- parsing

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        self._last_read = self.clock.seconds()
        if self._chunks:
            self._chunks.append(data)
            self._chunks_len += len(data)
            if self._chunks_len < self._need:
                return
            buf = b"".join(self._chunks)
            self._chunks = []
            self._chunks_len = 0
        else:
            buf = data
        pos = 0
        if not self._magic:
            if len(buf) < 4:
                self._keep(buf)
                return
            if buf[:4] != MAGIC_V2:
                log.error("client({client}) bad protocol magic {magic!r}", client=self.remote_address,
                          magic=bytes(buf[:4]))
                self.send_error(b"E_BAD_PROTOCOL")
                self.close()
                return
            self._magic = True
            pos = 4
        self._batching = True
        try:
            end = len(buf)
            while not self.closed:
                need = self._need
                if need:
                    if end - pos < need:
                        break
                    chunk = buf[pos:pos + need]
                    pos += need
                    self._need = 0
                    self._run(self._reader, chunk)
                else:
                    nl = buf.find(b"\n", pos)
                    if nl < 0 or nl - pos >= self.MAX_LENGTH:
                        if end - pos >= self.MAX_LENGTH:
                            self._fail(FatalClientError("E_INVALID", "command line too long"))
                        break
                    line = buf[pos:nl]
                    pos = nl + 1
                    if line[-1:] == b"\r":
                        line = line[:-1]
                    self.lineReceived(line)
        finally:
            self._batching = False
        if pos < len(buf) and not self.closed:
            self._keep(buf[pos:])
        if self._pump_pending:
            self._pump_pending = False
            if self.channel is not None:
                self.channel.pump()
        if self._response_pending:
            self._response_pending = False
            self.flush()

    def _keep(self, rest: bytes) -> None:
        self._chunks = [rest]
        self._chunks_len = len(rest)

    def lineReceived(self, line: bytes) -> None:
        params = line.split(b" ")
        if debug_enabled():
            log.debug("PROTOCOL(V2): [{client}] {params}", client=self.remote_address, params=params)
        command = self._commands.get(params[0])
        if command is None:
            self._fail(FatalClientError("E_INVALID", "invalid command %s" % _text(params[0])))
            return
        self._run(command, params)

    def _run(self, handler, arg) -> None:
        try:
            handler(arg)
        except ClientError as err:
            self._fail(err)
        except Exception:
            log.failure("PROTOCOL(V2): [{client}] internal error", client=self.remote_address)
            self._fail(FatalClientError("E_INVALID", "internal error"))

    def _fail(self, err: ClientError) -> None:
        """The one place where errors become frames."""
        wire = str(err).encode("utf-8", "surrogateescape")
        log.error("[{client}] - {err}", client=self.remote_address, err=wire.decode("utf-8", "replace"))
        self.send_error(wire)
        if err.fatal:
            self._need = 0
            self.close()

    def _read_body(self, check_size, on_body, context=None) -> None:
        """Switch to raw mode: a 4-byte size (checked by `check_size`), then that many bytes."""
        self._body_context = context

        def got_size(raw):
            size = _unpack_int32(raw)[0]
            check_size(size)
            self._need = size
            self._reader = on_body

        self._need = 4
        self._reader = got_size

    # -- IDENTIFY / AUTH

    def IDENTIFY(self, params) -> None:
        if self.state != STATE_INIT:
            raise FatalClientError("E_INVALID", "cannot IDENTIFY in current state")
        max_body = self.node.options.max_body_size

        def check(size):
            if size > max_body:
                raise FatalClientError("E_BAD_BODY", "IDENTIFY body too big %d > %d" % (size, max_body))
            if size <= 0:
                raise FatalClientError("E_BAD_BODY", "IDENTIFY invalid body size %d" % size)

        self._read_body(check, self._identify_body)

    def _identify_body(self, body) -> None:
        data = _decode_identify(bytes(body))
        options = self.node.options
        try:
            self._apply_identify(data, options)
        except ValueError as err:
            raise FatalClientError("E_BAD_BODY", "IDENTIFY %s" % err)
        log.info("[{client}] IDENTIFY: {data}", client=self.remote_address, data=data)
        if not data.get("feature_negotiation"):
            self.send_response(OK)
            return
        # TLS, snappy, deflate and sampling are not implemented yet: they are reported off, never
        # faked, so a client that asked for them carries on as with an nsqd that has them disabled.
        self.send_response(json.dumps({
            "max_rdy_count": options.max_rdy_count,
            "version": NSQD_VERSION,
            "max_msg_timeout": int(options.max_msg_timeout * 1000),
            "msg_timeout": int(self.msg_timeout * 1000),
            "tls_v1": False,
            "deflate": False,
            "deflate_level": min(6, options.max_deflate_level),
            "max_deflate_level": options.max_deflate_level,
            "snappy": False,
            "sample_rate": 0,
            "auth_required": False,
            "output_buffer_size": self.output_buffer_size,
            "output_buffer_timeout": int(self.output_buffer_timeout * 1000),
            "topology_region": "",
            "topology_zone": "",
        }, separators=(",", ":")).encode())

    def _apply_identify(self, data: dict, options) -> None:
        """nsqd's bounds: 0 keeps the default, -1 disables where nsqd allows it."""
        self.client_id = data.get("client_id", "")
        self.hostname = data.get("hostname", "")
        self.user_agent = data.get("user_agent", "")

        heartbeat = data.get("heartbeat_interval", 0)
        if heartbeat == -1:
            heartbeat_interval = 0.0
        elif heartbeat == 0:
            heartbeat_interval = self.heartbeat_interval
        elif 1000 <= heartbeat <= options.max_heartbeat_interval * 1000:
            heartbeat_interval = heartbeat / 1000.0
        else:
            raise ValueError("heartbeat interval (%d) is invalid" % heartbeat)

        timeout = data.get("output_buffer_timeout", 0)
        output_buffer_timeout = self.output_buffer_timeout
        if timeout == -1:
            output_buffer_timeout = 0.0
        elif timeout == 0:
            pass
        elif options.min_output_buffer_timeout * 1000 <= timeout <= options.max_output_buffer_timeout * 1000:
            output_buffer_timeout = timeout / 1000.0
        else:
            raise ValueError("output buffer timeout (%d) is invalid" % timeout)

        size = data.get("output_buffer_size", 0)
        output_buffer_size = self.output_buffer_size
        if size == -1:
            output_buffer_size = 1
            output_buffer_timeout = 0.0
        elif size == 0:
            pass
        elif 64 <= size <= options.max_output_buffer_size:
            output_buffer_size = size
        else:
            raise ValueError("output buffer size (%d) is invalid" % size)

        sample_rate = data.get("sample_rate", 0)
        if not 0 <= sample_rate <= 99:
            raise ValueError("sample rate (%d) is invalid" % sample_rate)

        msg_timeout = data.get("msg_timeout", 0)
        if msg_timeout == 0:
            msg_timeout_s = self.msg_timeout
        elif 1000 <= msg_timeout <= options.max_msg_timeout * 1000:
            msg_timeout_s = msg_timeout / 1000.0
        else:
            raise ValueError("msg timeout (%d) is invalid" % msg_timeout)

        self.output_buffer_size = output_buffer_size
        self.output_buffer_timeout = output_buffer_timeout
        self.msg_timeout = msg_timeout_s
        if heartbeat_interval != self.heartbeat_interval:
            self.heartbeat_interval = heartbeat_interval
            self._start_heartbeats()

    def AUTH(self, params) -> None:
        if self.state != STATE_INIT:
            raise FatalClientError("E_INVALID", "cannot AUTH in current state")
        if len(params) != 1:
            raise FatalClientError("E_INVALID", "AUTH invalid number of parameters")
        max_body = self.node.options.max_body_size

        def check(size):
            if size > max_body:
                raise FatalClientError("E_BAD_BODY", "AUTH body too big %d > %d" % (size, max_body))
            if size <= 0:
                raise FatalClientError("E_BAD_BODY", "AUTH invalid body size %d" % size)

        self._read_body(check, self._auth_body)

    def _auth_body(self, body) -> None:
        raise FatalClientError("E_AUTH_DISABLED", "AUTH disabled")

    # -- consuming

    def SUB(self, params) -> None:
        if self.state != STATE_INIT:
            raise FatalClientError("E_INVALID", "cannot SUB in current state")
        if self.heartbeat_interval <= 0:
            raise FatalClientError("E_INVALID", "cannot SUB with heartbeats disabled")
        if len(params) < 3:
            raise FatalClientError("E_INVALID", "SUB insufficient number of parameters")
        topic_name = _text(params[1])
        if not is_valid_topic_name(topic_name):
            raise FatalClientError("E_BAD_TOPIC", "SUB topic name %s is not valid" % _quote(topic_name))
        channel_name = _text(params[2])
        if not is_valid_channel_name(channel_name):
            raise FatalClientError("E_BAD_CHANNEL", "SUB channel name %s is not valid" % _quote(channel_name))
        try:
            channel = self.node.get_topic(topic_name).get_channel(channel_name)
            channel.add_client(self)
        except QueueError as err:
            raise FatalClientError("E_SUB_FAILED", "SUB failed %s" % err)
        self.state = STATE_SUBSCRIBED
        self.channel = channel
        self.send_response(OK)

    def RDY(self, params) -> None:
        state = self.state
        if state == STATE_CLOSING:
            log.info("PROTOCOL(V2): [{client}] ignoring RDY after CLS in state ClientStateV2Closing",
                     client=self.remote_address)
            return
        if state != STATE_SUBSCRIBED:
            raise FatalClientError("E_INVALID", "cannot RDY in current state")
        count = 1
        if len(params) > 1:
            try:
                count = _base10(params[1])
            except ValueError:
                raise FatalClientError("E_INVALID", "RDY could not parse count %s" % _text(params[1]))
        max_rdy = self.node.options.max_rdy_count
        if count > max_rdy:
            raise FatalClientError("E_INVALID", "RDY count %d out of range 0-%d" % (count, max_rdy))
        if count > self.ready_count:
            self._pump_pending = True
        self.ready_count = count
        if self.in_flight_count >= count:
            self.flush()

    def FIN(self, params) -> None:
        if self.state != STATE_SUBSCRIBED and self.state != STATE_CLOSING:
            raise FatalClientError("E_INVALID", "cannot FIN in current state")
        if len(params) < 2:
            raise FatalClientError("E_INVALID", "FIN insufficient number of params")
        msg_id = _message_id(params[1])
        try:
            self.channel.finish(self, msg_id)
        except QueueError as err:
            raise ClientError("E_FIN_FAILED", "FIN %s failed %s" % (_text(msg_id), err))
        self._pump_pending = True

    def REQ(self, params) -> None:
        if self.state != STATE_SUBSCRIBED and self.state != STATE_CLOSING:
            raise FatalClientError("E_INVALID", "cannot REQ in current state")
        if len(params) < 3:
            raise FatalClientError("E_INVALID", "REQ insufficient number of params")
        msg_id = _message_id(params[1])
        try:
            timeout_ms = _base10(params[2])
        except ValueError:
            raise FatalClientError("E_INVALID", "REQ could not parse timeout %s" % _text(params[2]))
        max_req = self.node.options.max_req_timeout
        delay = min(timeout_ms, int(max_req * 1000)) / 1000.0
        try:
            self.channel.requeue(self, msg_id, delay)
        except QueueError as err:
            raise ClientError("E_REQ_FAILED", "REQ %s failed %s" % (_text(msg_id), err))
        self._pump_pending = True

    def TOUCH(self, params) -> None:
        if self.state != STATE_SUBSCRIBED and self.state != STATE_CLOSING:
            raise FatalClientError("E_INVALID", "cannot TOUCH in current state")
        if len(params) < 2:
            raise FatalClientError("E_INVALID", "TOUCH insufficient number of params")
        msg_id = _message_id(params[1])
        try:
            self.channel.touch(self, msg_id)
        except QueueError as err:
            raise ClientError("E_TOUCH_FAILED", "TOUCH %s failed %s" % (_text(msg_id), err))

    def CLS(self, params) -> None:
        if self.state != STATE_SUBSCRIBED:
            raise FatalClientError("E_INVALID", "cannot CLS in current state")
        self.ready_count = 0
        self.state = STATE_CLOSING
        self.send_response(b"CLOSE_WAIT")

    def NOP(self, params) -> None:
        pass

    # -- publishing

    def _publish_topic(self, params, command: str, min_params: int):
        if len(params) < min_params:
            raise FatalClientError("E_INVALID", "%s insufficient number of parameters" % command)
        name = _text(params[1])
        if not is_valid_topic_name(name):
            prefix = "E_BAD_TOPIC " if command == "MPUB" else ""
            raise FatalClientError("E_BAD_TOPIC", "%s%s topic name %s is not valid" % (prefix, command, _quote(name)))
        return name

    def _message_size_check(self, command: str):
        max_size = self.node.options.max_msg_size

        def check(size):
            if size <= 0:
                raise FatalClientError("E_BAD_MESSAGE", "%s invalid message body size %d" % (command, size))
            if size > max_size:
                raise FatalClientError("E_BAD_MESSAGE", "%s message too big %d > %d" % (command, size, max_size))

        return check

    def _put(self, topic_name: str, messages, error_code: str, command: str) -> None:
        try:
            self.node.get_topic(topic_name).put(messages)
        except QueueError as err:
            raise FatalClientError(error_code, "%s failed %s" % (command, err))
        self.pub_counts[topic_name] = self.pub_counts.get(topic_name, 0) + len(messages)
        self.send_response(OK)

    def PUB(self, params) -> None:
        name = self._publish_topic(params, "PUB", 2)
        self._read_body(self._message_size_check("PUB"), self._pub_body, name)

    def _pub_body(self, body) -> None:
        node = self.node
        msg = Message(node.guid.next_id(), bytes(body), node.now_ns())
        self._put(self._body_context, [msg], "E_PUB_FAILED", "PUB")

    def DPUB(self, params) -> None:
        name = self._publish_topic(params, "DPUB", 3)
        try:
            timeout_ms = _base10(params[2])
        except ValueError:
            raise FatalClientError("E_INVALID", "DPUB could not parse timeout %s" % _text(params[2]))
        max_req = self.node.options.max_req_timeout
        if timeout_ms > max_req * 1000:
            raise FatalClientError("E_INVALID", "DPUB timeout %d out of range 0-%d" % (timeout_ms, max_req * 1000))
        self._read_body(self._message_size_check("DPUB"), self._dpub_body, (name, timeout_ms / 1000.0))

    def _dpub_body(self, body) -> None:
        name, delay = self._body_context
        node = self.node
        msg = Message(node.guid.next_id(), bytes(body), node.now_ns(), 0, delay)
        self._put(name, [msg], "E_DPUB_FAILED", "DPUB")

    def MPUB(self, params) -> None:
        name = self._publish_topic(params, "MPUB", 2)
        max_body = self.node.options.max_body_size

        def check(size):
            if size <= 0:
                raise FatalClientError("E_BAD_BODY", "MPUB invalid body size %d" % size)
            if size > max_body:
                raise FatalClientError("E_BAD_BODY", "MPUB body too big %d > %d" % (size, max_body))

        self._read_body(check, self._mpub_body, name)

    def _mpub_body(self, body) -> None:
        messages = decode_mpub(body, self.node, self.node.options.max_msg_size, self.node.options.max_body_size)
        self._put(self._body_context, messages, "E_MPUB_FAILED", "MPUB")


def decode_mpub(body, node, max_msg_size: int, max_body_size: int):
    """Split an MPUB body (count, then size-prefixed messages) into new messages, all or nothing.

    Shared with HTTP's /mpub?binary=true, which reports the same codes."""
    end = len(body)
    if end < 4:
        raise FatalClientError("E_BAD_BODY", "MPUB failed to read message count")
    count = _unpack_int32(body, 0)[0]
    if count <= 0 or count > (max_body_size - 4) // 5:
        raise FatalClientError("E_BAD_BODY", "MPUB invalid message count %d" % count)
    next_id = node.guid.next_id
    timestamp = node.now_ns()
    messages = []
    append = messages.append
    pos = 4
    for i in range(count):
        if pos + 4 > end:
            raise FatalClientError("E_BAD_MESSAGE", "MPUB failed to read message(%d) body size" % i)
        size = _unpack_int32(body, pos)[0]
        pos += 4
        if size <= 0:
            raise FatalClientError("E_BAD_MESSAGE", "MPUB invalid message(%d) body size %d" % (i, size))
        if size > max_msg_size:
            raise FatalClientError("E_BAD_MESSAGE", "MPUB message too big %d > %d" % (size, max_msg_size))
        if pos + size > end:
            raise FatalClientError("E_BAD_MESSAGE", "MPUB failed to read message body")
        append(Message(next_id(), bytes(body[pos:pos + size]), timestamp))
        pos += size
    if pos != end:
        raise FatalClientError("E_BAD_BODY", "MPUB body has %d bytes after the last message" % (end - pos))
    return messages


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


__all__ = ["ProtocolV2", "V2Factory", "decode_mpub", "STATE_INIT", "STATE_SUBSCRIBED", "STATE_CLOSING"]
