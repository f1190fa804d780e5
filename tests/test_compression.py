"""Snappy's framing format and raw deflate: what one side compresses the other reads back in any
chunking, streams made by other libraries are read, garbage is refused, and a small input that
expands hugely comes out in bounded pieces. Then a client negotiating them in IDENTIFY."""
from __future__ import annotations

import json
import struct
import zlib

import cramjam
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from nsqtx.compression import PIECE, CompressionError, DeflateCodec, SnappyCodec, StreamEnded
from tests.support import RESPONSE, ConnCase, body, mpub_body, queued

FLUSHES = st.lists(st.lists(st.binary(max_size=3000), min_size=1, max_size=4), min_size=1, max_size=6)


def chunked(data: bytes, cuts) -> list:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


def decoded(codec, chunks) -> bytes:
    return b"".join(piece for chunk in chunks for piece in codec.decode(chunk))


class CodecTests(TestCase):
    @settings(max_examples=60, deadline=None)
    @given(flushes=FLUSHES, cuts=st.lists(st.integers(min_value=0), max_size=20), deflate=st.booleans())
    def test_what_one_side_compresses_the_other_reads_in_any_chunking(self, flushes, cuts, deflate):
        make = (lambda: DeflateCodec(6)) if deflate else SnappyCodec
        writer, reader = make(), make()
        stream = b"".join(writer.encode([memoryview(part) for part in parts]) for parts in flushes)
        self.assertEqual(decoded(reader, chunked(stream, cuts)), b"".join(b"".join(parts) for parts in flushes))

    def test_every_flush_ends_on_a_frame_boundary(self):
        for make in (SnappyCodec, lambda: DeflateCodec(1)):
            writer, reader = make(), make()
            for message in (b"first", b"second" * 1000):
                self.assertEqual(decoded(reader, [writer.encode([message])]), message)

    def test_streams_of_other_writers_are_read(self):
        # pynsq and gnsq compress each write with a new python-snappy stream compressor
        writes = [b"IDENTIFY", b"x" * 70000, b"PUB t\n"]
        snappy_stream = b"".join(bytes(cramjam.snappy.compress(w)) for w in writes)
        self.assertEqual(decoded(SnappyCodec(), chunked(snappy_stream, range(0, len(snappy_stream), 7))),
                         b"".join(writes))
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        deflate_stream = b"".join(compressor.compress(w) + compressor.flush(zlib.Z_SYNC_FLUSH) for w in writes)
        self.assertEqual(decoded(DeflateCodec(6), [deflate_stream]), b"".join(writes))

    def test_garbage_is_refused(self):
        cases = [(SnappyCodec(), b"\x00\x05\x00\x00garbage"), (SnappyCodec(), b"\x02\x01\x00\x00x"),
                 (SnappyCodec(), b"\x00\xff\xff\xff"), (DeflateCodec(6), b"\xff\xff\xff\xff garbage")]
        for codec, data in cases:
            self.assertRaises(CompressionError, list, codec.decode(data))

    def test_a_deflate_stream_s_end_comes_after_what_it_carried(self):
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        ending = compressor.compress(b"last words") + compressor.flush(zlib.Z_FINISH)
        pieces = []
        self.assertRaises(StreamEnded, pieces.extend, DeflateCodec(6).decode(ending + b"after the end"))
        self.assertEqual(pieces, [b"last words"])

    def test_a_huge_expansion_comes_out_in_bounded_pieces(self):
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = compressor.compress(b"\x00" * (10 * PIECE)) + compressor.flush(zlib.Z_SYNC_FLUSH)
        pieces = list(DeflateCodec(6).decode(bomb))
        self.assertEqual((sum(map(len, pieces)), max(map(len, pieces))), (10 * PIECE, PIECE))


