"""How a route's result or error becomes nsqd's response, in one place so that every route, and the
site's own 404, answer with the status codes, error strings and bodies of Go nsqd 1.3 (http_api).

Routes raise :class:`HTTPError` for what the client got wrong; :func:`respond_v1` is the one place
that turns a result or an error into nsqd's response (``{"message": "..."}`` JSON for errors, the
``X-NSQ-Content-Type`` header). The route decorators pick that or Go's plain-text answer, and log
requests as nsqd does.
"""
from __future__ import annotations

import functools
import json
import re
import time

from nsqtx.log import NSQLogger

# the requests these decorators log are the API's, so they are logged under its name
log = NSQLogger(namespace="nsqtx.http_api")

_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json; charset=utf-8"
#: Go's json.Marshal escapes these inside strings (they can appear nowhere else in JSON)
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_JSON_ESCAPE = re.compile("[<>&\u2028\u2029]")
#: Go's htmlEscape, for the body of a redirect
_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"}
_HTML_ESCAPE = re.compile("[&<>\"']")


class HTTPError(Exception):
    """What the client is told: an HTTP status and nsqd's message, e.g. (400, "MISSING_ARG_TOPIC")."""

    def __init__(self, code: int, message: str):
        Exception.__init__(self, code, message)
        self.code = code
        self.message = message


def encode_json(data) -> bytes:
    """Compact UTF-8 JSON escaped as Go's encoding/json does."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return _JSON_ESCAPE.sub(lambda m: _JSON_ESCAPES[m.group()], text).encode("utf-8", "replace")


def respond_v1(request, code: int, data) -> bytes:
    """Go's http_api.RespondV1: on 200, text as is, None as an empty body, anything else as JSON;
    otherwise ``{"message": "<data>"}``. Always with ``X-NSQ-Content-Type: nsq; version=1.0``."""
    if code != 200:
        body, content_type = encode_json({"message": str(data)}), _JSON
    elif data is None:
        body, content_type = b"", None
    elif isinstance(data, str):
        body, content_type = data.encode("utf-8", "replace"), _TEXT
    elif isinstance(data, bytes):
        body, content_type = data, _TEXT
    else:
        body, content_type = encode_json(data), _JSON
    request.setResponseCode(code)
    request.setHeader(b"X-NSQ-Content-Type", b"nsq; version=1.0")
    _set_body_headers(request, body, content_type)
    return body


def respond_bare(request, code: int, body: bytes = b"", content_type=None) -> bytes:
    """An answer of Go's router or net/http rather than of nsqd's handlers: no X-NSQ-Content-Type
    (OPTIONS' empty 200, a redirect)."""
    request.setResponseCode(code)
    _set_body_headers(request, body, content_type)
    return body


def redirect(request, code: int, location: str) -> bytes:
    """Go's http.Redirect to `location`, an ASCII path and query (twisted.web refuses request lines
    beyond ASCII): the Location header, and for a GET (always a 301 here) the short HTML body
    pointing there."""
    request.setHeader(b"Location", location.encode("ascii"))
    if request.method != b"GET":
        return respond_bare(request, code)
    href = _HTML_ESCAPE.sub(lambda m: _HTML_ESCAPES[m.group()], location)
    body = '<a href="%s">Moved Permanently</a>.\n\n' % href
    return respond_bare(request, code, body.encode("ascii"), b"text/html; charset=utf-8")


def _set_body_headers(request, body: bytes, content_type) -> None:
    # with the length known, twisted.web need not chunk the response (Klein writes it after render)
    request.setHeader(b"Content-Length", b"%d" % len(body))
    if content_type is None or not body:
        # Go sends no Content-Type with an empty body; twisted.web would add text/html
        request.defaultContentType = None
    else:
        request.setHeader(b"Content-Type", content_type)


def v1(handler):
    """Route decorator: the handler returns data or raises HTTPError; :func:`respond_v1` answers.
    Anything unexpected is logged and answered 500 INTERNAL_ERROR, never with a traceback."""
    @functools.wraps(handler)
    def route(self, request, *args, **kwargs):
        try:
            data = handler(self, request, *args, **kwargs)
        except HTTPError as err:
            return respond_v1(request, err.code, err.message)
        except Exception:
            log.failure("HTTP: internal error in {method} {uri}", method=_text(request.method),
                        uri=_text(request.uri))
            return respond_v1(request, 500, "INTERNAL_ERROR")
        return respond_v1(request, 200, data)
    return route


def plain_text(handler):
    """Go's http_api.PlainText: the text, or the error's message, without JSON or X-NSQ header."""
    @functools.wraps(handler)
    def route(self, request, *args, **kwargs):
        try:
            text, code = handler(self, request, *args, **kwargs), 200
        except HTTPError as err:
            text, code = err.message, err.code
        request.setResponseCode(code)
        body = text.encode("utf-8", "replace")
        _set_body_headers(request, body, _TEXT)
        return body
    return route


def logged(handler):
    """Go's http_api.Log: "<status> <method> <uri> (<remote>) <elapsed>" at INFO. Like nsqd, the
    hot /pub and /mpub routes are not logged."""
    @functools.wraps(handler)
    def route(self, request, *args, **kwargs):
        start = time.perf_counter()
        status = 200
        try:
            return handler(self, request, *args, **kwargs)
        except HTTPError as err:
            status = err.code
            raise
        except Exception:
            status = 500
            raise
        finally:
            peer = request.getClientAddress()
            log.info("{status} {method} {uri} ({remote}) {elapsed:.3f}ms", status=status,
                     method=_text(request.method), uri=_text(request.uri),
                     remote="%s:%s" % (getattr(peer, "host", ""), getattr(peer, "port", "")),
                     elapsed=(time.perf_counter() - start) * 1000)
    return route


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
