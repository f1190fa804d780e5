"""MPUB bodies: a 4-byte message count, then size-prefixed messages (TCP MPUB and HTTP binary /mpub)."""
from __future__ import annotations

import struct

from nsqtx.errors import FatalClientError

_unpack_int32 = struct.Struct(">l").unpack_from


def decode_mpub(data, max_msg_size: int, max_body_size: int, trailing_ok: bool = False, start: int = 0,
                end=None) -> list:
    """Split an MPUB body (count, then size-prefixed messages), data[start:end], into the message
    bodies, all or nothing. Bodies are cut straight out of `data`, so the caller need not copy
    the whole MPUB body out of its read buffer first.

    Over TCP the body's length is declared, so bytes after the last message are an error; HTTP's
    /mpub?binary=true passes `trailing_ok`, since Go reads the messages off the request stream and
    ignores what follows them."""
    if end is None:
        end = len(data)
    if end - start < 4:
        raise FatalClientError("E_BAD_BODY", "MPUB failed to read message count")
    count = _unpack_int32(data, start)[0]
    if count <= 0 or count > (max_body_size - 4) // 5:
        raise FatalClientError("E_BAD_BODY", "MPUB invalid message count %d" % count)
    bodies = []
    append = bodies.append
    pos = start + 4
    for i in range(count):
        if pos + 4 > end:
            raise FatalClientError("E_BAD_MESSAGE", "MPUB failed to read message(%d) body size" % i)
        size = _unpack_int32(data, pos)[0]
        first = pos + 4
        pos = first + size
        if size <= 0 or size > max_msg_size or pos > end:
            raise _bad_message(i, size, max_msg_size)
        append(data[first:pos])
    if pos != end and not trailing_ok:
        raise FatalClientError("E_BAD_BODY", "MPUB body has %d bytes after the last message" % (end - pos))
    return bodies


def _bad_message(i: int, size: int, max_msg_size: int) -> FatalClientError:
    if size <= 0:
        return FatalClientError("E_BAD_MESSAGE", "MPUB invalid message(%d) body size %d" % (i, size))
    if size > max_msg_size:
        return FatalClientError("E_BAD_MESSAGE", "MPUB message too big %d > %d" % (size, max_msg_size))
    return FatalClientError("E_BAD_MESSAGE", "MPUB failed to read message body")