class NegotiationTests(ConnCase):
    """A client on a StringTransport: the IDENTIFY reply in plain, then everything compressed."""

    def negotiate(self, codec, **fields):
        conn = self.conn()
        body_json = json.dumps(dict(fields, feature_negotiation=True)).encode()
        return conn, b"IDENTIFY\n" + struct.pack(">l", len(body_json)) + body_json

    def plain_frames(self, data: bytes) -> list:
        frames = []
        while data:
            size, kind = struct.unpack_from(">lL", data)
            frames.append((kind, data[8:4 + size]))
            data = data[4 + size:]
        return frames

    def test_reply_in_plain_then_ok_and_answers_compressed(self):
        for name, client_codec, fields in (("snappy", SnappyCodec(), {"snappy": True}),
                                           ("deflate", DeflateCodec(3), {"deflate": True, "deflate_level": 3})):
            conn, identify = self.negotiate(client_codec, **fields)
            conn.send(identify)
            raw = conn.transport.value()
            conn.transport.clear()
            size = struct.unpack_from(">l", raw)[0]
            reply = json.loads(raw[8:4 + size])
            self.assertEqual(reply[name], True, name)
            self.assertEqual(self.plain_frames(decoded(client_codec, [raw[4 + size:]])), [(RESPONSE, b"OK")])
            conn.send(client_codec.encode([b"PUB " + name.encode() + b"\n", struct.pack(">l", 2), b"hi"]))
            self.assertEqual(self.plain_frames(decoded(client_codec, [conn.transport.value()])), [(RESPONSE, b"OK")])
            self.assertEqual([body(m) for m in queued(self.node.topics[name].queue.memory)], [b"hi"])
            self.assertTrue(getattr(conn.client, name))

    def test_what_follows_identify_in_the_same_read_is_read_compressed(self):
        client_codec = SnappyCodec()
        conn, identify = self.negotiate(client_codec, snappy=True)
        batch = mpub_body([b"a", b"b"])
        conn.send(identify + client_codec.encode([b"MPUB t\n", struct.pack(">l", len(batch)), batch]))
        raw = conn.transport.value()
        size = struct.unpack_from(">l", raw)[0]
        self.assertEqual(self.plain_frames(decoded(client_codec, [raw[4 + size:]])),
                         [(RESPONSE, b"OK"), (RESPONSE, b"OK")])

    def test_a_deflate_stream_s_end_closes_quietly_after_the_commands_it_carried(self):
        conn, identify = self.negotiate(None, deflate=True)
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        conn.send(identify + compressor.compress(b"PUB t\n" + struct.pack(">l", 4) + b"last")
                  + compressor.flush(zlib.Z_FINISH))
        self.assertTrue(conn.closed)
        self.assertEqual([body(m) for m in queued(self.node.topics["t"].queue.memory)], [b"last"])
        self.assertEqual([e for e in events if e["log_level"].name in ("warn", "error", "critical")], [])

    def test_garbage_in_a_compressed_stream_closes_that_connection_only(self):
        conn, identify = self.negotiate(SnappyCodec(), snappy=True)
        conn.send(identify + b"\x00\x05\x00\x00garbage")
        self.assertTrue(conn.closed)
        other = self.conn(4001)
        other.command(b"PUB t", b"x")
        self.assertEqual(other.frames(), [(RESPONSE, b"OK")])

    def test_a_server_without_snappy_or_deflate_offers_neither(self):
        self.node.options.snappy = self.node.options.deflate = False
        conn, identify = self.negotiate(None, snappy=True)
        conn.send(identify)
        [(kind, data)] = conn.frames()
        self.assertEqual((kind, json.loads(data)["snappy"]), (RESPONSE, False))
        conn.command(b"NOP")
        self.assertEqual(conn.frames(), [])

    def test_deflate_level_is_capped_by_max_deflate_level(self):
        self.node.options.max_deflate_level = 4
        conn, identify = self.negotiate(None, deflate=True, deflate_level=9)
        conn.send(identify)
        raw = conn.transport.value()
        size = struct.unpack_from(">l", raw)[0]
        self.assertEqual(json.loads(raw[8:4 + size])["deflate_level"], 4)
        self.assertNotEqual(raw[4 + size:], b"")
