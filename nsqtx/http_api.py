"""nsqd's HTTP API on Klein: the routes, status codes, error strings and bodies of Go nsqd 1.3 (http.go).

Every route is a method of :class:`HTTPAPI`. Routes raise :class:`HTTPError` for what the client got
wrong; :func:`respond_v1` is the one place that turns a result or an error into nsqd's response
(``{"message": "..."}`` JSON for errors, the ``X-NSQ-Content-Type`` header). Query strings are
parsed as strictly as Go's ``url.ParseQuery`` by :class:`Params`; topic and channel names come from
the query string only, as in nsqd. Request bodies are read with nsqd's limits, and the site stores at
most ``--max-body-size`` + 1 bytes of any body (:class:`BoundedRequest`), whatever a client sends.
"""
from __future__ import annotations

import functools
import json
import re
import socket
import time
from urllib.parse import unquote_to_bytes

from klein import Klein
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from werkzeug.exceptions import MethodNotAllowed, NotFound

from nsqtx import stats
from nsqtx.errors import FatalClientError, QueueError
from nsqtx.log import NSQLogger, set_log_level
from nsqtx.message import new_batch
from nsqtx.names import is_valid_channel_name, is_valid_topic_name
from nsqtx.options import LOG_LEVELS
from nsqtx.mpub import decode_mpub
from nsqtx.version import NSQD_VERSION

log = NSQLogger()

#: nsqd's boolean query values; anything else means "not given" (or, for /mpub's binary, true)
BOOL_PARAMS = {"true": True, "1": True, "false": False, "0": False}

_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json; charset=utf-8"
_INT64 = re.compile(r"[+-]?[0-9]+\Z")
_INT64_MAX = (1 << 63) - 1
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
#: Go's json.Marshal escapes these inside strings (they can appear nowhere else in JSON)
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_JSON_ESCAPE = re.compile("[<>&\u2028\u2029]")

#: Go's options that are time.Durations: /config reports them in nanoseconds
_DURATION_OPTIONS = frozenset([
    "sync_timeout", "msg_timeout", "max_msg_timeout", "max_req_timeout", "max_heartbeat_interval",
    "max_output_buffer_timeout", "min_output_buffer_timeout", "output_buffer_timeout",
    "http_client_connect_timeout", "http_client_request_timeout", "statsd_interval",
    "e2e_processing_latency_window_time",
])
#: our options that Go has no config name for (no flag tag), or names differently ("id")
_UNNAMED_OPTIONS = frozenset(["node_id", "queue_scan_interval", "client_timeout"])
#: Go names our Options lack, with the value that describes what this node does
_IMPLIED_OPTIONS = {"nsqlookupd_tcp_addresses": [], "topology_zone": "", "topology_region": ""}
#: lg.LogLevel is an int in Go and /config/log_level answers it as a JSON number
_LOG_LEVEL_NUMBERS = {name: number for number, name in enumerate(LOG_LEVELS, 1)}


class HTTPError(Exception):
    """What the client is told: an HTTP status and nsqd's message, e.g. (400, "MISSING_ARG_TOPIC")."""

    def __init__(self, code: int, message: str):
        Exception.__init__(self, code, message)
        self.code = code
        self.message = message


# -- responses


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


def _set_body_headers(request, body: bytes, content_type) -> None:
    # with the length known, twisted.web need not chunk the response (Klein writes it after render)
    request.setHeader(b"Content-Length", b"%d" % len(body))
    if content_type is None or not body:
        # Go sends no Content-Type with an empty body; twisted.web would add text/html
        request.defaultContentType = None
    else:
        request.setHeader(b"Content-Type", content_type)


def _v1(handler):
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


def _plain_text(handler):
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


def _logged(handler):
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


# -- requests


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


def _int64(text: str):
    """Go's strconv.ParseInt(text, 10, 64), or None where it fails."""
    if not _INT64.match(text):
        return None
    value = int(text)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        return None
    return value


# -- the API


