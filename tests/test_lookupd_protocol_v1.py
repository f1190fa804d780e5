"""nsqtx.lookupd.protocol_v1 against Go nsqlookupd 1.3's tcp.go and lookup_protocol_v1.go: the
commands, their answers and errors, what they do to the registration database, and (hypothesis)
properties of the parser: any chunking of a valid stream gives the same answers, and garbage ends
in an error response and a close, never a traceback or an effect on another connection."""
from __future__ import annotations

import json
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv6Address
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from nsqtx.lookupd.protocol_v1 import (MAGIC_V1, MAX_IDENTIFY_SIZE, MAX_LINE_LENGTH, V1Factory, client_address,
                                       decode_identify)
from nsqtx.lookupd.registration_db import CLIENT, channel_registration, topic_registration
from tests.properties import SLOW_IS_FINE, NoTracebacksMixin, chunkings, mutations, sized
from tests.support import V1Conn, identity, make_lookupd, v1_responses


class V1Case(TestCase):
    def setUp(self):
        self.lookupd, self.clock = make_lookupd(self)
        self.db = self.lookupd.db

    def conn(self, port=4000) -> V1Conn:
        return V1Conn(self.lookupd, port).magic()

    def identified(self, port=4000, **fields) -> V1Conn:
        conn = self.conn(port)
        conn.identify(**fields)
        self.assertEqual(conn.responses()[0][:1], b"{")
        return conn

    def assertOK(self, conn):
        self.assertEqual(conn.responses(), [b"OK"])
        self.assertFalse(conn.closed)

    def assertError(self, conn, text: bytes):
        """Every error in V1 is fatal: its text as the response, then the close."""
        self.assertEqual(conn.responses(), [text])
        self.assertTrue(conn.closed)

    def producers(self, registration) -> list:
        return list(self.db.registrations.get(registration, {}))


class MagicTests(V1Case):
    def test_bad_magic_is_refused_and_closed(self):
        conn = V1Conn(self.lookupd)
        conn.send(b"  V2PING\n")
        self.assertError(conn, b"E_BAD_PROTOCOL")

    def test_magic_in_pieces(self):
        conn = V1Conn(self.lookupd)
        for byte in b"  V1PING\n":
            conn.send(bytes([byte]))
        self.assertOK(conn)

    def test_fewer_than_four_bytes_wait(self):
        conn = V1Conn(self.lookupd)
        conn.send(b"  V")
        self.assertEqual((conn.responses(), conn.closed), ([], False))

    def test_ipv6_peer_is_written_as_go_does(self):
        self.assertEqual(client_address(IPv6Address("TCP", "::1", 4150)), "[::1]:4150")
        proto = V1Factory(self.lookupd).buildProtocol(None)
        proto.makeConnection(StringTransport(peerAddress=IPv6Address("TCP", "::1", 4150)))
        proto.dataReceived(MAGIC_V1 + b"IDENTIFY\n" + sized(json.dumps(identity()).encode()))
        self.assertEqual(self.producers(CLIENT), ["[::1]:4150"])
        proto.connectionLost(None)


