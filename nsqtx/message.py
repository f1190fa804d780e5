"""A message: the parts every channel shares plus the per-channel delivery state.

One small `__slots__` object per message per channel; the body and ID bytes are shared between the
copies a topic makes for its channels, so fan-out costs one object, not one body, per channel.
"""
from __future__ import annotations

import struct

#: size, frame type, timestamp, attempts: everything of a message frame before ID and body.
MESSAGE_FRAME_HEADER = struct.Struct(">lLqH")
_ENCODED_HEADER = struct.Struct(">qH")
ID_LENGTH = 16
#: timestamp + attempts + ID: the smallest valid encoded message, as nsqd's minValidMsgLength.
MIN_ENCODED_LENGTH = _ENCODED_HEADER.size + ID_LENGTH
FRAME_TYPE_MESSAGE = 2


class Message:
    __slots__ = ("id", "body", "timestamp", "attempts", "deferred", "client", "deadline", "delivered_at")

    def __init__(self, id: bytes, body: bytes, timestamp: int, attempts: int = 0, deferred: float = 0.0):
        self.id = id
        self.body = body
        #: publish time, nanoseconds since the epoch (sent to clients as is)
        self.timestamp = timestamp
        self.attempts = attempts
        #: seconds to hold the message before it becomes ready (DPUB, or held while a topic has no channel)
        self.deferred = deferred
        #: the connection it is in flight to, and when that delivery expires (clock seconds)
        self.client = None
        self.deadline = 0.0
        self.delivered_at = 0.0

    def copy(self) -> Message:
        """A fresh delivery state over the same shared ID and body, for another channel."""
        return Message(self.id, self.body, self.timestamp, self.attempts, self.deferred)

    def frame_header(self) -> bytes:
        """The bytes that precede ID and body in a message frame."""
        return MESSAGE_FRAME_HEADER.pack(30 + len(self.body), FRAME_TYPE_MESSAGE, self.timestamp, self.attempts)

    def encode(self) -> bytes:
        """nsqd's encoding (as on the wire and on disk): timestamp, attempts, ID, body."""
        return _ENCODED_HEADER.pack(self.timestamp, self.attempts) + self.id + self.body


def decode_message(data: bytes) -> Message:
    if len(data) < MIN_ENCODED_LENGTH:
        raise ValueError("invalid message buffer size (%d)" % len(data))
    timestamp, attempts = _ENCODED_HEADER.unpack_from(data)
    return Message(bytes(data[10:26]), bytes(data[26:]), timestamp, attempts)
