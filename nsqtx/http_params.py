"""Reading a request's query and body as nsqd does, so that what nsqd refuses is refused here too.

Query strings are parsed as strictly as Go's ``url.ParseQuery`` by :class:`Params`; topic and channel
names come from the query string only, as in nsqd. Request bodies are read with nsqd's limits.
"""
from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from nsqtx.http_responses import HTTPError
from nsqtx.names import is_valid_channel_name, is_valid_topic_name

#: nsqd's boolean query values; anything else means "not given" (or, for /mpub's binary, true)
BOOL_PARAMS = {"true": True, "1": True, "false": False, "0": False}

_INT64 = re.compile(r"[+-]?[0-9]+\Z")
_INT64_MAX = (1 << 63) - 1
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def parse_query(raw: bytes) -> dict:
    """Go's url.ParseQuery: "&"-separated, "+" is a space; a ";" or a bad %-escape anywhere makes
    the whole query invalid (400 INVALID_REQUEST). Values are str (undecodable bytes escaped)."""
    values = {}
    for part in raw.split(b"&"):
        if b";" in part or _BAD_ESCAPE.search(part):
            raise HTTPError(400, "INVALID_REQUEST")
        if not part:
            continue
        key, _, value = part.partition(b"=")
        values.setdefault(_unescape(key), []).append(_unescape(value))
    return values


def _unescape(raw: bytes) -> str:
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "surrogateescape")


class Params:
    """A request's query parameters, and nsqd's checks of the topic and channel among them."""

    def __init__(self, request):
        self.values = parse_query(request.uri.partition(b"?")[2])

    def get(self, key: str):
        """The first value given for `key`, or None when it is absent (an empty value is "")."""
        values = self.values.get(key)
        return values[0] if values else None

    def require(self, key: str, missing: str) -> str:
        value = self.get(key)
        if value is None:
            raise HTTPError(400, missing)
        return value

    def topic_name(self, invalid: str = "INVALID_TOPIC") -> str:
        name = self.require("topic", "MISSING_ARG_TOPIC")
        if not is_valid_topic_name(name):
            raise HTTPError(400, invalid)
        return name

    def topic_and_channel_names(self):
        """Go's GetTopicChannelArgs, with its *_ARG_* codes."""
        topic_name = self.topic_name("INVALID_ARG_TOPIC")
        channel_name = self.require("channel", "MISSING_ARG_CHANNEL")
        if not is_valid_channel_name(channel_name):
            raise HTTPError(400, "INVALID_ARG_CHANNEL")
        return topic_name, channel_name


def int64(text: str):
    """Go's strconv.ParseInt(text, 10, 64), or None where it fails."""
    if not _INT64.match(text):
        return None
    value = int(text)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        return None
    return value


def content_length(request) -> int:
    """The declared body length, -1 when not declared (chunked), as Go's Request.ContentLength."""
    value = request.getHeader(b"content-length")
    if value is None or not value.strip().isdigit():
        return -1
    return int(value)


def read_body(request, limit: int) -> bytes:
    """At most `limit` + 1 bytes of the body, as Go's io.LimitReader(body, max+1): a body longer
    than `limit` comes back one byte too long, which the caller reports as too big."""
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    return content.read(limit + 1)