class IdentifyTests(V1Case):
    def test_reply_is_lookupds_own_json(self):
        conn = self.conn()
        conn.identify()
        expected = b'{"broadcast_address":"lookupd.test","hostname":%s,"http_port":4161,"tcp_port":4160,' \
                   b'"version":"1.3.0"}' % json.dumps(socket.gethostname()).encode()
        self.assertEqual(conn.responses(), [expected])
        self.assertFalse(conn.closed)

    def test_the_node_is_registered_as_a_client(self):
        conn = self.identified(hostname="h", broadcast_address="b", tcp_port=1, http_port=2, remote_address="x")
        [producer] = self.db.registrations[CLIENT].values()
        info = producer.peer_info
        self.assertEqual((info.id, info.remote_address), (conn.id, conn.id))
        self.assertEqual(info.document(), {"remote_address": conn.id, "hostname": "h", "broadcast_address": "b",
                                           "tcp_port": 1, "http_port": 2, "version": "1.3.0"})
        self.assertEqual(info.last_update, 1000 * 10 ** 9)

    def test_identify_again_is_refused(self):
        conn = self.identified()
        conn.identify()
        self.assertError(conn, b"E_INVALID cannot IDENTIFY again")

    def test_missing_fields(self):
        for field in ("broadcast_address", "tcp_port", "http_port", "version"):
            conn = self.conn()
            body = identity()
            del body[field]
            conn.command(b"IDENTIFY", json.dumps(body).encode())
            self.assertError(conn, b"E_BAD_BODY IDENTIFY missing fields")
        conn = self.conn()
        conn.command(b"IDENTIFY", json.dumps(identity(tcp_port=0, hostname="")).encode())
        self.assertError(conn, b"E_BAD_BODY IDENTIFY missing fields")
        self.assertEqual(self.db.registrations, {})

    def test_bodies_go_cannot_decode(self):
        for body in (b"", b"not json", b"[]", b'"str"', b"1", b'{"tcp_port": "4150"}', b'{"tcp_port": 4150.0}',
                     b'{"version": 1}', b'{"tcp_port": NaN}', b'{"a": 1} {"b": 2}', b"[" * 60000):
            conn = self.conn()
            conn.command(b"IDENTIFY", body)
            self.assertError(conn, b"E_BAD_BODY IDENTIFY failed to decode JSON body")
        self.assertEqual(self.db.registrations, {})

    def test_an_error_is_logged_once_with_its_cause(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        conn = self.conn()
        conn.command(b"IDENTIFY", b"{")
        errors = [formatEvent(e) for e in events if e["log_level"] in (LogLevel.warn, LogLevel.error)]
        self.assertEqual(len(errors), 1, errors)
        self.assertTrue(errors[0].startswith("[10.0.0.1:4000] - E_BAD_BODY IDENTIFY failed to decode JSON body - "),
                        errors[0])

    def test_body_size_bounds(self):
        conn = self.conn()
        conn.send(b"IDENTIFY\n" + struct.pack(">l", -1))
        self.assertError(conn, b"E_BAD_BODY IDENTIFY invalid body size -1")
        conn = self.conn()
        conn.send(b"IDENTIFY\n" + struct.pack(">l", MAX_IDENTIFY_SIZE + 1))
        self.assertError(conn, b"E_BAD_BODY IDENTIFY body too big %d > %d" % (MAX_IDENTIFY_SIZE + 1, MAX_IDENTIFY_SIZE))
        conn = self.conn()
        padded = json.dumps(identity()).encode()
        conn.command(b"IDENTIFY", padded + b" " * (MAX_IDENTIFY_SIZE - len(padded)))
        self.assertEqual(conn.responses()[0][:1], b"{")

    def test_parameters_after_identify_are_ignored(self):
        conn = self.conn()
        conn.command(b"IDENTIFY whatever", json.dumps(identity()).encode())
        self.assertEqual(conn.responses()[0][:1], b"{")


class DecodeIdentifyTests(TestCase):
    """Go's json.Unmarshal into a PeerInfo."""

    def test_fields(self):
        self.assertEqual(decode_identify(json.dumps(identity(extra={"nested": [1]})).encode()), identity())

    def test_keys_match_fields_ignoring_case(self):
        self.assertEqual(decode_identify(b'{"TCP_PORT": 1, "Version": "v", "\xc5\xbfo": 1, "hostname": "h"}'),
                         {"tcp_port": 1, "version": "v", "hostname": "h"})
        self.assertEqual(decode_identify('{"\u212aEEP": 1, "http_port": 2}'.encode()), {"http_port": 2})
        self.assertEqual(decode_identify('{"ver\u017fion": "v"}'.encode()), {"version": "v"})

    def test_the_last_duplicate_wins(self):
        self.assertEqual(decode_identify(b'{"tcp_port": 1, "TCP_PORT": 2}'), {"tcp_port": 2})

    def test_nulls_are_ignored(self):
        self.assertEqual(decode_identify(b"null"), {})
        self.assertEqual(decode_identify(b'{"tcp_port": 1, "tcp_port": null}'), {"tcp_port": 1})

    def test_integers_beyond_int64(self):
        self.assertEqual(decode_identify(b'{"tcp_port": -9223372036854775808}'), {"tcp_port": -(1 << 63)})
        for number in (b"9223372036854775808", b"1" * 5000, b"1e2", b"true"):
            self.assertRaises(ValueError, decode_identify, b'{"tcp_port": %s}' % number)
        self.assertEqual(decode_identify(b'{"other": %s}' % (b"1" * 5000)), {})

    def test_lone_surrogates_become_replacement_characters(self):
        self.assertEqual(decode_identify(b'{"hostname": "a\\ud800b\\ud83d\\ude00"}'),
                         {"hostname": "a\ufffdb\U0001f600"})

    def test_invalid_utf8_in_strings_is_replaced(self):
        self.assertEqual(decode_identify(b'{"hostname": "a\xffb"}'), {"hostname": "a\ufffdb"})


class RegisterTests(V1Case):
    def test_register_must_follow_identify(self):
        for line in (b"REGISTER t", b"UNREGISTER t c"):
            conn = self.conn()
            conn.command(line)
            self.assertError(conn, b"E_INVALID client must IDENTIFY")

    def test_topic(self):
        conn = self.identified()
        conn.command(b"REGISTER t")
        self.assertOK(conn)
        self.assertEqual(self.producers(topic_registration("t")), [conn.id])

    def test_channel_registers_its_topic_too(self):
        conn = self.identified()
        conn.command(b"REGISTER t c")
        self.assertOK(conn)
        self.assertEqual(self.producers(channel_registration("t", "c")), [conn.id])
        self.assertEqual(self.producers(topic_registration("t")), [conn.id])

    def test_again_is_ok(self):
        conn = self.identified()
        conn.command(b"REGISTER t c")
        conn.command(b"REGISTER t c")
        self.assertEqual(conn.responses(), [b"OK", b"OK"])

    def test_empty_channel_parameter_is_no_channel(self):
        """Lines are split at single spaces: "t  c" is t, "" and c, and "" means no channel."""
        conn = self.identified()
        conn.command(b"REGISTER t  c")
        self.assertOK(conn)
        self.assertEqual(self.db.find_registrations("channel", "*", "*"), [])
        self.assertEqual(self.producers(topic_registration("t")), [conn.id])

    def test_extra_parameters_are_ignored(self):
        conn = self.identified()
        conn.command(b"REGISTER t c d")
        self.assertOK(conn)
        self.assertEqual(self.producers(channel_registration("t", "c")), [conn.id])

    def test_parameter_errors(self):
        for line, error in [
            (b"REGISTER", b"E_INVALID REGISTER insufficient number of params"),
            (b"UNREGISTER   ", b"E_INVALID UNREGISTER insufficient number of params"),
            (b"REGISTER b@d", b"E_BAD_TOPIC REGISTER topic name 'b@d' is not valid"),
            (b"REGISTER  c", b"E_BAD_TOPIC REGISTER topic name '' is not valid"),
            (b"UNREGISTER t b@d", b"E_BAD_CHANNEL UNREGISTER channel name 'b@d' is not valid"),
            (b"REGISTER \xff\xfe", b"E_BAD_TOPIC REGISTER topic name '\xff\xfe' is not valid"),
            (b"REGISTER " + b"t" * 65, b"E_BAD_TOPIC REGISTER topic name '" + b"t" * 65 + b"' is not valid"),
        ]:
            conn = self.identified()
            conn.command(line)
            self.assertError(conn, error)
            conn.lose()

    def two_nodes(self, *names) -> tuple:
        """Two identified nodes, each having registered each of `names` ("topic" or "topic channel")."""
        nodes = self.identified(4000), self.identified(4001)
        for conn in nodes:
            self.send_all(conn, b"REGISTER", names)
        return nodes

    def send_all(self, conn, command: bytes, names) -> None:
        for name in names:
            conn.command(command + b" " + name)
        self.assertEqual(conn.responses(), [b"OK"] * len(names))

    def test_unregister_channel_keeps_it_listed(self):
        """As in Go, a channel's registration stays when its producers go; only an ephemeral one that
        no node has any more goes with them."""
        channels = (b"t c", b"t c#ephemeral")
        a, b = self.two_nodes(*channels)
        self.send_all(a, b"UNREGISTER", channels)
        self.assertEqual(self.producers(channel_registration("t", "c")), [b.id])
        self.assertEqual(self.producers(channel_registration("t", "c#ephemeral")), [b.id])
        self.send_all(b, b"UNREGISTER", channels)
        self.assertEqual(self.db.find_registrations("channel", "t", "*"), [channel_registration("t", "c")])
        self.assertEqual(self.producers(topic_registration("t")), [a.id, b.id])

    def test_unregister_topic_takes_its_channels_and_an_ephemeral_topic(self):
        a, b = self.two_nodes(b"t c", b"e#ephemeral")
        self.send_all(a, b"UNREGISTER", (b"t", b"e#ephemeral"))
        self.assertEqual(self.producers(channel_registration("t", "c")), [b.id])
        self.assertEqual(self.producers(topic_registration("t")), [b.id])
        self.assertEqual(self.producers(topic_registration("e#ephemeral")), [b.id])
        self.send_all(b, b"UNREGISTER", (b"t", b"e#ephemeral"))
        self.assertEqual([r.key for r in self.db.find_registrations("topic", "*", "")], ["t"])
        self.assertEqual(self.producers(topic_registration("t")), [])

    def test_unregister_what_was_never_registered_is_ok(self):
        conn = self.identified()
        conn.command(b"UNREGISTER nope")
        conn.command(b"UNREGISTER nope c#ephemeral")
        self.assertEqual(conn.responses(), [b"OK", b"OK"])
        self.assertEqual(self.db.find_registrations("topic", "*", ""), [])


class PingTests(V1Case):
    def test_ping_before_identify_is_ok(self):
        conn = self.conn()
        conn.command(b"PING")
        self.assertOK(conn)

    def test_ping_marks_the_node_active(self):
        conn = self.identified()
        [producer] = self.db.registrations[CLIENT].values()
        self.clock.advance(15)
        conn.command(b"PING with anything after it")
        self.assertOK(conn)
        self.assertEqual(producer.peer_info.last_update, 1015 * 10 ** 9)


class LinesTests(V1Case):
    def test_unknown_commands(self):
        for line, error in [(b"FOO", b"E_INVALID invalid command FOO"), (b"ping", b"E_INVALID invalid command ping"),
                            (b"", b"E_INVALID invalid command "), (b"  ", b"E_INVALID invalid command "),
                            (b"\xffPING", b"E_INVALID invalid command \xffPING"),
                            (b"PING\x1c", b"E_INVALID invalid command PING\x1c")]:
            conn = self.conn()
            conn.command(line)
            self.assertError(conn, error)

    def test_white_space_around_a_line_is_go_s_trimmed(self):
        conn = self.conn()
        for line in (b"  PING \r", b"\tPING\x0b\x0c", "\u00a0PING\u3000".encode(), b"PING\r\r"):
            conn.command(line)
            self.assertOK(conn)

    def test_a_line_of_the_longest_length_is_read(self):
        conn = self.identified()
        conn.command(b"REGISTER t" + b" " * (MAX_LINE_LENGTH - 10))
        self.assertOK(conn)

    def test_longer_lines_are_refused(self):
        conn = self.identified()
        conn.send(b"REGISTER t" + b" " * (MAX_LINE_LENGTH - 9))
        self.assertError(conn, b"E_INVALID command line too long")
        conn = self.identified(4001)
        conn.command(b"REGISTER t" + b" " * (MAX_LINE_LENGTH - 9))
        self.assertError(conn, b"E_INVALID command line too long")

    def test_nothing_is_read_after_an_error(self):
        conn = self.identified()
        conn.send(b"BAD\nREGISTER t\n")
        self.assertError(conn, b"E_INVALID invalid command BAD")
        conn.send(b"PING\n")
        self.assertEqual(conn.responses(), [])
        self.assertEqual(self.db.find_registrations("topic", "*", ""), [])

    def test_commands_in_one_chunk_are_answered_in_order(self):
        conn = self.conn()
        conn.send(b"PING\nIDENTIFY\n" + sized(json.dumps(identity()).encode()) + b"REGISTER t c\nPING\n")
        responses = conn.responses()
        self.assertEqual([responses[0], responses[1][:1], responses[2:]], [b"OK", b"{", [b"OK", b"OK"]])


class ConnectionEndTests(V1Case):
    def test_a_closed_connection_takes_the_nodes_records_with_it(self):
        """The registrations stay (a topic stays listed until deleted), the node's records go."""
        a, b = self.identified(4000), self.identified(4001)
        a.command(b"REGISTER t c")
        b.command(b"REGISTER t")
        a.lose()
        self.assertEqual(self.producers(CLIENT), [b.id])
        self.assertEqual(self.producers(topic_registration("t")), [b.id])
        self.assertEqual(self.producers(channel_registration("t", "c")), [])
        self.assertEqual(list(self.lookupd.clients), [b.proto])

    def test_an_error_takes_them_at_once(self):
        """As when Go's read loop ends: before the connection has finished closing."""
        conn = self.identified()
        conn.command(b"REGISTER t")
        conn.command(b"NOPE")
        self.assertTrue(conn.closed)
        self.assertEqual(self.db.lookup_registrations(conn.id), [])
        conn.lose()
        self.assertEqual(self.producers(topic_registration("t")), [])

    def test_the_partial_last_line_is_dropped(self):
        conn = self.identified()
        conn.send(b"REGISTER t")
        conn.lose()
        self.assertEqual(self.db.registrations, {CLIENT: {}})


# -- properties of the parser (hypothesis)

ERROR_CODES = {b"E_INVALID", b"E_BAD_TOPIC", b"E_BAD_CHANNEL", b"E_BAD_BODY", b"E_BAD_PROTOCOL"}

NAMES = st.sampled_from(["t", "t2", "a.b-c_d", "t#ephemeral", "x" * 64])
CHANNELS = st.sampled_from(["c", "c2", "c#ephemeral"])
#: IDENTIFY bodies as nsqd and others might write them: compact or indented, fields in any case
#: and order, unknown fields, nulls
IDENTIFY_BODIES = st.builds(
    lambda extra, upper, indent: json.dumps(
        {(k.upper() if upper else k): v for k, v in dict(identity(), **extra).items()}, indent=indent).encode(),
    st.fixed_dictionaries({}, optional={"hostname": st.text(max_size=8), "broadcast_address": st.text(min_size=1, max_size=8),
                                        "remote_address": st.text(max_size=4), "other": st.none() | st.integers()}),
    st.booleans(), st.sampled_from([None, 1]))
ENDINGS = st.sampled_from([b"\n", b"\r\n", b" \n", b"\t\r\n"])


@st.composite
def sessions(draw):
    """One node's commands as (line, line ending, body or None), in an order lookupd accepts: PINGs
    anywhere, one IDENTIFY, then REGISTERs and UNREGISTERs; maybe a command lookupd refuses, and
    bytes it must never read."""
    commands = [(b"PING", draw(ENDINGS), None)] * draw(st.integers(0, 2))
    commands.append((b"IDENTIFY", draw(ENDINGS), draw(IDENTIFY_BODIES)))
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["PING", "REGISTER", "UNREGISTER"]))
        line = kind.encode()
        if kind != "PING":
            line += b" " + draw(NAMES).encode()
            if draw(st.booleans()):
                line += b" " + draw(CHANNELS).encode()
        commands.append((line, draw(ENDINGS), None))
    fatal = st.sampled_from([b"BOGUS\n", b"\n", b"REGISTER b@d\n", b"UNREGISTER\n", b"IDENTIFY\n" + sized(b"{}"),
                             b"REGISTER t c!\n", b"X" * (MAX_LINE_LENGTH + 1)])
    tail = draw(st.none() | st.tuples(fatal, st.binary(max_size=30)))
    return commands, tail


