"""nsqlookupd's TCP protocol V1, which nsqd nodes speak to register their topics and channels, as
Go nsqlookupd 1.3 has it (tcp.go, lookup_protocol_v1.go).

The stream starts with the magic ``"  V1"``; then each command is a line (trimmed of white space and
split at single spaces), IDENTIFY's followed by a 4-byte big-endian size and that many bytes of
JSON. Each answer is a 4-byte big-endian size and the bytes, with no frame type; an error is
answered with its text (``E_INVALID ...``) and, since every error in V1 is fatal, the connection
closes. When a connection ends, the node loses every registration it made through it.

Where Go reads without bound, a command line is at most :data:`MAX_LINE_LENGTH` bytes and an
IDENTIFY body at most :data:`MAX_IDENTIFY_SIZE` (a negative size, which would crash Go, is refused
the same way), so that no client can make the server buffer more.
"""
from __future__ import annotations

import json
import socket
import struct

from twisted.internet.address import IPv6Address
from twisted.internet.protocol import Factory, Protocol

from nsqtx.durations import format_duration
from nsqtx.errors import FatalClientError
from nsqtx.goformat import text
from nsqtx.http_responses import encode_json
from nsqtx.log import NSQLogger
from nsqtx.lookupd.registration_db import (CLIENT, PeerInfo, Producer, channel_registration,
                                           topic_registration)
from nsqtx.names import EPHEMERAL_SUFFIX, is_valid_channel_name, is_valid_topic_name
from nsqtx.version import NSQLOOKUPD_VERSION

log = NSQLogger()

MAGIC_V1 = b"  V1"
OK = b"OK"
#: longest command line, its newline excluded (a valid one is under 150 bytes)
MAX_LINE_LENGTH = 16 * 1024
#: largest IDENTIFY body (nsqd's is under 300 bytes)
MAX_IDENTIFY_SIZE = 64 * 1024
_SIZE = struct.Struct(">l")
#: what Go's strings.TrimSpace trims: Unicode's white space (Python's str.strip would also take
#: the ASCII separators 0x1c-0x1f)
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
           "\u2028\u2029\u202f\u205f\u3000"

_MAGIC, _LINE, _SIZE_FIELD, _BODY = "magic", "line", "size", "body"


def client_address(address) -> str:
    """A peer as Go's net.Addr.String() writes it ("[::1]:4150" for IPv6): the producer's id."""
    if isinstance(address, IPv6Address):
        return "[%s]:%d" % (address.host, address.port)
    return "%s:%d" % (address.host, address.port)


