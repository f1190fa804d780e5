"""The twisted.web site that serves an HTTP API's Klein routes (nsqd's :class:`~nsqtx.http_api.HTTPAPI`,
nsqlookupd's :class:`~nsqtx.lookupd.http_api.HTTPAPI`), apart from the routes because what it guards
against comes before any route runs: the site stores at most one byte more of any body than a route
reads (:class:`BoundedRequest`), whatever a client sends, answers a path that is not UTF-8 with
Go's JSON 404, and a request no route takes as Go's router does (:mod:`nsqtx.http_router`).
"""
from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from nsqtx.http_responses import respond_v1
from nsqtx.http_router import Router, request_path


class BoundedRequest(Request):
    """A request that stores at most its site's ``body_limit + 1`` bytes of its body: enough for
    every route to tell "too big", while a client sending more (chunked, or lying about its length)
    cannot make the server buffer it. The rest is read and dropped.

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
        self._body_room = self.channel.site.body_limit + 1

    def handleContentChunk(self, data):
        room = self._body_room
        if room <= 0:
            return
        if len(data) > room:
            data = data[:room]
        self._body_room = room - len(data)
        Request.handleContentChunk(self, data)


class _Root(Resource):
    """Sends a path that is not UTF-8 to Go's JSON 404 (Klein would answer it with plain text), and a
    request no route can take to the router's answer (see Router.can_route); a `gate` answers every
    request itself when it returns a body (nsqd's TLS_REQUIRED)."""

    isLeaf = True

    def __init__(self, routes, router: Router, gate=None):
        Resource.__init__(self)
        self.routes = routes
        self.router = router
        self.gate = gate

    def render(self, request):
        if self.gate is not None:
            answer = self.gate(request)
            if answer is not None:
                return answer
        try:
            path = request_path(request)
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            return respond_v1(request, 404, "NOT_FOUND")
        if not self.router.can_route(request.method.decode("ascii"), path):
            return self.router.unrouted(request, path)
        return self.routes.render(request)


class NSQSite(Site):
    """Serves `api`'s Klein routes (its `app`, bound to it), storing at most `body_limit` + 1 bytes of
    a body; its `router` answers what they do not take."""

    requestFactory = BoundedRequest

    def __init__(self, api, reactor, body_limit: int, gate=None):
        Site.__init__(self, _Root(api.app.resource(), api.router, gate), reactor=reactor)
        self.body_limit = body_limit
        self.noisy = False

    def log(self, request):
        """No access log line: the routes log requests once, as Go does (and nsqd's /pub, /mpub not at all)."""