def session_bytes(commands, tail, endings=True) -> bytes:
    """The stream after the magic; without `endings`, every line ends in a bare newline."""
    parts = []
    for line, ending, body in commands:
        parts.append(line + (ending if endings else b"\n"))
        if body is not None:
            parts.append(sized(body))
    if tail is not None:
        parts.extend(tail)
    return b"".join(parts)


#: command-like garbage: the protocol's words with parameters right and wrong, IDENTIFY with bodies
#: and sizes right and wrong, and loose bytes
WORDS = st.sampled_from([b"PING", b"IDENTIFY", b"REGISTER", b"UNREGISTER", b"", b"ping", b"  V1"])
PARAMS = st.one_of(st.sampled_from([b"t", b"c", b"t#ephemeral", b"b@d", b"", b"*", b"x" * 65]),
                   st.binary(max_size=6), st.text(max_size=4).map(lambda t: t.encode("utf-8")))
LINES = st.tuples(WORDS, st.lists(PARAMS, max_size=3), st.sampled_from([b"\n", b"\r\n", b"", b"\r"])).map(
    lambda t: b" ".join([t[0]] + t[1]) + t[2])
SIZED = st.one_of(st.binary(max_size=40).map(sized), IDENTIFY_BODIES.map(sized),
                  st.sampled_from([b"{}", b"null", b"[]", b'{"tcp_port": "1"}', b"{"]).map(sized),
                  st.integers(-2 ** 31, 2 ** 31 - 1).map(lambda n: struct.pack(">l", n)),
                  st.integers(0, 40).map(lambda n: struct.pack(">l", n)))
