"""Messages as they wait in memory, as they are redelivered, and as Go nsqd stores them on disk."""
from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from nsqtx.guid import GUIDFactory
from nsqtx.batch import Batch
from nsqtx.message import from_disk, new_batch, requeued, to_disk
from tests.support import attempts, body, encode, from_memory, in_memory, message_id


class FakeNode:
    def __init__(self):
        self.guid = GUIDFactory(1, clock=lambda: 1700000000 * 10**9)

    def now_ns(self):
        return 1234567890123456789


class EncodingTests(TestCase):
    def test_layout_is_nsqds_message_frame_without_its_size(self):
        data = in_memory(1234567890123456789, 3, b"0123456789abcdef", b"body")
        self.assertEqual(data, struct.pack(">LqH", 2, 1234567890123456789, 4) + b"0123456789abcdef" + b"body")
        nsqd = from_memory(data)
        self.assertEqual(nsqd, encode(1234567890123456789, 3, b"0123456789abcdef", b"body"))
        self.assertEqual((message_id(nsqd), body(nsqd), attempts(nsqd)), (b"0123456789abcdef", b"body", 3))

    def test_new_messages_get_distinct_ids_one_timestamp_and_no_attempts(self):
        first, second = map(from_memory, new_batch(FakeNode(), [b"a", memoryview(b"xbx")[1:2]]))
        self.assertNotEqual(message_id(first), message_id(second))
        self.assertEqual((body(first), body(second)), (b"a", b"b"))
        self.assertEqual(first[:10], struct.pack(">qH", 1234567890123456789, 0))
        self.assertEqual(second[:10], first[:10])

    def test_a_batch_is_the_frames_delivering_its_messages(self):
        records = new_batch(FakeNode(), [b"a", b"bc"]).records
        frames = []
        pos = 0
        while pos < len(records):
            size, kind = struct.unpack_from(">lL", records, pos)
            frames.append((kind, records[pos + 8:pos + 4 + size]))
            pos += 4 + size
        self.assertEqual(pos, len(records))
        self.assertEqual([(kind, attempts(data), body(data)) for kind, data in frames], [(2, 1, b"a"), (2, 1, b"bc")])

    def test_a_batch_across_a_tick_boundary_pairs_every_body_with_its_own_id(self):
        bodies = [b"%d" % i for i in range(5000)]
        messages = [from_memory(data) for data in new_batch(FakeNode(), bodies)]
        self.assertEqual([body(m) for m in messages], bodies)
        ids = [message_id(m) for m in messages]
        self.assertEqual(len(set(ids)), 5000)
        self.assertEqual(ids, sorted(ids))


class DeliveryTests(TestCase):
    def test_requeued_waits_for_the_next_attempt(self):
        records = b"junk" + Batch.of([in_memory(7, 0, b"0123456789abcdef", b"xyz")]).records + b"more"
        self.assertEqual(requeued(records, 8), in_memory(7, 1, b"0123456789abcdef", b"xyz"))

    def test_attempts_wrap_as_nsqds_uint16(self):
        records = Batch.of([in_memory(7, 65534, b"0123456789abcdef", b"xyz")]).records
        self.assertEqual(struct.unpack_from(">H", requeued(records, 4), 12), (0,))


class DiskFormatTests(TestCase):
    @given(st.lists(st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 65535), st.binary(min_size=16, max_size=16),
                              st.binary(max_size=50)), max_size=20))
    def test_disk_records_are_nsqds_encoding_and_convert_back(self, messages):
        batch = Batch.of(in_memory(*m) for m in messages)
        disk = to_disk(batch)
        self.assertEqual((disk.records, disk.count), (Batch.of(encode(*m) for m in messages).records, len(messages)))
        back = from_disk(disk)
        self.assertEqual((back.records, back.count), (batch.records, batch.count))
