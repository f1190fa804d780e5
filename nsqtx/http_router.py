"""What Go's router (httprouter 1.3, as nsqd and nsqlookupd set it up) answers when no route takes a
request, around Klein's own matching of an HTTP API's routes (:mod:`nsqtx.http_api`,
:mod:`nsqtx.lookupd.http_api`):

- a path a route of the request's method has with or without a trailing slash is redirected there
  (``GET /ping/`` -> ``/ping``), and so is one that matches once cleaned (``//ping``, ``/a/../ping``)
  and compared without case (``/PING``): 301 for GET, 307 for the other methods;
- OPTIONS answers 200 with the methods the path has in ``Allow``;
- a path another method has is 405 with ``Allow``, anything else 404.

HEAD has no routes, as in Go (so ``HEAD /ping`` is 405), where werkzeug would answer it with the
GET route.
"""
from __future__ import annotations

import posixpath
from urllib.parse import quote

from werkzeug.exceptions import MethodNotAllowed, NotFound

from nsqtx.http_responses import redirect, respond_bare, respond_v1

#: what Go's url.URL.EscapedPath leaves as it is in a path, besides letters, digits and -_.~
_PATH_SAFE = "/$&+,:;=@"


def request_path(request) -> str:
    """The request's path, percent-decoded, as the router matches it; UnicodeDecodeError if it is
    not UTF-8."""
    return "/" + b"/".join(request.postpath).decode("utf-8")


def answer_unrouted(app) -> None:
    """Have the Klein `app`'s API answer what its routes refuse through its `router` (a
    :class:`Router` of the app's routes), as Go's router does."""
    app.handle_errors(NotFound, MethodNotAllowed)(_unrouted)


def _unrouted(api, request, failure):
    return api.router.unrouted(request, request_path(request))


def clean_path(path: str) -> str:
    """httprouter's CleanPath: one slash at a time, no "." or ".." segments, rooted; a trailing
    slash kept."""
    cleaned = "/" + posixpath.normpath("/" + path).lstrip("/")
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


class Router:
    """The routes of a Klein app as httprouter holds them: per method, paths of static segments and
    ``<parameters>`` (one non-empty segment each)."""

    def __init__(self, url_map):
        #: method -> [segments]; a segment None is a parameter
        self.routes = {}
        for rule in url_map.iter_rules():
            segments = [None if part.startswith("<") else part for part in rule.rule.split("/")]
            # werkzeug adds HEAD to every GET rule; nsqd's router has no HEAD route
            for method in rule.methods - {"HEAD"}:
                self.routes.setdefault(method, []).append(segments)

    def can_route(self, method: str, path: str) -> bool:
        """Whether a route may take the request, else it goes straight to :meth:`unrouted`: its
        method has routes (werkzeug would answer HEAD with the GET route), and its path no empty
        segment, which no route has (Klein drops a leading one, werkzeug merges the others and
        redirects with a 308 of its own)."""
        return method in self.routes and "//" not in path

    def unrouted(self, request, path: str) -> bytes:
        """Answer a request no route takes, as httprouter does: a redirect, OPTIONS, 405 or 404."""
        method = request.method.decode("ascii")
        if method in self.routes and method != "CONNECT" and path != "/":
            fixed = self.fixed_path(method, path)
            if fixed is not None:
                target = quote(fixed, safe=_PATH_SAFE)
                if b"?" in request.uri:
                    target += "?" + request.uri.split(b"?", 1)[1].decode("ascii")
                return redirect(request, 301 if method == "GET" else 307, target)
        allow = self.allowed(path, method)
        if not allow:
            return respond_v1(request, 404, "NOT_FOUND")
        request.setHeader(b"Allow", allow.encode("ascii"))
        if method == "OPTIONS":
            return respond_bare(request, 200)
        return respond_v1(request, 405, "METHOD_NOT_ALLOWED")

    def fixed_path(self, method: str, path: str):
        """Where httprouter redirects a path none of `method`'s routes has, or None: the path with its
        trailing slash added or taken away, else the cleaned path matched without case (the route's
        spelling, the parameters as given), with or without a trailing slash."""
        toggled = path[:-1] if path.endswith("/") else path + "/"
        if self._match(method, toggled, False) is not None:
            return toggled
        cleaned = clean_path(path)
        for candidate in (cleaned, cleaned[:-1] if cleaned.endswith("/") else cleaned + "/"):
            fixed = self._match(method, candidate, True)
            if fixed is not None:
                return fixed
        return None

    def allowed(self, path: str, method: str) -> str:
        """httprouter's Allow: the other methods with a route for `path`, and OPTIONS; "" if none."""
        methods = [m for m in self.routes if m != method and self._match(m, path, False) is not None]
        return ", ".join(sorted(methods + ["OPTIONS"])) if methods else ""

    def _match(self, method: str, path: str, fold_case: bool):
        """The path as `method`'s first matching route spells it, or None."""
        parts = path.split("/")
        for segments in self.routes.get(method, ()):
            if len(segments) != len(parts):
                continue
            fixed = []
            for segment, part in zip(segments, parts):
                if segment is None:
                    if not part:
                        break
                    fixed.append(part)
                elif segment == part or (fold_case and segment.lower() == part.lower()):
                    fixed.append(segment)
                else:
                    break
            else:
                return "/".join(fixed)
        return None