SOUP = st.lists(st.one_of(LINES, LINES, SIZED, st.binary(max_size=8)), min_size=1, max_size=10).map(b"".join)


@st.composite
def mutated_sessions(draw):
    """A valid session with a few bytes overwritten, cut out or put in."""
    commands, tail = draw(sessions())
    return draw(mutations(session_bytes(commands, tail), least=1))


GARBAGE = st.one_of(st.binary(max_size=300), SOUP, SOUP, mutated_sessions())


class ParserPropertyBase(NoTracebacksMixin, TestCase):
    def setUp(self):
        self.watch_tracebacks()

    def feed(self, chunks):
        """A fresh lookupd with a node registered on another connection, and `chunks` fed to a new
        connection; (lookupd, that connection, the other)."""
        lookupd, _ = make_lookupd(self)
        other = V1Conn(lookupd, 5000).magic()
        other.identify()
        other.command(b"REGISTER t c")
        other.responses()
        conn = V1Conn(lookupd, 4000)
        for chunk in chunks:
            conn.send(chunk)
        self.assertNoTracebacks()
        return lookupd, conn, other

    def state(self, lookupd) -> list:
        """The registrations and their producers' records, all of what the database holds."""
        return [(registration, [(id, producer.tombstoned, producer.peer_info.document(), producer.peer_info.last_update)
                                for id, producer in producers.items()])
                for registration, producers in lookupd.db.registrations.items()]

    def assertOtherServed(self, lookupd, other):
        """The other connection's node is still registered and still answered."""
        self.assertEqual(lookupd.db.lookup_registrations(other.id),
                         [CLIENT, channel_registration("t", "c"), topic_registration("t")])
        other.command(b"PING")
        self.assertEqual((other.responses(), other.closed), ([b"OK"], False))


