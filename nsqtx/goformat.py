"""Go's ways with text that nsqd's replies depend on: ByteToBase10 parsing and %q quoting."""
from __future__ import annotations


def base10(value: bytes) -> int:
    """nsqd's ByteToBase10: ASCII digits only (no sign); the empty string is 0."""
    if value and not value.isdigit():
        raise ValueError(value)
    return int(value) if value else 0


def text(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def quote(value: str) -> str:
    """Go's %q, close enough for names that failed validation."""
    out = ['"']
    for ch in value:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0xDC80 <= o <= 0xDCFF:
            out.append("\\x%02x" % (o - 0xDC00))
        elif o < 0x20 or o == 0x7f:
            out.append({7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}.get(o, "\\x%02x" % o))
        elif not ch.isprintable():
            out.append("\\u%04x" % o if o < 0x10000 else "\\U%08x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
