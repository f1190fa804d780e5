"""Message IDs: nsqd's layout, unique and increasing, also across a restart and a clock stepping back."""
from __future__ import annotations

from twisted.trial.unittest import TestCase

from nsqtx.guid import GUIDFactory
from tests.support import ids


class GUIDTests(TestCase):
    def test_ids_are_unique_increasing_hex_and_carry_the_node_id(self):
        factory = GUIDFactory(77, clock=lambda: 1700000000 * 10**9)
        all_ids = ids(factory, 10000)
        self.assertEqual(len(set(all_ids)), 10000)
        self.assertEqual(all_ids, sorted(all_ids))
        for msg_id in all_ids:
            self.assertEqual(len(msg_id), 16)
            self.assertEqual((int(msg_id, 16) >> 12) & 1023, 77)

    def test_ids_keep_increasing_when_the_clock_steps_back(self):
        now = [1700000000 * 10**9]
        factory = GUIDFactory(1, clock=lambda: now[0])
        [first] = ids(factory, 1)
        now[0] -= 10**9
        self.assertGreater(ids(factory, 1)[0], first)

    def test_ids_after_a_restart_exceed_earlier_ones(self):
        [before] = ids(GUIDFactory(1, clock=lambda: 1700000000 * 10**9), 1)
        [after] = ids(GUIDFactory(1, clock=lambda: 1700000001 * 10**9), 1)
        self.assertGreater(after, before)

    def test_batches_match_one_by_one_and_span_ticks(self):
        now = [1700000000 * 10**9]
        batch = ids(GUIDFactory(9, clock=lambda: now[0]), 10000)
        single = GUIDFactory(9, clock=lambda: now[0])
        self.assertEqual(batch, [ids(single, 1)[0] for _ in range(10000)])
        self.assertEqual(len(set(batch)), 10000)
        self.assertEqual(batch, sorted(batch))
        self.assertEqual([int(i, 16) & 0xfff for i in batch[4094:4098]], [4094, 4095, 0, 1])

    def test_layout_is_time_node_sequence(self):
        ns = 1700000000 * 10**9
        [first] = ids(GUIDFactory(5, clock=lambda: ns), 1)
        self.assertEqual(int(first, 16), (((ns >> 20) - 1288834974288) << 22) | (5 << 12))
