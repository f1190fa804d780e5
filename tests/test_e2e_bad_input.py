"""Bad input never crashes or stalls the server, and never costs a well-behaved client anything.

Every test runs against a real listening node on trial's reactor, over real sockets, while a second,
well-behaved pair of clients keeps publishing and consuming on the same node (:class:`Traffic`); at the
end that pair must have received every message it published, exactly once, and the server must have
logged no traceback. Garbage connections expect exactly the frames Go nsqd's protocol_v2.go sends
(codes and texts), and a close exactly where nsqd closes.

Waits are on events: a frame arriving, our socket closing, the server dropping its side of a
connection (observed through ``NSQD.client_disconnected``). Each such wait is bounded so a stalled
server fails with the name of the input that stalled it rather than a bare test timeout.

Where nsqd's own behaviour depends on bytes it has not been sent (it reads MPUB's inner messages
straight off the stream, past the declared body size), nsqtx confines them to the declared body; the
tests then expect the code and text nsqd gives for the same failure when the stream ends there.
"""
from __future__ import annotations

import json
import random
import struct

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from tests.support import start_real_node

MAGIC = b"  V2"
RESPONSE, ERROR, MESSAGE = 0, 1, 2
OK = (RESPONSE, b"OK")
CLOSE_WAIT = (RESPONSE, b"CLOSE_WAIT")
HEARTBEAT = b"_heartbeat_"
MSG_ID = b"0123456789abcdef"

MAX_MSG_SIZE = 1000
MAX_BODY_SIZE = 5000
#: nsqd's read buffer: a command line (with its newline) must fit in it
LINE_BUFFER = 16 * 1024

NON_FATAL_CODES = {b"E_FIN_FAILED", b"E_REQ_FAILED", b"E_TOUCH_FAILED"}
ERROR_CODES = NON_FATAL_CODES | {
    b"E_INVALID", b"E_BAD_PROTOCOL", b"E_BAD_TOPIC", b"E_BAD_CHANNEL", b"E_BAD_BODY", b"E_BAD_MESSAGE",
    b"E_PUB_FAILED", b"E_MPUB_FAILED", b"E_DPUB_FAILED", b"E_SUB_FAILED", b"E_IDENTIFY_FAILED",
    b"E_AUTH_DISABLED",
}

#: how long one garbage connection may take to be answered and closed before we call it a stall
CASE_TIMEOUT = 10.0


def err(text: bytes):
    return (ERROR, text)


def size(n: int) -> bytes:
    return struct.pack(">l", n)


def body(data: bytes) -> bytes:
    return size(len(data)) + data


def mpub(*bodies: bytes) -> bytes:
    return body(size(len(bodies)) + b"".join(body(b) for b in bodies))


def identify(fields) -> bytes:
    data = fields if isinstance(fields, bytes) else json.dumps(fields).encode()
    return b"IDENTIFY\n" + body(data)


class FrameClient(Protocol):
    """A raw NSQ connection that records every frame the server sends (heartbeats are dropped)."""

    def __init__(self):
        self.frames = []
        self.on_message = None
        self.closed = False
        self.local_port = None
        #: anything that is not a well-formed frame: the server must never send it
        self.malformed = b""
        self._buf = b""
        self._frame_waiters = []
        self._close_waiters = []

    def connectionMade(self):
        self.local_port = self.transport.getHost().port

    def dataReceived(self, data):
        buf = self._buf + data
        while len(buf) >= 8 and not self.malformed:
            frame_size, kind = struct.unpack(">lL", buf[:8])
            if frame_size < 4 or kind not in (RESPONSE, ERROR, MESSAGE) or (kind == MESSAGE and frame_size < 30):
                self.malformed = buf
                break
            if len(buf) < 4 + frame_size:
                break
            frame = (kind, buf[8:4 + frame_size])
            buf = buf[4 + frame_size:]
            if frame == (RESPONSE, HEARTBEAT):
                continue
            self.frames.append(frame)
            if kind == MESSAGE and self.on_message is not None:
                self.on_message(frame[1])
        self._buf = buf
        waiting, self._frame_waiters = self._frame_waiters, []
        for count, d in waiting:
            if len(self.frames) >= count:
                d.callback(self.frames[:count])
            else:
                self._frame_waiters.append((count, d))

    def connectionLost(self, reason=None):
        self.closed = True
        if self._buf and not self.malformed:
            self.malformed = self._buf
        for count, d in self._frame_waiters:
            d.errback(AssertionError("closed after %r, waiting for %d frames" % (self.frames, count)))
        self._frame_waiters = []
        for d in self._close_waiters:
            d.callback(self.frames)
        self._close_waiters = []

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def when_frames(self, count: int):
        """Fires with the first `count` frames once they have arrived."""
        if len(self.frames) >= count:
            return defer.succeed(self.frames[:count])
        if self.closed:
            return defer.fail(AssertionError("closed after %r, waiting for %d frames" % (self.frames, count)))
        d = defer.Deferred()
        self._frame_waiters.append((count, d))
        return d

    def when_closed(self):
        """Fires with every frame received, once the connection is closed."""
        if self.closed:
            return defer.succeed(self.frames)
        d = defer.Deferred()
        self._close_waiters.append(d)
        return d


def decode_message(data: bytes):
    """(attempts, id, body) of a message frame's data."""
    return struct.unpack(">H", data[8:10])[0], data[10:26], data[26:]


