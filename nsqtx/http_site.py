"""The twisted.web site that serves :class:`~nsqtx.http_api.HTTPAPI`, apart from the routes because
what it guards against comes before any route runs: the site stores at most
``max(--max-body-size, --max-msg-size) + 1`` bytes of any body (:class:`BoundedRequest`), whatever a
client sends, answers a path that is not UTF-8 with nsqd's JSON 404, and a method without routes as
nsqd's router does (:mod:`nsqtx.http_router`).
"""
from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from nsqtx.http_api import HTTPAPI
from nsqtx.http_responses import respond_v1
from nsqtx.http_router import request_path


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
    """Sends a path that is not UTF-8 to nsqd's JSON 404 (Klein would answer it with plain text),
    and a request no route can take to the router's answer (see Router.can_route)."""

    isLeaf = True

    def __init__(self, api):
        Resource.__init__(self)
        self.routes = api.app.resource()
        self.router = api.router

    def render(self, request):
        try:
            path = request_path(request)
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            return respond_v1(request, 404, "NOT_FOUND")
        if not self.router.can_route(request.method.decode("ascii"), path):
            return self.router.unrouted(request, path)
        return self.routes.render(request)


class NSQSite(Site):
    requestFactory = BoundedRequest

    def __init__(self, node):
        Site.__init__(self, _Root(HTTPAPI(node)), reactor=node.reactor)
        self.node = node
        self.noisy = False

    def log(self, request):
        """No access log line: the routes log requests once, as nsqd does (and /pub, /mpub not at all)."""


def make_site(node) -> Site:
    """The HTTP listener's factory for `node` (see :meth:`nsqtx.node.NSQD.startService`)."""
    return NSQSite(node)