def expected_answers(commands) -> list:
    """What lookupd answers a session's commands (IDENTIFY's JSON shown as its first byte)."""
    return [b"{" if line == b"IDENTIFY" else b"OK" for line, _, _ in commands]


class ChunkingPropertyTests(ParserPropertyBase):
    def run_session(self, chunks) -> dict:
        lookupd, conn, other = self.feed(chunks)
        self.assertOtherServed(lookupd, other)
        return {"responses": v1_responses(conn.transport.value()), "closed": conn.closed, "state": self.state(lookupd)}

    @settings(max_examples=80, deadline=None, suppress_health_check=SLOW_IS_FINE)
    @given(session=sessions(), data=st.data())
    def test_any_chunking_and_line_endings_give_the_same_answers(self, session, data):
        """A stream fed whole with bare newlines, and the same commands with the endings drawn (CRLF,
        trailing white space) in pieces cut anywhere: the same responses, the same close, the same
        registrations; and they are lookupd's answers to those commands."""
        commands, tail = session
        whole = MAGIC_V1 + session_bytes(commands, tail, endings=False)
        stream = MAGIC_V1 + session_bytes(commands, tail)
        reference = self.run_session([whole])
        self.assertEqual(self.run_session(data.draw(chunkings(stream), label="chunks")), reference)

        responses = [r[:1] if r[:1] == b"{" else r for r in reference["responses"]]
        self.assertEqual(reference["closed"], tail is not None)
        if tail is not None:
            self.assertIn(responses.pop().split(b" ")[0], ERROR_CODES)
        self.assertEqual(responses, expected_answers(commands))