class Traffic:
    """A producer and a consumer that behave, on the same node, while a test throws garbage at it.

    The producer publishes one message at a time (the next once the last is OK'd) until told to stop;
    the consumer FINs everything. :meth:`finish` checks the consumer got each message exactly once."""

    TOPIC = b"good"

    def __init__(self, test):
        self.test = test
        self.published = []
        self.received = []
        self._stopping = False
        self._loop = None
        self._all_received = defer.Deferred()

    @defer.inlineCallbacks
    def start(self):
        self.consumer = yield self.test.connect()
        self.consumer.on_message = self._got
        self.consumer.send(MAGIC + b"SUB " + self.TOPIC + b" ch\nRDY 100\n")
        frames = yield self.test.bounded(self.consumer.when_frames(1), "traffic consumer SUB")
        self.test.assertEqual(frames, [OK])
        self.producer = yield self.test.connect()
        self.producer.send(MAGIC)
        self._loop = self._publish()

    @defer.inlineCallbacks
    def _publish(self):
        while not self._stopping:
            message = b"good-%d" % len(self.published)
            self.producer.send(b"PUB " + self.TOPIC + b"\n" + body(message))
            frames = yield self.producer.when_frames(len(self.published) + 1)
            if frames[-1] != OK:
                raise AssertionError("traffic PUB answered %r" % (frames[-1],))
            self.published.append(message)

    def _got(self, data):
        attempts, msg_id, message = decode_message(data)
        self.received.append((attempts, message))
        self.consumer.send(b"FIN " + msg_id + b"\n")
        self._check()

    def _check(self):
        # only once the producer is done: until then an OK may still be on its way
        done = self._loop is not None and self._loop.called
        if done and len(self.received) >= len(self.published) and not self._all_received.called:
            self._all_received.callback(None)

    @defer.inlineCallbacks
    def finish(self):
        self._stopping = True
        yield self.test.bounded(self._loop, "traffic producer")
        self._check()
        yield self.test.bounded(self._all_received, "traffic consumer (got %d of %d)"
                                % (len(self.received), len(self.published)))
        self.test.assertTrue(self.published)
        self.test.assertEqual(self.received, [(1, m) for m in self.published])
        self.test.assertEqual([f for f in self.consumer.frames if f[0] != MESSAGE], [OK])
        self.test.assertEqual((self.consumer.malformed, self.producer.malformed), (b"", b""))
        self.test.assertFalse(self.consumer.closed or self.producer.closed)


class BadInputTestCase(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.node = start_real_node(self, max_msg_size=MAX_MSG_SIZE, max_body_size=MAX_BODY_SIZE)
        self._watch_disconnects()

        self.clients = []
        self.addCleanup(self._close_clients)
        self.traffic = Traffic(self)
        yield self.traffic.start()
        self.addCleanup(self.traffic.finish)

    def _watch_disconnects(self):
        """Count, per client port, the connections the server has dropped (ports may be reused)."""
        self._dropped = {}
        self._drop_waiters = {}
        original = self.node.client_disconnected

        def client_disconnected(client):
            original(client)
            port = int(client.remote_address.rpartition(":")[2])
            waiters = self._drop_waiters.get(port)
            if waiters:
                waiters.pop(0).callback(None)
            else:
                self._dropped[port] = self._dropped.get(port, 0) + 1

        self.node.client_disconnected = client_disconnected

    def server_dropped(self, client):
        """Fires once the server has let go of `client`'s connection (its connectionLost ran)."""
        port = client.local_port
        if self._dropped.get(port):
            self._dropped[port] -= 1
            return defer.succeed(None)
        d = defer.Deferred()
        self._drop_waiters.setdefault(port, []).append(d)
        return d

    def bounded(self, d, what: str):
        from twisted.internet import reactor

        def timed_out(failure):
            failure.trap(defer.TimeoutError, defer.CancelledError)
            raise AssertionError("stalled: %s (nothing within %ss)" % (what, CASE_TIMEOUT))

        return d.addTimeout(CASE_TIMEOUT, reactor).addErrback(timed_out)

    @defer.inlineCallbacks
    def connect(self):
        from twisted.internet import reactor

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.node.tcp_port)
        client = yield connectProtocol(endpoint, FrameClient())
        self.clients.append(client)
        return client

    @defer.inlineCallbacks
    def _close_clients(self):
        waits = []
        for client in self.clients:
            if not client.closed:
                client.transport.loseConnection()
                waits.append(client.when_closed())
        yield defer.gatherResults(waits)

    # -- throwing garbage

    def throw(self, name: str, data: bytes, expected, stays_open=False, magic=True):
        """Send `data` on a new connection and check the server's answer.

        Without `stays_open` the server must send exactly `expected` and close. With it, the server
        must send `expected` and keep serving: a PUB sent afterwards is answered OK and nothing else
        comes in between. Failures name the case."""

        def named(failure):
            raise AssertionError("%s: %s" % (name, failure.getErrorMessage()))

        return self._throw(name, data, list(expected), stays_open, magic).addErrback(named)

    @defer.inlineCallbacks
    def _throw(self, name, data, expected, stays_open, magic):
        client = yield self.connect()
        client.send((MAGIC if magic else b"") + data)
        # the expected frames, or the close if fewer come; compared at once so a wrong answer fails now
        yield self.bounded(defer.DeferredList([client.when_closed(), client.when_frames(len(expected))],
                                              fireOnOneCallback=True, consumeErrors=True), "waiting for answer")
        self.assertEqual(client.frames[:len(expected)], expected)
        if stays_open:
            client.send(b"PUB probe\n" + body(b"probe"))
            yield self.bounded(client.when_frames(len(expected) + 1), "probe PUB")
            self.assertEqual(client.frames, expected + [OK])
            self.assertFalse(client.closed)
            client.transport.loseConnection()
        frames = yield self.bounded(client.when_closed(), "server never closed")
        yield self.bounded(self.server_dropped(client), "server kept the connection")
        if not stays_open:
            self.assertEqual(frames, expected)
        self.assertEqual(client.malformed, b"")
        return client

    @defer.inlineCallbacks
    def throw_all(self, cases, **options):
        """Run `cases` concurrently and report every mismatch at once. A case is (name, data, expected
        frames), optionally followed by a dict of :meth:`throw` options overriding `options`."""
        names = [case[0] for case in cases]
        self.assertEqual(len(set(names)), len(names), "case names must be unique")
        yield self.all_of([self.throw(*case[:3], **dict(options, **(case[3] if len(case) > 3 else {})))
                           for case in cases])

    @defer.inlineCallbacks
    def all_of(self, runs):
        """Wait for every one of `runs`, then fail with all their failures, not just the first."""
        results = yield defer.DeferredList(runs, consumeErrors=True)
        problems = [failure.getErrorMessage() for ok, failure in results if not ok]
        if problems:
            self.fail("%d of %d failed:\n  %s" % (len(problems), len(runs), "\n  ".join(problems)))

    def topic_count(self, name: str) -> int:
        topic = self.node.topics.get(name)
        return 0 if topic is None else topic.message_count


