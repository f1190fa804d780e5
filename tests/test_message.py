"""Message encoding and IDs."""
from __future__ import annotations

import struct

from twisted.trial.unittest import TestCase

from nsqtx.guid import GUIDFactory
from nsqtx.message import Message, decode_message


class MessageTests(TestCase):
    def test_encode_decode_round_trip(self):
        msg = Message(b"0123456789abcdef", b"body", 1234567890123456789, attempts=3)
        data = msg.encode()
        self.assertEqual(data, struct.pack(">qH", 1234567890123456789, 3) + b"0123456789abcdef" + b"body")
        back = decode_message(data)
        self.assertEqual((back.id, back.body, back.timestamp, back.attempts),
                         (msg.id, msg.body, msg.timestamp, msg.attempts))

    def test_decode_refuses_short_buffers(self):
        self.assertRaises(ValueError, decode_message, b"\x00" * 25)

    def test_frame_header_matches_wire_layout(self):
        msg = Message(b"0123456789abcdef", b"xyz", 7, attempts=2)
        frame = msg.frame_header() + msg.id + msg.body
        size, kind, ts, attempts = struct.unpack(">lLqH", frame[:18])
        self.assertEqual((size, kind, ts, attempts), (len(frame) - 4, 2, 7, 2))


class GUIDTests(TestCase):
    def test_ids_are_unique_increasing_hex_and_carry_the_node_id(self):
        factory = GUIDFactory(77, clock=lambda: 1700000000 * 10**9)
        ids = [factory.next_id() for _ in range(10000)]
        self.assertEqual(len(set(ids)), 10000)
        self.assertEqual(ids, sorted(ids))
        for msg_id in ids:
            self.assertEqual(len(msg_id), 16)
            self.assertEqual((int(msg_id, 16) >> 12) & 1023, 77)

    def test_ids_keep_increasing_when_the_clock_steps_back(self):
        now = [1700000000 * 10**9]
        factory = GUIDFactory(1, clock=lambda: now[0])
        first = factory.next_id()
        now[0] -= 10**9
        self.assertGreater(factory.next_id(), first)

    def test_ids_after_a_restart_exceed_earlier_ones(self):
        before = GUIDFactory(1, clock=lambda: 1700000000 * 10**9).next_id()
        after = GUIDFactory(1, clock=lambda: 1700000001 * 10**9).next_id()
        self.assertGreater(after, before)
