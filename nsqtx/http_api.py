"""nsqd's HTTP API on Klein: the routes of Go nsqd 1.3 (http.go), each a method of :class:`HTTPAPI`.

The routes answer through :mod:`nsqtx.http_responses` (status codes, error strings and bodies as
nsqd's), read requests through :mod:`nsqtx.http_params` (queries and bodies as strictly and within
the limits nsqd does) and are served by :mod:`nsqtx.http_site`.
"""
from __future__ import annotations

import functools
import json
import socket

from klein import Klein

from nsqtx import stats
from nsqtx.errors import FatalClientError, QueueError
from nsqtx.http_params import BOOL_PARAMS, Params, content_length, int64, read_body
from nsqtx.http_responses import HTTPError, logged, plain_text, v1
from nsqtx.http_router import Router, answer_unrouted
from nsqtx.http_site import NSQSite
from nsqtx.log import set_log_level
from nsqtx.message import new_batch
from nsqtx.options import LOG_LEVELS, TLS_MIN_VERSIONS, TLS_REQUIRED, parse_address
from nsqtx.mpub import decode_mpub
from nsqtx.version import NSQD_VERSION

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
_IMPLIED_OPTIONS = {"topology_zone": "", "topology_region": ""}
#: lg.LogLevel is an int in Go and /config/log_level answers it as a JSON number
_LOG_LEVEL_NUMBERS = {name: number for number, name in enumerate(LOG_LEVELS, 1)}


class HTTPAPI:
    app = Klein()
    answer_unrouted(app)

    def __init__(self, node):
        self.node = node
        #: what nsqd's router answers when no route takes a request
        self.router = Router(self.app.url_map)
        stats.watch_gc_pauses()

    # -- node

    @app.route("/ping", methods=["GET"])
    @plain_text
    @logged
    def ping(self, request):
        health = stats.health(self.node)
        if self.node.health.error is not None:
            raise HTTPError(500, health)
        return health

    @app.route("/info", methods=["GET"])
    @v1
    @logged
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
    @v1
    @logged
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
    @v1
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
            delay_ms = int64(value)
            if delay_ms is None or not 0 <= delay_ms <= options.max_req_timeout * 1000:
                raise HTTPError(400, "INVALID_DEFER")
            delay = delay_ms / 1000.0
        self._put(topic, (body,), "PUB_FAILED", delay)
        return "OK"

    @app.route("/mpub", methods=["POST"])
    @v1
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
                bodies = decode_mpub(body, options.max_msg_size, max_body, trailing_ok=True)
            except FatalClientError as err:
                raise HTTPError(413, err.code[2:])
        else:
            bodies = self._split_lines(body, max_body, options.max_msg_size)
        self._put(topic, bodies, "MPUB_FAILED")
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
                return lines
            pos = end

    def _put(self, topic, bodies, failed: str, delay: float = 0.0) -> None:
        try:
            topic.put(new_batch(self.node, bodies), delay)
        except QueueError:
            # Go's put only fails while exiting (503 EXITING); our other failure, a disk queue that
            # refuses the write, is also "try again later", named as TCP's E_PUB_FAILED is.
            raise HTTPError(503, "EXITING" if topic.exiting else failed)

    # -- topics

    @app.route("/topic/create", methods=["POST"])
    @v1
    @logged
    def topic_create(self, request):
        self.node.get_topic(Params(request).topic_name())

    @app.route("/topic/delete", methods=["POST"])
    @v1
    @logged
    def topic_delete(self, request):
        # nsqd does not validate the name here: an invalid one is simply not found
        name = Params(request).require("topic", "MISSING_ARG_TOPIC")
        if not self.node.delete_topic(name):
            raise HTTPError(404, "TOPIC_NOT_FOUND")

    @app.route("/topic/empty", methods=["POST"])
    @v1
    @logged
    def topic_empty(self, request):
        self._existing_topic(Params(request).topic_name()).empty()

    @app.route("/topic/pause", methods=["POST"])
    @v1
    @logged
    def topic_pause(self, request):
        self._existing_topic(Params(request).require("topic", "MISSING_ARG_TOPIC")).pause()

    @app.route("/topic/unpause", methods=["POST"])
    @v1
    @logged
    def topic_unpause(self, request):
        self._existing_topic(Params(request).require("topic", "MISSING_ARG_TOPIC")).unpause()

    def _existing_topic(self, name: str):
        topic = self.node.get_existing_topic(name)
        if topic is None:
            raise HTTPError(404, "TOPIC_NOT_FOUND")
        return topic

    # -- channels

    @app.route("/channel/create", methods=["POST"])
    @v1
    @logged
    def channel_create(self, request):
        topic, name = self._topic_and_channel_name(request)
        topic.get_channel(name)

    @app.route("/channel/delete", methods=["POST"])
    @v1
    @logged
    def channel_delete(self, request):
        topic, name = self._topic_and_channel_name(request)
        if not topic.delete_channel(name):
            raise HTTPError(404, "CHANNEL_NOT_FOUND")

    @app.route("/channel/empty", methods=["POST"])
    @v1
    @logged
    def channel_empty(self, request):
        self._existing_channel(request).empty()

    @app.route("/channel/pause", methods=["POST"])
    @v1
    @logged
    def channel_pause(self, request):
        self._existing_channel(request).pause()

    @app.route("/channel/unpause", methods=["POST"])
    @v1
    @logged
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
    @v1
    @logged
    def config(self, request, opt):
        """An option's value by Go's config name; PUT sets log_level (a body such as "debug") or
        nsqlookupd_tcp_addresses (a JSON list) first, as nsqd allows."""
        options = self.node.options
        if request.method == b"PUT":
            limit = options.max_msg_size
            body = read_body(request, limit)
            if not body or len(body) > limit:
                raise HTTPError(413, "INVALID_VALUE")
            if opt == "log_level":
                level = body.decode("utf-8", "replace").lower()
                if level not in _LOG_LEVEL_NUMBERS:
                    raise HTTPError(400, "INVALID_VALUE")
                options.log_level = level
                set_log_level(level)
            elif opt == "nsqlookupd_tcp_addresses":
                self.node.set_lookupd_addresses(_addresses(body))
            else:
                raise HTTPError(400, "INVALID_OPTION")
        return self._option(opt)

    def _option(self, name: str):
        options = self.node.options
        if name == "id":
            return options.node_id
        if name == "log_level":
            return _LOG_LEVEL_NUMBERS[options.log_level]
        if name in ("broadcast_tcp_port", "broadcast_http_port"):
            return getattr(self.node, name)
        if name == "tls_min_version":
            # Go's tls.VersionTLS1x
            return 0x0301 + TLS_MIN_VERSIONS.index(options.tls_min_version)
        if name in _UNNAMED_OPTIONS or name.startswith("_"):
            raise HTTPError(400, "INVALID_OPTION")
        value = getattr(options, name, _IMPLIED_OPTIONS.get(name))
        if value is None or callable(value):
            raise HTTPError(400, "INVALID_OPTION")
        if name in _DURATION_OPTIONS:
            return _nanoseconds(value)
        return value