class MagicAndCommandTests(BadInputTestCase):
    @defer.inlineCallbacks
    def test_bad_magic_gets_E_BAD_PROTOCOL_and_a_close(self):
        cases = [
            ("V1", b"  V1", [err(b"E_BAD_PROTOCOL")]),
            ("HTTP", b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n", [err(b"E_BAD_PROTOCOL")]),
            ("commands without magic", b"PUB t\n" + body(b"m"), [err(b"E_BAD_PROTOCOL")]),
            ("binary", b"\x00\x00\x00\x04\xff\xff", [err(b"E_BAD_PROTOCOL")]),
            ("lowercase", b"  v2NOP\n", [err(b"E_BAD_PROTOCOL")]),
        ]
        yield self.throw_all(cases, magic=False)
        self.assertEqual(self.topic_count("t"), 0)

    @defer.inlineCallbacks
    def test_partial_magic_then_close_is_dropped_quietly(self):
        client = yield self.connect()
        client.send(b"  V")
        client.transport.loseWriteConnection()
        frames = yield self.bounded(client.when_closed(), "partial magic")
        yield self.bounded(self.server_dropped(client), "partial magic: server kept the connection")
        self.assertEqual(frames, [])

    @defer.inlineCallbacks
    def test_unknown_and_empty_commands_are_fatal(self):
        yield self.throw_all([
            ("unknown", b"ASDF\n", [err(b"E_INVALID invalid command ASDF")]),
            ("lowercase", b"pub t\n", [err(b"E_INVALID invalid command pub")]),
            ("empty line", b"\n", [err(b"E_INVALID invalid command ")]),
            ("CRLF only", b"\r\n", [err(b"E_INVALID invalid command ")]),
            ("leading space", b" NOP\n", [err(b"E_INVALID invalid command ")]),
            ("after good ones", b"NOP\nNOP\nHELLO world\nPUB t\n" + body(b"m"),
             [err(b"E_INVALID invalid command HELLO")]),
        ])
        self.assertEqual(self.topic_count("t"), 0)

    @defer.inlineCallbacks
    def test_invalid_command_error_echoes_the_command_bytes_as_sent(self):
        # nsqd formats the raw bytes (fmt %s of a []byte); they are not decoded as UTF-8 first
        yield self.throw_all([
            ("invalid UTF-8", b"\xff\xfeX\n", [err(b"E_INVALID invalid command \xff\xfeX")]),
            ("NUL", b"A\x00B\n", [err(b"E_INVALID invalid command A\x00B")]),
        ])

    def test_overlong_line_without_newline_is_closed(self):
        return self.throw_overlong(b"X" * (LINE_BUFFER + 10), "overlong line")

    @defer.inlineCallbacks
    def test_overlong_line_is_refused_even_when_its_newline_arrives_with_it(self):
        # nsqd reads lines through a 16 KiB bufio.Reader: a line that does not fit, newline included,
        # ends the connection before anything after it is read, however the bytes were segmented.
        longest = b"NOP" + b" " * (LINE_BUFFER - 1 - 3)
        yield self.throw("longest line", longest + b"\n", [], stays_open=True)
        yield self.throw_overlong(longest + b" \nPUB overlong\n" + body(b"m"), "line one byte over")
        self.assertEqual(self.topic_count("overlong"), 0)

    @defer.inlineCallbacks
    def throw_overlong(self, data: bytes, name: str):
        """The server must close without answering anything; nsqd sends no frame first, an E_INVALID
        saying why is tolerated."""
        client = yield self.connect()
        client.send(MAGIC + data)
        # an answer to a command read after the long line fails at once rather than at the stall timeout
        yield self.bounded(defer.DeferredList([client.when_closed(), client.when_frames(1)],
                                              fireOnOneCallback=True, consumeErrors=True), name)
        self.assertEqual([f for f in client.frames if not f[1].startswith(b"E_INVALID ")], [],
                         "%s: the server read on past the long line" % name)
        frames = yield self.bounded(client.when_closed(), "%s: server never closed" % name)
        yield self.bounded(self.server_dropped(client), "%s: server kept the connection" % name)
        self.assertLessEqual(len(frames), 1, name)


class StateAndParameterTests(BadInputTestCase):
    @defer.inlineCallbacks
    def test_commands_in_the_wrong_state_are_fatal(self):
        sub = b"SUB state c\n"
        yield self.throw_all([
            ("RDY before SUB", b"RDY 1\n", [err(b"E_INVALID cannot RDY in current state")]),
            ("FIN before SUB", b"FIN " + MSG_ID + b"\n", [err(b"E_INVALID cannot FIN in current state")]),
            ("REQ before SUB", b"REQ " + MSG_ID + b" 0\n", [err(b"E_INVALID cannot REQ in current state")]),
            ("TOUCH before SUB", b"TOUCH " + MSG_ID + b"\n", [err(b"E_INVALID cannot TOUCH in current state")]),
            ("CLS before SUB", b"CLS\n", [err(b"E_INVALID cannot CLS in current state")]),
            ("SUB twice", sub + sub, [OK, err(b"E_INVALID cannot SUB in current state")]),
            ("IDENTIFY after SUB", sub + identify({}), [OK, err(b"E_INVALID cannot IDENTIFY in current state")]),
            ("AUTH after SUB", sub + b"AUTH\n" + body(b"secret"), [OK, err(b"E_INVALID cannot AUTH in current state")]),
            ("CLS twice", sub + b"CLS\nCLS\n", [OK, CLOSE_WAIT, err(b"E_INVALID cannot CLS in current state")]),
            ("SUB after CLS", sub + b"CLS\n" + sub, [OK, CLOSE_WAIT, err(b"E_INVALID cannot SUB in current state")]),
            ("SUB without heartbeats", identify({"heartbeat_interval": -1}) + sub,
             [OK, err(b"E_INVALID cannot SUB with heartbeats disabled")]),
        ])

    @defer.inlineCallbacks
    def test_RDY_after_CLS_is_ignored(self):
        yield self.throw("RDY after CLS", b"SUB state c\nCLS\nRDY 5\n", [OK, CLOSE_WAIT], stays_open=True)

    @defer.inlineCallbacks
    def test_missing_and_unparsable_parameters_are_fatal(self):
        sub = b"SUB params c\n"
        yield self.throw_all([
            ("PUB", b"PUB\n", [err(b"E_INVALID PUB insufficient number of parameters")]),
            ("MPUB", b"MPUB\n", [err(b"E_INVALID MPUB insufficient number of parameters")]),
            ("DPUB", b"DPUB t\n", [err(b"E_INVALID DPUB insufficient number of parameters")]),
            ("SUB", b"SUB t\n", [err(b"E_INVALID SUB insufficient number of parameters")]),
            ("AUTH", b"AUTH secret\n", [err(b"E_INVALID AUTH invalid number of parameters")]),
            ("DPUB word", b"DPUB t abc\n", [err(b"E_INVALID DPUB could not parse timeout abc")]),
            ("DPUB negative", b"DPUB t -1\n", [err(b"E_INVALID DPUB could not parse timeout -1")]),
            ("DPUB too long", b"DPUB t 3600001\n", [err(b"E_INVALID DPUB timeout 3600001 out of range 0-3600000")]),
            ("RDY word", sub + b"RDY abc\n", [OK, err(b"E_INVALID RDY could not parse count abc")]),
            ("RDY negative", sub + b"RDY -1\n", [OK, err(b"E_INVALID RDY could not parse count -1")]),
            ("RDY too many", sub + b"RDY 2501\n", [OK, err(b"E_INVALID RDY count 2501 out of range 0-2500")]),
            ("FIN", sub + b"FIN\n", [OK, err(b"E_INVALID FIN insufficient number of params")]),
            ("FIN short ID", sub + b"FIN 0123\n", [OK, err(b"E_INVALID invalid message ID")]),
            ("REQ", sub + b"REQ " + MSG_ID + b"\n", [OK, err(b"E_INVALID REQ insufficient number of params")]),
            ("REQ long ID", sub + b"REQ " + MSG_ID + b"0 0\n", [OK, err(b"E_INVALID invalid message ID")]),
            ("REQ word", sub + b"REQ " + MSG_ID + b" x\n", [OK, err(b"E_INVALID REQ could not parse timeout x")]),
            ("TOUCH", sub + b"TOUCH\n", [OK, err(b"E_INVALID TOUCH insufficient number of params")]),
            ("TOUCH empty ID", sub + b"TOUCH \n", [OK, err(b"E_INVALID invalid message ID")]),
        ])
        self.assertEqual(self.topic_count("t"), 0)

    @defer.inlineCallbacks
    def test_FIN_REQ_TOUCH_of_unknown_messages_are_not_fatal(self):
        sub = b"SUB nonfatal c\n"
        fin = err(b"E_FIN_FAILED FIN " + MSG_ID + b" failed ID not in flight")
        req = err(b"E_REQ_FAILED REQ " + MSG_ID + b" failed ID not in flight")
        touch = err(b"E_TOUCH_FAILED TOUCH " + MSG_ID + b" failed ID not in flight")
        yield self.throw_all([
            ("FIN", sub + b"FIN " + MSG_ID + b"\n", [OK, fin]),
            ("REQ", sub + b"REQ " + MSG_ID + b" 0\n", [OK, req]),
            ("TOUCH", sub + b"TOUCH " + MSG_ID + b"\n", [OK, touch]),
            ("all, closing", sub + b"CLS\nFIN %s\nREQ %s 10\nTOUCH %s\n" % (MSG_ID, MSG_ID, MSG_ID),
             [OK, CLOSE_WAIT, fin, req, touch]),
        ], stays_open=True)

    @defer.inlineCallbacks
    def test_huge_REQ_timeout_is_clamped_like_nsqd(self):
        # nsqd clamps any REQ timeout to --max-req-timeout; a number too big for a float is no exception
        yield self.throw("REQ 400 digits", b"SUB hugereq c\nREQ " + MSG_ID + b" " + b"9" * 400 + b"\n",
                         [OK, err(b"E_REQ_FAILED REQ " + MSG_ID + b" failed ID not in flight")], stays_open=True)

    @defer.inlineCallbacks
    def test_bad_topic_and_channel_names_are_fatal(self):
        long_name = b"a" * 65
        yield self.throw_all([
            ("PUB", b"PUB bad!topic\n" + body(b"m"), [err(b'E_BAD_TOPIC PUB topic name "bad!topic" is not valid')]),
            ("PUB empty", b"PUB \n" + body(b"m"), [err(b'E_BAD_TOPIC PUB topic name "" is not valid')]),
            ("PUB long", b"PUB " + long_name + b"\n",
             [err(b'E_BAD_TOPIC PUB topic name "' + long_name + b'" is not valid')]),
            ("PUB quote", b'PUB a"b\n', [err(b'E_BAD_TOPIC PUB topic name "a\\"b" is not valid')]),
            ("MPUB", b"MPUB a#ephemeral#ephemeral\n" + mpub(b"m"),
             [err(b'E_BAD_TOPIC E_BAD_TOPIC MPUB topic name "a#ephemeral#ephemeral" is not valid')]),
            ("DPUB", b"DPUB t/x 0\n" + body(b"m"), [err(b'E_BAD_TOPIC DPUB topic name "t/x" is not valid')]),
            ("SUB topic", b"SUB bad:topic c\n", [err(b'E_BAD_TOPIC SUB topic name "bad:topic" is not valid')]),
            ("SUB channel", b"SUB t bad:chan\n", [err(b'E_BAD_CHANNEL SUB channel name "bad:chan" is not valid')]),
            ("SUB long channel", b"SUB t " + long_name + b"\n",
             [err(b'E_BAD_CHANNEL SUB channel name "' + long_name + b'" is not valid')]),
            ("SUB ephemeral only", b"SUB t #ephemeral\n",
             [err(b'E_BAD_CHANNEL SUB channel name "#ephemeral" is not valid')]),
        ])
        self.assertEqual(set(self.node.topics) - {"good", "probe"}, set())

    @defer.inlineCallbacks
    def test_name_errors_quote_names_as_go_does(self):
        # nsqd uses %q: control bytes and invalid UTF-8 come back as \xNN escapes
        yield self.throw_all([
            ("control byte", b"PUB a\x01b\n", [err(b'E_BAD_TOPIC PUB topic name "a\\x01b" is not valid')]),
            ("DEL", b"PUB a\x7fb\n", [err(b'E_BAD_TOPIC PUB topic name "a\\x7fb" is not valid')]),
            ("invalid UTF-8", b"SUB t\xff c\n", [err(b'E_BAD_TOPIC SUB topic name "t\\xff" is not valid')]),
        ])


class SizeAndBodyTests(BadInputTestCase):
    @defer.inlineCallbacks
    def test_negative_zero_and_huge_sizes_are_fatal(self):
        cases = []
        for command, line, code, invalid, too_big, limit in [
            (b"PUB", b"PUB sizes\n", b"E_BAD_MESSAGE", b"invalid message body size", b"message too big", MAX_MSG_SIZE),
            (b"DPUB", b"DPUB sizes 0\n", b"E_BAD_MESSAGE", b"invalid message body size", b"message too big",
             MAX_MSG_SIZE),
            (b"MPUB", b"MPUB sizes\n", b"E_BAD_BODY", b"invalid body size", b"body too big", MAX_BODY_SIZE),
            (b"IDENTIFY", b"IDENTIFY\n", b"E_BAD_BODY", b"invalid body size", b"body too big", MAX_BODY_SIZE),
            (b"AUTH", b"AUTH\n", b"E_BAD_BODY", b"invalid body size", b"body too big", MAX_BODY_SIZE),
        ]:
            for n in (-1, 0, -(1 << 31)):
                cases.append(("%s %d" % (command.decode(), n), line + size(n),
                              [err(b"%s %s %s %d" % (code, command, invalid, n))]))
            for n in (limit + 1, (1 << 31) - 1):
                cases.append(("%s %d" % (command.decode(), n), line + size(n) + b"x" * 64,
                              [err(b"%s %s %s %d > %d" % (code, command, too_big, n, limit))]))
        yield self.throw_all(cases)
        self.assertEqual(self.topic_count("sizes"), 0)

    @defer.inlineCallbacks
    def test_AUTH_with_a_body_is_refused_when_auth_is_disabled(self):
        yield self.throw_all([("AUTH", b"AUTH\n" + body(b"secret"), [err(b"E_AUTH_DISABLED AUTH disabled")])])

    @defer.inlineCallbacks
    def test_mpub_with_inconsistent_inner_sizes_publishes_nothing(self):
        one = body(b"a")
        yield self.throw_all([
            ("too short for a count", b"MPUB inner\n" + body(b"\x00\x00\x01"),
             [err(b"E_BAD_BODY MPUB failed to read message count")]),
            ("count 0", b"MPUB inner\n" + body(size(0)), [err(b"E_BAD_BODY MPUB invalid message count 0")]),
            ("count -1", b"MPUB inner\n" + body(size(-1) + one), [err(b"E_BAD_BODY MPUB invalid message count -1")]),
            ("count too big", b"MPUB inner\n" + body(size(1000) + one * 3),
             [err(b"E_BAD_BODY MPUB invalid message count 1000")]),
            ("count beyond messages", b"MPUB inner\n" + body(size(3) + one + one),
             [err(b"E_BAD_MESSAGE MPUB failed to read message(2) body size")]),
            ("size cut short", b"MPUB inner\n" + body(size(2) + one + b"\x00\x00"),
             [err(b"E_BAD_MESSAGE MPUB failed to read message(1) body size")]),
            ("inner size 0", b"MPUB inner\n" + body(size(2) + one + size(0)),
             [err(b"E_BAD_MESSAGE MPUB invalid message(1) body size 0")]),
            ("inner size -1", b"MPUB inner\n" + body(size(2) + one + size(-1) + b"abcd"),
             [err(b"E_BAD_MESSAGE MPUB invalid message(1) body size -1")]),
            ("inner too big", b"MPUB inner\n" + body(size(2) + one + size(MAX_MSG_SIZE + 1) + b"x" * 8),
             [err(b"E_BAD_MESSAGE MPUB message too big %d > %d" % (MAX_MSG_SIZE + 1, MAX_MSG_SIZE))]),
            ("inner past the body", b"MPUB inner\n" + body(size(2) + one + size(50) + b"x" * 10),
             [err(b"E_BAD_MESSAGE MPUB failed to read message body")]),
            ("bytes after the last", b"MPUB inner\n" + body(size(1) + one + b"NOP\n"),
             [err(b"E_BAD_BODY MPUB body has 4 bytes after the last message")]),
        ])
        self.assertEqual(self.topic_count("inner"), 0)

    @defer.inlineCallbacks
    def test_truncated_bodies_then_close_publish_nothing(self):
        cases = [
            ("PUB", b"PUB trunc\n" + size(100) + b"x" * 50),
            ("PUB half a size", b"PUB trunc\n\x00\x00"),
            ("DPUB", b"DPUB trunc 0\n" + size(100) + b"x" * 10),
            ("MPUB", b"MPUB trunc\n" + size(200) + size(2) + body(b"a")),
            ("IDENTIFY", b"IDENTIFY\n" + size(50) + b'{"client_id":'),
            ("AUTH", b"AUTH\n" + size(10) + b"abc"),
        ]

        @defer.inlineCallbacks
        def truncated(name, data):
            client = yield self.connect()
            client.send(MAGIC + data)
            client.transport.loseWriteConnection()
            frames = yield self.bounded(client.when_closed(), "%s: server never closed" % name)
            yield self.bounded(self.server_dropped(client), "%s: server kept the connection" % name)
            self.assertEqual((frames, client.malformed), ([], b""), name)

        yield self.all_of([truncated(name, data) for name, data in cases])
        self.assertEqual(self.topic_count("trunc"), 0)


class IdentifyTests(BadInputTestCase):
    @defer.inlineCallbacks
    def test_invalid_and_wrongly_typed_JSON_is_E_BAD_BODY(self):
        failed = [err(b"E_BAD_BODY IDENTIFY failed to decode JSON body")]
        bodies = [
            b"not json", b"{", b'{"client_id": "x"', b"[1, 2]", b'"a string"', b"12", b"true", b"\x00\x01\x02",
            b'{"heartbeat_interval": "1000"}', b'{"feature_negotiation": 1}', b'{"client_id": 5}',
            b'{"msg_timeout": 1.5}', b'{"output_buffer_size": 1e3}', b'{"deflate": "true"}',
            b'{"user_agent": ["x"]}', b'{"heartbeat_interval": NaN}', b'{"sample_rate": 2147483648}',
            b'{"client_id": "a", "client_id": 5}', b'{"hostname": {}}',
        ]
        yield self.throw_all([(repr(b), identify(b), failed) for b in bodies])

    @defer.inlineCallbacks
    def test_out_of_range_values_are_E_BAD_BODY(self):
        cases = []
        for field, value, text in [
            ("heartbeat_interval", 999, b"heartbeat interval (999) is invalid"),
            ("heartbeat_interval", 60001, b"heartbeat interval (60001) is invalid"),
            ("heartbeat_interval", -2, b"heartbeat interval (-2) is invalid"),
            ("output_buffer_timeout", 1, b"output buffer timeout (1) is invalid"),
            ("output_buffer_timeout", 30001, b"output buffer timeout (30001) is invalid"),
            ("output_buffer_size", 63, b"output buffer size (63) is invalid"),
            ("output_buffer_size", 64 * 1024 + 1, b"output buffer size (65537) is invalid"),
            ("sample_rate", 100, b"sample rate (100) is invalid"),
            ("sample_rate", -1, b"sample rate (-1) is invalid"),
            ("msg_timeout", 999, b"msg timeout (999) is invalid"),
            ("msg_timeout", 15 * 60 * 1000 + 1, b"msg timeout (900001) is invalid"),
            ("msg_timeout", -1, b"msg timeout (-1) is invalid"),
        ]:
            cases.append(("%s=%d" % (field, value), identify({field: value}), [err(b"E_BAD_BODY IDENTIFY " + text)]))
        yield self.throw_all(cases)

    @defer.inlineCallbacks
    def test_deeply_nested_JSON_is_E_BAD_BODY_not_a_crash(self):
        nested = b"[" * 2400 + b"]" * 2400
        yield self.throw_all([
            ("nested array", identify(nested), [err(b"E_BAD_BODY IDENTIFY failed to decode JSON body")]),
            ("nested in a field", identify(b'{"client_id": ' + nested + b"}"),
             [err(b"E_BAD_BODY IDENTIFY failed to decode JSON body")]),
        ])

    @defer.inlineCallbacks
    def test_JSON_is_decoded_as_nsqd_decodes_it(self):
        # Go's encoding/json: null leaves the struct as it is; invalid UTF-8 inside a string is replaced,
        # not refused; a BOM, UTF-16 and NaN are not JSON; ints are 64-bit (only sample_rate is int32).
        failed = [err(b"E_BAD_BODY IDENTIFY failed to decode JSON body")]
        yield self.throw_all([
            ("null", identify(b"null"), [OK], {"stays_open": True}),
            ("invalid UTF-8 in a string", identify(b'{"client_id": "a\xffb"}'), [OK], {"stays_open": True}),
            ("BOM", identify(b'\xef\xbb\xbf{"client_id": "x"}'), failed),
            ("UTF-16", identify('{"client_id": "x"}'.encode("utf-16-le")), failed),
            ("NaN in an unknown field", identify(b'{"x": NaN}'), failed),
            ("64-bit heartbeat", identify({"heartbeat_interval": 1 << 31}),
             [err(b"E_BAD_BODY IDENTIFY heartbeat interval (2147483648) is invalid")]),
            ("64-bit msg timeout", identify({"msg_timeout": -(1 << 31) - 1}),
             [err(b"E_BAD_BODY IDENTIFY msg timeout (-2147483649) is invalid")]),
        ])


class FuzzTests(BadInputTestCase):
    SEED = 0x5EED

    @defer.inlineCallbacks
    def fuzz(self, name, data: bytes, rng, magic=True):
        """Send `data` in random pieces, half-close, and hold the server to nsqd's invariants."""
        client = yield self.connect()
        data = (MAGIC if magic else b"") + data
        while data:
            cut = rng.randrange(1, len(data) + 1)
            client.send(data[:cut])
            data = data[cut:]
        client.transport.loseWriteConnection()
        frames = yield self.bounded(client.when_closed(), "%s: server never closed" % name)
        yield self.bounded(self.server_dropped(client), "%s: server kept the connection" % name)
        self.assertEqual(client.malformed, b"", name)
        for i, (kind, data) in enumerate(frames):
            if kind == ERROR:
                code = data.split(b" ", 1)[0]
                self.assertIn(code, ERROR_CODES, (name, data))
                if code not in NON_FATAL_CODES:
                    self.assertEqual(i, len(frames) - 1, "%s: frames after a fatal error: %r" % (name, frames))
        return frames

    @defer.inlineCallbacks
    def test_random_bytes(self):
        rng = random.Random(self.SEED)
        runs = []
        for i in range(40):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
            runs.append(self._random_after_magic("random %d" % i, junk, random.Random(rng.random())))
        for i in range(10):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(4, 100)))
            if junk[:4] == MAGIC:
                continue
            runs.append(self._random_without_magic("no magic %d" % i, junk, random.Random(rng.random())))
        yield self.all_of(runs)

    @defer.inlineCallbacks
    def _random_after_magic(self, name, junk, rng):
        frames = yield self.fuzz(name, junk, rng)
        if b"\n" in junk:
            # random bytes do not start with a command name: the first line is refused, nothing else read
            self.assertEqual([(kind, data[:26]) for kind, data in frames], [(ERROR, b"E_INVALID invalid command ")],
                             (name, junk))
        else:
            self.assertEqual(frames, [], name)

    @defer.inlineCallbacks
    def _random_without_magic(self, name, junk, rng):
        frames = yield self.fuzz(name, junk, rng, magic=False)
        self.assertEqual(frames, [err(b"E_BAD_PROTOCOL")], name)

    @defer.inlineCallbacks
    def test_mutated_command_streams(self):
        rng = random.Random(self.SEED + 1)
        runs = [self.fuzz("soup %d" % i, self._soup(rng), random.Random(rng.random())) for i in range(60)]
        yield self.all_of(runs)

    @staticmethod
    def _soup(rng) -> bytes:
        """Mostly-plausible commands with plausible-but-wrong pieces, then mutated."""
        topics = [b"fz", b"fz2", b"fz#ephemeral", b"bad!", b"", b"a" * 65]
        numbers = [b"0", b"1", b"-1", b"100", b"2500", b"2501", b"3600001", b"x", b"9" * 30]
        sizes = [0, 1, 5, 64, -1, -(1 << 31), (1 << 31) - 1, MAX_MSG_SIZE, MAX_BODY_SIZE + 1]

        def piece():
            kind = rng.randrange(12)
            if kind == 0:
                return b"PUB " + rng.choice(topics) + b"\n" + body(b"m" * rng.randrange(1, 20))
            if kind == 1:
                return b"MPUB " + rng.choice(topics) + b"\n" + mpub(*[b"m"] * rng.randrange(1, 4))
            if kind == 2:
                return b"DPUB " + rng.choice(topics) + b" " + rng.choice(numbers) + b"\n" + body(b"d")
            if kind == 3:
                return b"SUB " + rng.choice(topics) + b" " + rng.choice(topics) + b"\n"
            if kind == 4:
                return b"RDY " + rng.choice(numbers) + b"\n"
            if kind == 5:
                return rng.choice([b"FIN ", b"REQ ", b"TOUCH "]) + MSG_ID + b" " + rng.choice(numbers) + b"\n"
            if kind == 6:
                return identify(rng.choice([{}, {"heartbeat_interval": 1000}, {"msg_timeout": 1000},
                                            {"feature_negotiation": True}, {"output_buffer_size": -1}]))
            if kind == 7:
                return rng.choice([b"PUB", b"MPUB", b"IDENTIFY", b"AUTH"]) + b" fz\n" + size(rng.choice(sizes))
            if kind == 8:
                return rng.choice([b"NOP\n", b"CLS\n", b"AUTH\n", b"\n", b"\r\n"])
            if kind == 9:
                return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
            if kind == 10:
                return size(rng.choice(sizes))
            return b" ".join(rng.choice([b"PUB", b"SUB", b"fz", b"c", b"1"]) for _ in range(rng.randrange(1, 5)))

        data = bytearray(b"".join(piece() for _ in range(rng.randrange(1, 12))))
        for _ in range(rng.randrange(0, 4)):
            if not data:
                break
            at = rng.randrange(len(data))
            action = rng.randrange(3)
            if action == 0:
                data[at] = rng.randrange(256)
            elif action == 1:
                del data[at:at + rng.randrange(1, 8)]
            else:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        return bytes(data)


