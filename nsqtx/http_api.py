"""nsqd's HTTP API on Klein."""
from __future__ import annotations

from klein import Klein
from twisted.web.server import Site


class HTTPAPI:
    app = Klein()

    def __init__(self, node):
        self.node = node

    @app.route("/ping", methods=["GET"])
    def ping(self, request):
        return b"OK"


def make_site(node) -> Site:
    site = Site(HTTPAPI(node).app.resource())
    site.noisy = False
    return site
