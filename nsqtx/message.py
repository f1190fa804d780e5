"""Messages as nsqd encodes them: 8-byte ns timestamp, 2-byte attempts, 16-byte hex ID, body.

A queued message (ready in memory, deferred, or on disk) is just that encoded `bytes`, held in a
:class:`~nsqtx.batch.Batch` with the others published with it: immutable, so every channel of a
topic shares it; not a container, so CPython's garbage collector never walks a large queue; and
already in the disk queue's record format. A delivery's state lives in its channel's
:class:`~nsqtx.in_flight.InFlight` table, pointing into the batch.
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
#: where the ID starts in an encoded message
ID_OFFSET = _ENCODED_HEADER.size
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


def append_frame(parts: list, records: bytes, start: int, end: int) -> int:
    """Add the frame delivering the encoded message at records[start:end] (header, then ID and
    body) to an output buffer, counting this delivery as an attempt; returns the frame's size.

    The body is cut out of its batch only here, while it is written."""
    timestamp, attempts = _unpack_header(records, start)
    parts.append(_pack_frame_header(end - start + 4, FRAME_TYPE_MESSAGE, timestamp, attempts + 1))
    parts.append(records[start + ID_OFFSET:end])
    return end - start + 8


def requeued(records: bytes, start: int, end: int) -> bytes:
    """The delivered message at records[start:end] encoded to queue again, carrying the attempts
    made so far (the delivery's)."""
    timestamp, attempts = _unpack_header(records, start)
    return _ENCODED_HEADER.pack(timestamp, attempts + 1) + records[start + ID_OFFSET:end]
