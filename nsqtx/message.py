"""Messages as nsqd encodes them: 8-byte ns timestamp, 2-byte attempts, 16-byte hex ID, body.

A queued message (ready in memory, deferred, or on disk) is just that encoded `bytes`, held in a
:class:`~nsqtx.batch.Batch` with the others published with it: immutable, so every channel of a
topic shares it; not a container, so CPython's garbage collector never walks a large queue; and
already in the disk queue's record format. Only a message in flight, of which RDY bounds the number,
gets a :class:`Message` object for its delivery state.
"""
from __future__ import annotations

import struct

from nsqtx.batch import Batch

_ENCODED_HEADER = struct.Struct(">qH")
_unpack_header = _ENCODED_HEADER.unpack_from
#: size, frame type, timestamp, attempts: what precedes ID and body in a message frame.
_FRAME_HEADER = struct.Struct(">lLqH")
_pack_frame_header = _FRAME_HEADER.pack
ID_LENGTH = 16
#: timestamp + attempts + ID: the smallest valid encoded message, as nsqd's minValidMsgLength.
MIN_ENCODED_LENGTH = _ENCODED_HEADER.size + ID_LENGTH
BODY_OFFSET = MIN_ENCODED_LENGTH
#: a new message's record up to its body: record length, timestamp, attempts, ID (13-digit prefix, 3-digit suffix)
_pack_record_header = struct.Struct(">lqH13s3s").pack
FRAME_TYPE_MESSAGE = 2


def new_batch(node, bodies) -> Batch:
    """Encode freshly published bodies, with new IDs and one publish timestamp, into one batch."""
    timestamp = node.now_ns()
    remaining = iter(bodies)
    parts = []
    append = parts.append
    for id_prefix, suffixes in node.guid.runs(len(bodies)):
        # zip stops at the end of this run's suffixes without taking a body from `remaining`
        for suffix, body in zip(suffixes, remaining):
            append(_pack_record_header(MIN_ENCODED_LENGTH + len(body), timestamp, 0, id_prefix, suffix))
            append(body)
    return Batch(b"".join(parts), len(parts) // 2)


class Message:
    """One delivery of a queued message to a client, tracked until FIN, REQ or timeout.

    It points into the batch the message came from instead of holding a copy of it: the body is cut
    out only while its frame is written, so what stays alive in flight is small (on PyPy, copying
    in-flight messages out of the nursery was half of a consumer's cost)."""

    __slots__ = ("id", "records", "start", "end", "timestamp", "attempts", "client", "deadline", "delivered_at")

    def __init__(self, records: bytes, start: int, end: int, client, now: float, deadline: float):
        """The encoded message at records[start:end] (a batch's span, or a whole bytes with 0, len)."""
        timestamp, attempts = _unpack_header(records, start)
        self.records = records
        self.start = start
        self.end = end
        self.id = records[start + 10:start + BODY_OFFSET]
        self.timestamp = timestamp
        self.attempts = attempts + 1
        self.client = client
        self.delivered_at = now
        self.deadline = deadline

    def append_frame(self, parts: list) -> int:
        """Add this delivery's frame (header, then ID and body) to an output buffer; returns its size."""
        start = self.start
        end = self.end
        parts.append(_pack_frame_header(end - start + 4, FRAME_TYPE_MESSAGE, self.timestamp, self.attempts))
        parts.append(self.records[start + 10:end])
        return end - start + 8

    def requeued(self) -> bytes:
        """The encoded message to queue again, carrying the attempts made so far (this one's)."""
        return _ENCODED_HEADER.pack(self.timestamp, self.attempts) + self.records[self.start + 10:self.end]
