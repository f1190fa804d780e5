"""The compressed streams a V2 client may negotiate in IDENTIFY: snappy's framing format and raw
deflate, as nsqd's Go libraries speak them.

A codec compresses what one flush of the client's output buffer sends into bytes that end on a
frame boundary (snappy frames; deflate with a sync flush), so that the client can read every
response without waiting for more; and it decompresses what arrives in any chunking, holding back
an incomplete snappy frame. Decompressed output comes in bounded pieces, so that a small input that
expands hugely is parsed piece by piece instead of held whole.
"""
from __future__ import annotations

import zlib

import cramjam


class CompressionError(Exception):
    """What arrived is not a valid compressed stream."""


class StreamEnded(Exception):
    """The peer ended its compressed stream properly: nothing more can be read, as at end of file."""


#: snappy's stream identifier chunk, which every framed stream begins with (and may repeat)
_SNAPPY_IDENTIFIER = b"\xff\x06\x00\x00sNaPpY"
#: the largest chunk the framing format allows a writer to make: 4-byte checksum + a compressed
#: 64 KB block (snappy's MaxEncodedLen of 65536)
_SNAPPY_MAX_CHUNK = 4 + 32 + 65536 + 65536 // 6
#: most decompressed bytes handed to the parser at once
PIECE = 1 << 20


class SnappyCodec:
    name = "snappy"

    def __init__(self):
        self._compressor = cramjam.snappy.Compressor()
        self._pending = b""

    def encode(self, parts: list) -> bytes:
        """The buffers (bytes or views) as snappy frames; the first call's begin the stream."""
        compressor = self._compressor
        compressor.compress(b"".join(parts))
        return bytes(compressor.flush())

    def decode(self, data: bytes):
        """The decompressed pieces of the complete frames received so far."""
        buf = self._pending + data if self._pending else data
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            length = buf[pos + 1] | buf[pos + 2] << 8 | buf[pos + 3] << 16
            if length > _SNAPPY_MAX_CHUNK:
                raise CompressionError("snappy chunk of %d bytes" % length)
            if end - pos < 4 + length:
                break
            pos += 4 + length
        self._pending = buf[pos:]
        if not pos:
            return
        try:
            plain = bytes(cramjam.snappy.decompress(_SNAPPY_IDENTIFIER + buf[:pos]))
        except cramjam.DecompressionError as err:
            raise CompressionError("invalid snappy stream - %s" % (err,))
        for start in range(0, len(plain), PIECE):
            yield plain[start:start + PIECE]


class DeflateCodec:
    name = "deflate"

    def __init__(self, level: int):
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)

    def encode(self, parts: list) -> bytes:
        """The buffers as deflate blocks ending in a sync flush."""
        compress = self._compressor.compress
        out = [compress(part) for part in parts]
        out.append(self._compressor.flush(zlib.Z_SYNC_FLUSH))
        return b"".join(out)

    def decode(self, data: bytes):
        """The decompressed pieces of what arrived, each made when the one before was taken."""
        decompressor = self._decompressor
        pending = data
        while pending:
            try:
                piece = decompressor.decompress(pending, PIECE)
            except zlib.error as err:
                raise CompressionError("invalid deflate stream - %s" % (err,))
            pending = decompressor.unconsumed_tail
            if piece:
                yield piece
            if decompressor.eof:
                raise StreamEnded()
