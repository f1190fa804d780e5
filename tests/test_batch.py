"""Batches (records back to back) and the memory queue built on them, checked against plain lists."""
from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from nsqtx.batch import Batch
from nsqtx.memory_queue import MemoryQueue

messages = st.lists(st.binary(min_size=1, max_size=40), max_size=30)


class BatchTests(TestCase):
    def test_records_are_the_disk_queue_format(self):
        batch = Batch.of([b"ab", b"c"])
        self.assertEqual(batch.records, struct.pack(">l", 2) + b"ab" + struct.pack(">l", 1) + b"c")
        self.assertEqual((len(batch), list(batch.sizes()), list(batch)), (2, [2, 1], [b"ab", b"c"]))

    @given(messages, st.integers(min_value=-2, max_value=35))
    def test_split_keeps_every_message_in_order(self, items, count):
        first, rest = Batch.of(items).split(count)
        kept = items[:max(count, 0)]
        self.assertEqual((list(first), len(first)), (kept, len(kept)))
        self.assertEqual((list(rest), len(rest)), (items[len(kept):], len(items) - len(kept)))


def pop(queue, count: int) -> list:
    """Take up to `count` messages as the pump does: a run from the front of the oldest batch."""
    records, pos, available = queue.front()
    out = []
    for _ in range(min(count, available)):
        end = pos + 4 + struct.unpack_from(">l", records, pos)[0]
        out.append(records[pos + 4:end])
        pos = end
    queue.advance(pos, len(out))
    return out


def popleft(queue):
    [data] = pop(queue, 1)
    return data


class MemoryQueueTests(TestCase):
    @given(st.lists(st.tuples(messages, st.integers(min_value=0, max_value=40)), max_size=8),
           st.integers(min_value=1, max_value=50))
    def test_behaves_as_a_fifo_of_messages(self, steps, take):
        """Each step puts a batch and pops some messages in runs; the queue must always match a list."""
        queue, model = MemoryQueue(), []
        for items, pops in steps:
            queue.put(Batch.of(items))
            model.extend(items)
            pops = min(pops, len(model))
            while pops:
                run = pop(queue, pops)
                self.assertEqual(run, model[:len(run)])
                del model[:len(run)]
                pops -= len(run)
            self.assertEqual((len(queue), list(queue), bool(queue)), (len(model), model, bool(model)))
        taken = queue.take(take)
        got = [data for batch in taken for data in batch]
        self.assertEqual(got, model[:len(got)])
        self.assertTrue(len(got) >= min(take, len(model)))
        self.assertEqual((list(queue), len(queue)), (model[len(got):], len(model) - len(got)))
        rest = [data for batch in queue.take() for data in batch]
        self.assertEqual((got + rest, len(queue)), (model, 0))

    def test_take_returns_whole_batches_and_the_rest_of_a_started_one(self):
        queue = MemoryQueue()
        first, second = Batch.of([b"1", b"2", b"3"]), Batch.of([b"4"])
        queue.put(first)
        queue.put(second)
        self.assertEqual(popleft(queue), b"1")
        taken = queue.take(1)
        self.assertEqual([list(batch) for batch in taken], [[b"2", b"3"]])
        self.assertIs(queue.take(1)[0], second)

    def test_empty_batches_take_no_place(self):
        queue = MemoryQueue()
        queue.put(Batch.of([]))
        queue.append(b"x")
        self.assertEqual((len(queue), queue.take()[0].count), (1, 1))
        self.assertRaises(IndexError, queue.front)

    def test_clear_forgets_a_started_batch(self):
        queue = MemoryQueue()
        queue.put(Batch.of([b"a", b"b"]))
        popleft(queue)
        queue.clear()
        queue.put(Batch.of([b"c"]))
        self.assertEqual((len(queue), list(queue), popleft(queue)), (1, [b"c"], b"c"))