def _addresses(body: bytes) -> list:
    """A JSON list of "host:port" strings (400 INVALID_VALUE otherwise)."""
    try:
        addresses = json.loads(body)
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ValueError(addresses)
        for address in addresses:
            parse_address(address)
    except ValueError:
        raise HTTPError(400, "INVALID_VALUE")
    return addresses


def _nanoseconds(seconds: float) -> int:
    """A duration as Go's time.Duration marshals to JSON."""
    return int(round(seconds * 1e9))


def make_site(node, tls: bool = False) -> NSQSite:
    """The factory of `node`'s HTTP listener, or with `tls` its HTTPS listener's (the TLS layer is
    the listener's): its routes read at most ``max(--max-body-size, --max-msg-size)`` bytes of a
    body, and with --tls-required plain HTTP answers nothing but nsqd's 403."""
    options = node.options
    gate = None
    if not tls and options.tls_required == TLS_REQUIRED:
        gate = functools.partial(_tls_required, node)
    return NSQSite(HTTPAPI(node), node.reactor, max(options.max_body_size, options.max_msg_size),
                   gate)


def _tls_required(node, request) -> bytes:
    """nsqd's answer to any plain HTTP request when TLS is required, its body's spacing included."""
    body = b'{"message": "TLS_REQUIRED", "https_port": %d}' % (node.https_port or 0)
    request.setResponseCode(403)
    request.setHeader(b"X-NSQ-Content-Type", b"nsq; version=1.0")
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return body