class ProtocolV1(Protocol):
    """One nsqd node's connection. Bytes are gathered without copying until a whole line, size or
    body can be there, so that a client dribbling bytes costs no more than one sending them at once."""

    def __init__(self, lookupd):
        self.lookupd = lookupd
        self.db = lookupd.db
        #: what the node said of itself in IDENTIFY; None before
        self.peer_info = None
        self.address = ""
        self.closed = False
        self._state = _MAGIC
        #: bytes the current state needs before parsing can go on (a line's need is its newline)
        self._need = len(MAGIC_V1)
        self._pending = []
        self._pending_length = 0
        self._commands = {"PING": self.PING, "IDENTIFY": self.IDENTIFY, "REGISTER": self.REGISTER,
                          "UNREGISTER": self.UNREGISTER}

    # -- connection

    def connectionMade(self):
        self.address = client_address(self.transport.getPeer())
        log.info("TCP: new client({client})", client=self.address)
        self.lookupd.clients.add(self)

    def connectionLost(self, reason=None):
        log.info("PROTOCOL(V1): [{client}] exiting ioloop", client=self.address)
        self.closed = True
        self._unregister_all()
        self.lookupd.clients.discard(self)

    def close(self) -> None:
        """No more is read; the node's registrations go at once, as when Go's read loop ends."""
        self.closed = True
        self._pending = []
        self._unregister_all()
        self.transport.loseConnection()

    def _unregister_all(self) -> None:
        info, self.peer_info = self.peer_info, None
        if info is None:
            return
        db = self.db
        for registration in db.lookup_registrations(info.id):
            removed, _ = db.remove_producer(registration, info.id)
            if removed:
                self._log_db("UNREGISTER", registration)

    # -- framing

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        self._pending.append(data)
        self._pending_length += len(data)
        if self._pending_length < self._need:
            return
        if self._state == _LINE and b"\n" not in data and self._pending_length <= MAX_LINE_LENGTH:
            return
        buf = b"".join(self._pending)
        pos = self._parse(buf)
        if self.closed:
            return
        self._pending = [buf[pos:]] if pos < len(buf) else []
        self._pending_length = len(buf) - pos

    def _parse(self, buf: bytes) -> int:
        """Read what `buf` holds whole, from its start; returns where the unread rest begins."""
        pos = 0
        end = len(buf)
        while not self.closed:
            if self._state == _LINE:
                newline = buf.find(b"\n", pos, pos + MAX_LINE_LENGTH + 1)
                if newline < 0:
                    if end - pos > MAX_LINE_LENGTH:
                        self._fail(FatalClientError("E_INVALID", "command line too long"))
                    break
                line = buf[pos:newline]
                pos = newline + 1
                self._run(self._command, line)
            elif end - pos < self._need:
                break
            else:
                start = pos
                pos += self._need
                self._run(self._read, buf[start:pos])
        return pos

    def _read(self, data: bytes) -> None:
        """The magic, an IDENTIFY body's size, or the body, each read whole."""
        state = self._state
        self._state, self._need = _LINE, 0
        if state == _MAGIC:
            self._magic(data)
        elif state == _SIZE_FIELD:
            size = _SIZE.unpack(data)[0]
            if size < 0:
                raise FatalClientError("E_BAD_BODY", "IDENTIFY invalid body size %d" % size)
            if size > MAX_IDENTIFY_SIZE:
                raise FatalClientError("E_BAD_BODY", "IDENTIFY body too big %d > %d" % (size, MAX_IDENTIFY_SIZE))
            self._state, self._need = _BODY, size
        else:
            self._identified(data)

    def _magic(self, magic: bytes) -> None:
        log.info("CLIENT({client}): desired protocol magic {magic!r}", client=self.address,
                 magic=text(magic))
        if magic != MAGIC_V1:
            self._send(b"E_BAD_PROTOCOL")
            self.close()
            log.error("client({client}) bad protocol magic {magic!r}", client=self.address, magic=text(magic))

    def _command(self, line: bytes) -> None:
        params = text(line).strip(GO_SPACE).split(" ")
        command = self._commands.get(params[0])
        if command is None:
            raise FatalClientError("E_INVALID", "invalid command %s" % params[0])
        response = command(params[1:])
        if response is not None:
            self._send(response)

    def _run(self, handler, data: bytes) -> None:
        try:
            handler(data)
        except FatalClientError as err:
            self._fail(err)
        except Exception:
            log.failure("PROTOCOL(V1): [{client}] internal error", client=self.address)
            self._fail(FatalClientError("E_INVALID", "internal error"))

    def _fail(self, err: FatalClientError) -> None:
        """The one place errors are answered: the error's text as the response, then the close. The
        log line adds what caused it, if anything did, as Go's does."""
        wire = str(err).encode("utf-8", "surrogateescape")
        cause = " - %s" % err.__cause__ if err.__cause__ is not None else ""
        log.error("[{client}] - {err}{cause}", client=self.address, err=wire.decode("utf-8", "replace"), cause=cause)
        self._send(wire)
        self.close()

    def _send(self, data: bytes) -> None:
        self.transport.write(_SIZE.pack(len(data)) + data)

    # -- commands

    def PING(self, params) -> bytes:
        info = self.peer_info
        if info is not None:
            since = (self.db.now() - info.last_update) / 1e9
            log.info("CLIENT({client}): pinged (last ping {since})", client=info.id, since=format_duration(since))
            self.db.touch(info)
        return OK

    def IDENTIFY(self, params) -> None:
        if self.peer_info is not None:
            raise FatalClientError("E_INVALID", "cannot IDENTIFY again")
        self._state, self._need = _SIZE_FIELD, _SIZE.size

    def _identified(self, body: bytes) -> None:
        try:
            fields = decode_identify(body)
        except ValueError as err:
            raise FatalClientError("E_BAD_BODY", "IDENTIFY failed to decode JSON body") from err
        # the address seen is the node's, whatever it claims
        fields["remote_address"] = self.address
        info = PeerInfo(self.address, **fields)
        if not (info.broadcast_address and info.tcp_port and info.http_port and info.version):
            raise FatalClientError("E_BAD_BODY", "IDENTIFY missing fields")
        db = self.db
        db.touch(info)
        log.info("CLIENT({client}): IDENTIFY Address:{address} TCP:{tcp} HTTP:{http} Version:{version}",
                 client=self.address, address=info.broadcast_address, tcp=info.tcp_port, http=info.http_port,
                 version=info.version)
        self.peer_info = info
        if db.add_producer(CLIENT, Producer(info)):
            self._log_db("REGISTER", CLIENT)
        lookupd = self.lookupd
        # a Go map: its keys sorted
        self._send(encode_json({
            "broadcast_address": lookupd.options.broadcast_address,
            "hostname": socket.gethostname(),
            "http_port": lookupd.http_port,
            "tcp_port": lookupd.tcp_port,
            "version": NSQLOOKUPD_VERSION,
        }))

    def REGISTER(self, params) -> bytes:
        info = self._identified_peer()
        topic, channel = _topic_and_channel("REGISTER", params)
        registrations = [channel_registration(topic, channel)] if channel else []
        registrations.append(topic_registration(topic))
        for registration in registrations:
            if self.db.add_producer(registration, Producer(info)):
                self._log_db("REGISTER", registration)
        return OK

    def UNREGISTER(self, params) -> bytes:
        """A channel: this node no longer has it (an ephemeral one that no node has goes). A topic:
        nor the topic or any channel of it."""
        info = self._identified_peer()
        topic, channel = _topic_and_channel("UNREGISTER", params)
        db = self.db
        if channel:
            self._unregister(channel_registration(topic, channel), channel)
            return OK
        # nsqd unregisters a topic's channels before the topic: any left are unexpected
        for registration in db.find_registrations("channel", topic, "*"):
            removed, _ = db.remove_producer(registration, info.id)
            if removed:
                log.warn("client({client}) unexpected UNREGISTER category:channel key:{topic} subkey:{channel}",
                         client=self.address, topic=topic, channel=registration.subkey)
        self._unregister(topic_registration(topic), topic)
        return OK

    def _unregister(self, registration, name: str) -> None:
        removed, left = self.db.remove_producer(registration, self.peer_info.id)
        if removed:
            self._log_db("UNREGISTER", registration)
        if left == 0 and name.endswith(EPHEMERAL_SUFFIX):
            self.db.remove_registration(registration)

    def _identified_peer(self) -> PeerInfo:
        if self.peer_info is None:
            raise FatalClientError("E_INVALID", "client must IDENTIFY")
        return self.peer_info

    def _log_db(self, action: str, registration) -> None:
        log.info("DB: client({client}) {action} category:{category} key:{key} subkey:{subkey}", client=self.address,
                 action=action, category=registration.category, key=registration.key, subkey=registration.subkey)


