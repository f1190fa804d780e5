"""Messages as they wait in memory: each one already the frame that will deliver it.

A queued message (ready in memory, or deferred) is encoded as nsqd's message frame without its
4-byte size: frame type, 8-byte ns timestamp, 2-byte attempts (counting the delivery it waits
for), 16-byte hex ID, body. In a :class:`~nsqtx.batch.Batch` the record's length prefix is the
frame's size, so a batch is wire frames back to back: a consumer's share of a batch goes out as
one slice of it, with nothing built per message. A batch is immutable, so every channel of a topic
shares it; not a container, so CPython's garbage collector never walks a large queue. A
delivery's state lives in its channel's :class:`~nsqtx.in_flight.InFlight` table, pointing into
the batch.

Go nsqd encodes a message as timestamp, attempts made so far, ID, body; that is the disk queue's
record format (shared with Go nsqd's data directories), so the disk backend converts messages at
its door (:func:`to_disk`, :func:`from_disk`, used by :mod:`nsqtx.backend_queue`).
"""
from __future__ import annotations

import struct

from nsqtx.batch import Batch

FRAME_TYPE_MESSAGE = 2
#: a record in memory up to the ID: length (the frame's size), frame type, timestamp, attempts
_MEMORY_RECORD = struct.Struct(">lLqH")
_unpack_memory_record = _MEMORY_RECORD.unpack_from
_pack_memory_record = _MEMORY_RECORD.pack
#: a record on disk up to the ID: length, timestamp, attempts
_DISK_RECORD = struct.Struct(">lqH")
_unpack_disk_record = _DISK_RECORD.unpack_from
_pack_disk_record = _DISK_RECORD.pack
_pack_header = struct.Struct(">LqH").pack
#: a new message's record up to its body: its memory record header, then the ID as 13-digit prefix and 3-digit suffix
_pack_new_record = struct.Struct(">lLqH13s3s").pack
ID_LENGTH = 16
#: where the ID starts in an encoded message (after frame type, timestamp and attempts)
ID_OFFSET = 14
BODY_OFFSET = ID_OFFSET + ID_LENGTH
#: timestamp + attempts + ID: the smallest valid message on disk, as nsqd's minValidMsgLength
MIN_DISK_LENGTH = 8 + 2 + ID_LENGTH
#: what a message's encoding in memory adds to its encoding on disk (the frame type)
MEMORY_OVERHEAD = 4


def new_batch(node, bodies) -> Batch:
    """Encode freshly published bodies, with new IDs and one publish timestamp, into one batch."""
    timestamp = node.now_ns()
    remaining = iter(bodies)
    parts = []
    append = parts.append
    for id_prefix, suffixes in node.guid.runs(len(bodies)):
        # zip stops at the end of this run's suffixes without taking a body from `remaining`
        for suffix, body in zip(suffixes, remaining):
            append(_pack_new_record(BODY_OFFSET + len(body), FRAME_TYPE_MESSAGE, timestamp, 1, id_prefix, suffix))
            append(body)
    return Batch(b"".join(parts), len(parts) // 2)


def requeued(records: bytes, start: int) -> bytes:
    """The message delivered from its record at records[start - 4:], encoded to wait for its next
    delivery."""
    length, _, timestamp, attempts = _unpack_memory_record(records, start - 4)
    return (_pack_header(FRAME_TYPE_MESSAGE, timestamp, (attempts + 1) & 0xFFFF)
            + records[start + ID_OFFSET:start + length])


def to_disk(batch: Batch) -> Batch:
    """The batch's messages encoded as Go nsqd writes them to its disk queue."""
    records = batch.records
    parts = []
    append = parts.append
    pos = 0
    for _ in range(batch.count):
        length, _, timestamp, attempts = _unpack_memory_record(records, pos)
        end = pos + 4 + length
        append(_pack_disk_record(length - MEMORY_OVERHEAD, timestamp, (attempts - 1) & 0xFFFF))
        append(records[pos + 4 + ID_OFFSET:end])
        pos = end
    return Batch(b"".join(parts), batch.count)


def from_disk(batch: Batch) -> Batch:
    """A batch read from a disk queue (Go nsqd's encoding, checked for length only) encoded for
    memory."""
    records = batch.records
    parts = []
    append = parts.append
    pos = 0
    for _ in range(batch.count):
        length, timestamp, attempts = _unpack_disk_record(records, pos)
        end = pos + 4 + length
        append(_pack_memory_record(length + MEMORY_OVERHEAD, FRAME_TYPE_MESSAGE, timestamp, (attempts + 1) & 0xFFFF))
        append(records[pos + 4 + ID_OFFSET - MEMORY_OVERHEAD:end])
        pos = end
    return Batch(b"".join(parts), batch.count)