class NoLossTests(BadInputTestCase):
    @defer.inlineCallbacks
    def test_acknowledged_messages_survive_the_failure_of_their_connection(self):
        """Everything OK'd before a connection's fatal error is delivered; a message in flight to a
        connection that then fails is delivered again once its timeout expires."""
        topic = b"lossless"
        # a consumer that takes one message, then breaks the protocol before it FINs it
        doomed = yield self.connect()
        doomed.send(MAGIC + identify({"msg_timeout": 1000}) + b"SUB " + topic + b" ch\nRDY 1\n")
        yield self.bounded(doomed.when_frames(2), "doomed consumer SUB")

        publisher = yield self.connect()
        publisher.send(MAGIC + b"PUB lossless\n" + body(b"one"))
        yield self.bounded(publisher.when_frames(1), "PUB one")
        publisher.send(b"MPUB lossless\n" + mpub(b"two", b"three"))
        yield self.bounded(publisher.when_frames(2), "MPUB two three")
        publisher.send(b"DPUB lossless 0\n" + body(b"four"))
        yield self.bounded(publisher.when_frames(3), "DPUB four")
        publisher.send(b"GARBAGE\n")
        frames = yield self.bounded(publisher.when_closed(), "publisher close")
        self.assertEqual(frames, [OK, OK, OK, err(b"E_INVALID invalid command GARBAGE")])

        # all pipelined in one write: the OKs go out before the error, in order
        pipelined = yield self.connect()
        pipelined.send(MAGIC + b"PUB lossless\n" + body(b"five") + b"MPUB lossless\n" + mpub(b"six", b"seven")
                       + b"\xff\n" + b"PUB lossless\n" + body(b"never"))
        frames = yield self.bounded(pipelined.when_closed(), "pipelined close")
        self.assertEqual([kind for kind, _ in frames], [RESPONSE, RESPONSE, ERROR])

        # OK'd, then a body that never completes
        truncated = yield self.connect()
        truncated.send(MAGIC + b"PUB lossless\n" + body(b"eight") + b"PUB lossless\n" + size(100) + b"partial")
        yield self.bounded(truncated.when_frames(1), "PUB eight")
        truncated.transport.loseWriteConnection()
        frames = yield self.bounded(truncated.when_closed(), "truncated close")
        self.assertEqual(frames, [OK])

        frames = yield self.bounded(doomed.when_frames(3), "doomed consumer's message")
        attempts, msg_id, first = decode_message(frames[2][1])
        self.assertEqual((attempts, first), (1, b"one"))
        doomed.send(b"FIN " + msg_id[:8] + b"\n")
        frames = yield self.bounded(doomed.when_closed(), "doomed consumer close")
        self.assertEqual(frames[3:], [err(b"E_INVALID invalid message ID")])
        for client in (publisher, pipelined, truncated, doomed):
            yield self.bounded(self.server_dropped(client), "server drops a failed connection")

        expected = [b"one", b"two", b"three", b"four", b"five", b"six", b"seven", b"eight"]
        consumer = yield self.connect()
        consumer.send(MAGIC + b"SUB " + topic + b" ch\nRDY 100\n")
        got = []
        done = defer.Deferred()

        def on_message(data):
            attempts, msg_id, message = decode_message(data)
            got.append((message, attempts))
            consumer.send(b"FIN " + msg_id + b"\n")
            if len(got) == len(expected) and not done.called:
                done.callback(None)

        consumer.on_message = on_message
        # "one" comes back only when the doomed consumer's 1s message timeout expires
        yield self.bounded(done, "consumer got %r" % (got,))
        self.assertEqual(sorted(got), sorted([(b"one", 2)] + [(m, 1) for m in expected[1:]]))
        channel = self.node.topics["lossless"].channels["ch"]
        self.assertEqual((channel.message_count, channel.timeout_count, channel.depth()), (8, 1, 0))