class HTTPAPI:
    app = Klein()

    def __init__(self, node):
        self.node = node
        stats.watch_gc_pauses()

    # -- errors of the router itself: JSON, as httprouter's NotFound / MethodNotAllowed handlers

    @app.handle_errors(NotFound)
    def not_found(self, request, failure):
        return respond_v1(request, 404, "NOT_FOUND")

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request, failure):
        allowed = failure.value.valid_methods or ()
        request.setHeader(b"Allow", ", ".join(sorted(allowed)).encode("ascii"))
        return respond_v1(request, 405, "METHOD_NOT_ALLOWED")

    # -- node

    @app.route("/ping", methods=["GET"])
    @_plain_text
    @_logged
    def ping(self, request):
        health = stats.health(self.node)
        if self.node.health_error is not None:
            raise HTTPError(500, health)
        return health

    @app.route("/info", methods=["GET"])
    @_v1
    @_logged
    def info(self, request):
        node = self.node
        options = node.options
        return {
            "version": NSQD_VERSION,
            "broadcast_address": options.broadcast_address,
            "hostname": socket.gethostname(),
            # nsqd reports -1 for a listener without a TCP port; ours has none until startService
            "http_port": node.http_port if node.http_port is not None else -1,
            "tcp_port": node.tcp_port if node.tcp_port is not None else -1,
            "start_time": int(node.start_time),
            "max_heartbeat_interval": _nanoseconds(options.max_heartbeat_interval),
            "max_output_buffer_size": options.max_output_buffer_size,
            "max_output_buffer_timeout": _nanoseconds(options.max_output_buffer_timeout),
            "max_deflate_level": options.max_deflate_level,
            "topology_zone": getattr(options, "topology_zone", ""),
            "topology_region": getattr(options, "topology_region", ""),
        }

    @app.route("/stats", methods=["GET"])
    @_v1
    @_logged
    def get_stats(self, request):
        params = Params(request)
        include_clients = BOOL_PARAMS.get(params.get("include_clients"), True)
        include_mem = BOOL_PARAMS.get(params.get("include_mem"), True)
        doc = stats.stats_document(self.node, params.get("topic") or "", params.get("channel") or "",
                                   include_clients, include_mem)
        if params.get("format") != "json":
            return stats.format_text(doc, self.node.clock.seconds())
        return doc

    # -- publishing

    @app.route("/pub", methods=["POST"])
    @_v1
    def pub(self, request):
        node = self.node
        options = node.options
        max_size = options.max_msg_size
        if content_length(request) > max_size:
            raise HTTPError(413, "MSG_TOO_BIG")
        body = read_body(request, max_size)
        if len(body) > max_size:
            raise HTTPError(413, "MSG_TOO_BIG")
        if not body:
            raise HTTPError(400, "MSG_EMPTY")
        params = Params(request)
        # as in nsqd, the topic exists from here on even if the defer value is refused
        topic = node.get_topic(params.topic_name())
        delay = 0.0
        value = params.get("defer")
        if value is not None:
            delay_ms = _int64(value)
            if delay_ms is None or not 0 <= delay_ms <= options.max_req_timeout * 1000:
                raise HTTPError(400, "INVALID_DEFER")
            delay = delay_ms / 1000.0
        self._put(topic, new_batch(node, (body,)), "PUB_FAILED", delay)
        return "OK"

    @app.route("/mpub", methods=["POST"])
    @_v1
    def mpub(self, request):
        node = self.node
        options = node.options
        max_body = options.max_body_size
        if content_length(request) > max_body:
            raise HTTPError(413, "BODY_TOO_BIG")
        params = Params(request)
        topic = node.get_topic(params.topic_name())
        value = params.get("binary")
        # text is the default; nsqd takes an unrecognised value as true
        binary = False if value is None else BOOL_PARAMS.get(value, True)
        body = read_body(request, max_body)
        if binary:
            if len(body) > max_body:
                # Go would read on (bounded by count x --max-msg-size); we never hold more than this
                raise HTTPError(413, "BODY_TOO_BIG")
            try:
                batch = decode_mpub(body, node, options.max_msg_size, max_body, trailing_ok=True)
            except FatalClientError as err:
                raise HTTPError(413, err.code[2:])
        else:
            batch = self._split_lines(body, max_body, options.max_msg_size)
        self._put(topic, batch, "MPUB_FAILED")
        return "OK"

    def _split_lines(self, body: bytes, max_body: int, max_msg: int):
        """One message per line; empty lines are skipped, as nsqd has done since 0.2.22."""
        lines = []
        pos = 0
        while True:
            newline = body.find(b"\n", pos)
            end = len(body) if newline < 0 else newline + 1
            if end == max_body + 1:
                # the body reached the read limit: there is more than --max-body-size
                raise HTTPError(413, "BODY_TOO_BIG")
            line = body[pos:newline if newline >= 0 else end]
            if line:
                if len(line) > max_msg:
                    raise HTTPError(413, "MSG_TOO_BIG")
                lines.append(line)
            if newline < 0:
                return new_batch(self.node, lines)
            pos = end

    def _put(self, topic, batch, failed: str, delay: float = 0.0) -> None:
        try:
            topic.put(batch, delay)
        except QueueError:
            # Go's put only fails while exiting (503 EXITING); our other failure, a disk queue that
            # refuses the write, is also "try again later", named as TCP's E_PUB_FAILED is.
            raise HTTPError(503, "EXITING" if topic.exiting else failed)

    # -- topics

    @app.route("/topic/create", methods=["POST"])
    @_v1
    @_logged
    def topic_create(self, request):
        self.node.get_topic(Params(request).topic_name())

    @app.route("/topic/delete", methods=["POST"])
    @_v1
    @_logged
    def topic_delete(self, request):
        # nsqd does not validate the name here: an invalid one is simply not found
        name = Params(request).require("topic", "MISSING_ARG_TOPIC")
        if not self.node.delete_topic(name):
            raise HTTPError(404, "TOPIC_NOT_FOUND")

    @app.route("/topic/empty", methods=["POST"])
    @_v1
    @_logged
    def topic_empty(self, request):
        self._existing_topic(Params(request).topic_name()).empty()

    @app.route("/topic/pause", methods=["POST"])
    @_v1
    @_logged
    def topic_pause(self, request):
        self._existing_topic(Params(request).require("topic", "MISSING_ARG_TOPIC")).pause()

    @app.route("/topic/unpause", methods=["POST"])
    @_v1
    @_logged
    def topic_unpause(self, request):
        self._existing_topic(Params(request).require("topic", "MISSING_ARG_TOPIC")).unpause()

    def _existing_topic(self, name: str):
        topic = self.node.get_existing_topic(name)
        if topic is None:
            raise HTTPError(404, "TOPIC_NOT_FOUND")
        return topic

    # -- channels

    @app.route("/channel/create", methods=["POST"])
    @_v1
    @_logged
    def channel_create(self, request):
        topic, name = self._topic_and_channel_name(request)
        topic.get_channel(name)

    @app.route("/channel/delete", methods=["POST"])
    @_v1
    @_logged
    def channel_delete(self, request):
        topic, name = self._topic_and_channel_name(request)
        if not topic.delete_channel(name):
            raise HTTPError(404, "CHANNEL_NOT_FOUND")

    @app.route("/channel/empty", methods=["POST"])
    @_v1
    @_logged
    def channel_empty(self, request):
        self._existing_channel(request).empty()

    @app.route("/channel/pause", methods=["POST"])
    @_v1
    @_logged
    def channel_pause(self, request):
        self._existing_channel(request).pause()

    @app.route("/channel/unpause", methods=["POST"])
    @_v1
    @_logged
    def channel_unpause(self, request):
        self._existing_channel(request).unpause()

    def _topic_and_channel_name(self, request):
        topic_name, channel_name = Params(request).topic_and_channel_names()
        return self._existing_topic(topic_name), channel_name

    def _existing_channel(self, request):
        topic, name = self._topic_and_channel_name(request)
        channel = topic.get_existing_channel(name)
        if channel is None:
            raise HTTPError(404, "CHANNEL_NOT_FOUND")
        return channel

    # -- runtime configuration

    @app.route("/config/<opt>", methods=["GET", "PUT"])
    @_v1
    @_logged
    def config(self, request, opt):
        """An option's value by Go's config name; PUT sets log_level first (a body such as "debug").

        PUT nsqlookupd_tcp_addresses, nsqd's other settable option, is refused with INVALID_OPTION:
        nsqtx has no lookupd peers yet for it to reconfigure.
        """
        options = self.node.options
        if request.method == b"PUT":
            limit = options.max_msg_size
            body = read_body(request, limit)
            if not body or len(body) > limit:
                raise HTTPError(413, "INVALID_VALUE")
            if opt != "log_level":
                raise HTTPError(400, "INVALID_OPTION")
            level = body.decode("utf-8", "replace").lower()
            if level not in _LOG_LEVEL_NUMBERS:
                raise HTTPError(400, "INVALID_VALUE")
            options.log_level = level
            set_log_level(level)
        return self._option(opt)

    def _option(self, name: str):
        options = self.node.options
        if name == "id":
            return options.node_id
        if name == "log_level":
            return _LOG_LEVEL_NUMBERS[options.log_level]
        if name in _UNNAMED_OPTIONS or name.startswith("_"):
            raise HTTPError(400, "INVALID_OPTION")
        value = getattr(options, name, _IMPLIED_OPTIONS.get(name))
        if value is None or callable(value):
            raise HTTPError(400, "INVALID_OPTION")
        if name in _DURATION_OPTIONS:
            return _nanoseconds(value)
        return value


