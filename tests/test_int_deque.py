"""IntDeque against collections.deque: the same answers to the same operations, through growth and wrap-around."""
from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from nsqtx.int_deque import IntDeque

operations = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(-2**62, 2**62)),
    st.tuples(st.just("popleft")),
    st.tuples(st.just("index"), st.integers(-300, 300)),
), max_size=400)


class IntDequeTests(TestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(0, 1000), max_size=100), operations)
    def test_matches_deque(self, initial, ops):
        ours, theirs = IntDeque(), deque()
        for item in initial:
            ours.append(item)
            theirs.append(item)
        for op in ops:
            if op[0] == "append":
                ours.append(op[1])
                theirs.append(op[1])
            else:
                method = "popleft" if op[0] == "popleft" else "__getitem__"
                args = op[1:]
                try:
                    expected = getattr(theirs, method)(*args)
                except IndexError:
                    self.assertRaises(IndexError, getattr(ours, method), *args)
                else:
                    self.assertEqual(getattr(ours, method)(*args), expected)
            self.assertEqual((len(ours), bool(ours), list(ours)), (len(theirs), bool(theirs), list(theirs)))

    def test_grows_keeping_order_when_its_items_wrap_around(self):
        ours, theirs = IntDeque(), deque()
        for n in range(1000):
            ours.append(n)
            theirs.append(n)
            if n % 3 == 0:
                self.assertEqual(ours.popleft(), theirs.popleft())
            self.assertEqual(list(ours), list(theirs))
