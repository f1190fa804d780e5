"""A deque of ints for PyPy: a ring over one list of ints, which PyPy stores unboxed.

PyPy's collections.deque holds objects: each int appended is boxed, and a box still queued when the
nursery is collected is copied out of it; its operations are also calls the JIT does not inline.
This ring allocates nothing per item and compiles to a few machine instructions per operation. On
CPython the C deque is faster than any Python code, so this is for PyPy only.

It has the part of the deque interface that a queue needs: append, popleft, indexing, len, iteration.
"""
from __future__ import annotations

_FIRST_SIZE = 64


class IntDeque:
    __slots__ = ("_items", "_head", "_tail", "_mask")

    def __init__(self):
        self._items = [0] * _FIRST_SIZE
        #: positions only grow; position n is at _items[n & _mask]
        self._head = 0
        self._tail = 0
        self._mask = _FIRST_SIZE - 1

    def __len__(self) -> int:
        return self._tail - self._head

    def __bool__(self) -> bool:
        return self._tail != self._head

    def __getitem__(self, index: int) -> int:
        size = self._tail - self._head
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("deque index out of range")
        return self._items[(self._head + index) & self._mask]

    def __iter__(self):
        items, mask = self._items, self._mask
        for n in range(self._head, self._tail):
            yield items[n & mask]

    def append(self, item: int) -> None:
        tail = self._tail
        if tail - self._head > self._mask:
            self._grow()
            tail = self._tail
        self._items[tail & self._mask] = item
        self._tail = tail + 1

    def popleft(self) -> int:
        head = self._head
        if head == self._tail:
            raise IndexError("pop from an empty deque")
        self._head = head + 1
        return self._items[head & self._mask]

    def _grow(self) -> None:
        items = list(self)
        size = 2 * len(self._items)
        self._items = items + [0] * (size - len(items))
        self._head = 0
        self._tail = len(items)
        self._mask = size - 1