def _nanoseconds(seconds: float) -> int:
    """A duration as Go's time.Duration marshals to JSON."""
    return int(round(seconds * 1e9))


# -- the site


class BoundedRequest(Request):
    """A request that stores at most ``max(--max-body-size, --max-msg-size) + 1`` bytes of its body:
    enough for every route to tell "too big", while a client sending more (chunked, or lying about
    its length) cannot make the node buffer it. The rest is read and dropped.

    Its body is never parsed as a form: nsqd takes bodies as they are, whatever their Content-Type,
    while twisted.web would parse form-typed ones into request.args first (a cost on every
    ``curl -d`` publish) and answer a malformed multipart one with a bare 400. So the Content-Type
    header is dropped before twisted.web looks; no route reads it.
    """

    def requestReceived(self, command, path, version):
        self.requestHeaders.removeHeader(b"content-type")
        Request.requestReceived(self, command, path, version)

    def gotLength(self, length):
        Request.gotLength(self, length)
        options = self.channel.site.node.options
        self._body_room = max(options.max_body_size, options.max_msg_size) + 1

    def handleContentChunk(self, data):
        room = self._body_room
        if room <= 0:
            return
        if len(data) > room:
            data = data[:room]
        self._body_room = room - len(data)
        Request.handleContentChunk(self, data)


class _Root(Resource):
    """Sends a path that is not UTF-8 to nsqd's JSON 404 (Klein would answer it with plain text)."""

    isLeaf = True

    def __init__(self, routes):
        Resource.__init__(self)
        self.routes = routes

    def render(self, request):
        try:
            b"/".join(request.postpath).decode("utf-8")
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            return respond_v1(request, 404, "NOT_FOUND")
        return self.routes.render(request)


class NSQSite(Site):
    requestFactory = BoundedRequest

    def __init__(self, node):
        Site.__init__(self, _Root(HTTPAPI(node).app.resource()), reactor=node.reactor)
        self.node = node
        self.noisy = False

    def log(self, request):
        """No access log line: the routes log requests once, as nsqd does (and /pub, /mpub not at all)."""


def make_site(node) -> Site:
    """The HTTP listener's factory for `node` (see :meth:`nsqtx.node.NSQD.startService`)."""
    return NSQSite(node)