def _topic_and_channel(command: str, params):
    """Go's getTopicChan: the topic, and the channel or "" (an empty or absent second parameter)."""
    if not params:
        raise FatalClientError("E_INVALID", "%s insufficient number of params" % command)
    topic = params[0]
    channel = params[1] if len(params) > 1 else ""
    if not is_valid_topic_name(topic):
        raise FatalClientError("E_BAD_TOPIC", "%s topic name '%s' is not valid" % (command, topic))
    if channel and not is_valid_channel_name(channel):
        raise FatalClientError("E_BAD_CHANNEL", "%s channel name '%s' is not valid" % (command, channel))
    return topic, channel


# -- IDENTIFY's JSON, as Go's json.Unmarshal fills a PeerInfo

#: PeerInfo's JSON fields and their Go types
_PEER_FIELDS = {"remote_address": str, "hostname": str, "broadcast_address": str, "tcp_port": int,
                "http_port": int, "version": str}
#: Go matches a key to a field ignoring case, "ſ" being an s and the Kelvin sign a k
_FOLD = {ord(upper): lower for upper, lower in zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")}
_FOLD.update({0x17F: "s", 0x212A: "k"})
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class _Object(list):
    """A JSON object as its (key, value) pairs, in order, so that a later duplicate wins as in Go."""


class _TooBig:
    """An integer too long for any Go int: never converted, so a huge one costs nothing."""


def _go_int(literal: str):
    return int(literal) if len(literal) <= 20 else _TooBig()


def _no_constant(name: str):
    raise ValueError("invalid character in JSON: %s" % name)


def decode_identify(body: bytes) -> dict:
    """The PeerInfo fields given in an IDENTIFY body, as Go's json.Unmarshal takes them: keys
    matched to fields ignoring case, unknown keys and nulls ignored, the last of duplicates
    winning; ValueError for anything Go refuses (bad JSON, a non-object, a value of the wrong
    type, an integer beyond int64)."""
    try:
        value = json.loads(body.decode("utf-8", "replace"), object_pairs_hook=_Object, parse_int=_go_int,
                           parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if value is None:
        return {}
    if not isinstance(value, _Object):
        raise ValueError("cannot unmarshal %s into PeerInfo" % type(value).__name__)
    fields = {}
    for key, item in value:
        name = key if key in _PEER_FIELDS else key.translate(_FOLD)
        kind = _PEER_FIELDS.get(name)
        if kind is None or item is None:
            continue
        if kind is int:
            if not (type(item) is int and _INT64_MIN <= item <= _INT64_MAX):
                raise ValueError("cannot unmarshal %r into PeerInfo.%s of type int" % (item, name))
        elif not isinstance(item, str):
            raise ValueError("cannot unmarshal %r into PeerInfo.%s of type string" % (item, name))
        else:
            # lone surrogates (from \\ud800 escapes) become U+FFFD, as Go decodes them
            item = item.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        fields[name] = item
    return fields


class V1Factory(Factory):
    noisy = False

    def __init__(self, lookupd):
        self.lookupd = lookupd

    def buildProtocol(self, addr):
        return ProtocolV1(self.lookupd)