class ArbitraryBytesPropertyTests(ParserPropertyBase):
    def check_outcome(self, conn) -> list:
        """Only whole responses; open, or closed right after an error response, with nothing read or
        written after it."""
        responses = v1_responses(conn.transport.value())
        if conn.closed:
            self.assertTrue(responses, "closed without an error response")
            self.assertIn(responses[-1].split(b" ")[0], ERROR_CODES, responses)
            conn.transport.clear()
            conn.send(b"PING\n")
            self.assertEqual(conn.transport.value(), b"")
        for response in responses[:-1] if conn.closed else responses:
            self.assertNotIn(response.split(b" ")[0], ERROR_CODES, responses)
        return responses

    @settings(max_examples=150, deadline=None, suppress_health_check=SLOW_IS_FINE)
    @given(garbage=GARBAGE, data=st.data())
    def test_arbitrary_bytes_after_the_magic_end_in_an_error_response_or_a_close(self, garbage, data):
        """Any bytes after the magic (random, command-like, or a session slightly broken), in any
        pieces: nothing raised, no traceback logged, only whole responses; the connection open with
        no error, or closed right after one; the other connection's node registered and served; and
        where the pieces end changes nothing."""
        stream = MAGIC_V1 + garbage
        chunks = data.draw(chunkings(stream), label="chunks")
        lookupd, conn, other = self.feed(chunks)
        responses = self.check_outcome(conn)
        self.assertOtherServed(lookupd, other)
        if len(chunks) > 1:
            whole_lookupd, whole, _ = self.feed([stream])
            self.assertEqual((v1_responses(whole.transport.value()), whole.closed, self.state(whole_lookupd)),
                             (responses, conn.closed, self.state(lookupd)))

    @settings(max_examples=40, deadline=None, suppress_health_check=SLOW_IS_FINE)
    @given(garbage=GARBAGE, data=st.data())
    def test_bytes_without_the_magic_are_refused(self, garbage, data):
        """Four bytes that are not the magic: E_BAD_PROTOCOL and a close, whatever follows; fewer:
        nothing yet."""
        lookupd, conn, other = self.feed(data.draw(chunkings(garbage), label="chunks"))
        responses = self.check_outcome(conn)
        if len(garbage) >= 4 and garbage[:4] != MAGIC_V1:
            self.assertEqual((responses, conn.closed), ([b"E_BAD_PROTOCOL"], True))
        elif len(garbage) < 4:
            self.assertEqual((responses, conn.closed), ([], False))
        self.assertOtherServed(lookupd, other)
