"""AUTH as nsqd does it: a client's secret is sent to an auth server (--auth-http-address), whose JSON
answer grants publish and subscribe on topics and channels matching regular expressions, for `ttl`
seconds; then it is asked again.

The request carries the client's address, whether it uses TLS and its certificate's common name,
as nsqd's does; the servers are tried from a random one on, each in turn, until one answers. The
query is asynchronous: only the client waiting for it waits (see ProtocolV2's suspension).
"""
from __future__ import annotations

import json
import random
import re
from io import BytesIO
from urllib.parse import urlencode

from twisted.internet import defer
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

ACCEPT = b"application/vnd.nsq; version=1.0"
PERMISSIONS = ("subscribe", "publish")


class AuthError(Exception):
    """No auth server answered with something usable; the client is told only "AUTH failed"."""


class Authorization:
    """One grant: permissions on the topics matching `topic` and the channels matching any of
    `channels` (Go's regexp MatchString: a match anywhere in the name)."""

    def __init__(self, data: dict):
        self.permissions = list(data.get("permissions") or [])
        for permission in self.permissions:
            if permission not in PERMISSIONS:
                raise AuthError("unknown permission %s" % (permission,))
        self.topic = _compile(data.get("topic", ""))
        self.channels = [_compile(channel) for channel in data.get("channels") or []]

    def allows(self, topic: str, channel: str) -> bool:
        if ("subscribe" if channel else "publish") not in self.permissions:
            return False
        if not self.topic.search(topic):
            return False
        return any(pattern.search(channel) for pattern in self.channels)


def _compile(expression: str):
    try:
        return re.compile(expression)
    except (re.error, TypeError) as err:
        raise AuthError("unable to compile %r %s" % (expression, err))


class AuthState:
    """What an auth server granted, until `expires` (clock seconds)."""

    def __init__(self, data: dict, now: float):
        if not isinstance(data, dict):
            raise AuthError("unexpected response %r" % (data,))
        try:
            self.authorizations = [Authorization(item) for item in data.get("authorizations") or []]
            self.identity = str(data.get("identity") or "")
            self.identity_url = str(data.get("identity_url") or "")
            ttl = int(data.get("ttl") or 0)
        except (AttributeError, TypeError, ValueError) as err:
            raise AuthError("unexpected response - %s" % (err,))
        if ttl <= 0:
            raise AuthError("invalid TTL %d (must be >0)" % ttl)
        self.expires = now + ttl

    def allows(self, topic: str, channel: str) -> bool:
        return any(authorization.allows(topic, channel) for authorization in self.authorizations)


class AuthClient:
    """Asks the node's auth servers about a client's secret."""

    def __init__(self, reactor, options, agent=None):
        self.clock = reactor
        self.addresses = list(options.auth_http_addresses)
        self.method = options.auth_http_request_method
        self.request_timeout = options.http_client_request_timeout
        self._agent = agent or Agent(reactor, connectTimeout=options.http_client_connect_timeout,
                                     contextFactory=BrowserLikePolicyForHTTPS())

    @defer.inlineCallbacks
    def query(self, remote_ip: str, tls: bool, common_name: str, secret: str):
        """The AuthState for `secret`, from the first server that answers; AuthError naming every
        failure otherwise."""
        params = {"remote_ip": remote_ip, "tls": "true" if tls else "false", "secret": secret,
                  "common_name": common_name}
        errors = []
        first = random.randrange(len(self.addresses))
        for address in self.addresses[first:] + self.addresses[:first]:
            try:
                body = yield self._request(address, params)
                state = AuthState(json.loads(body), self.clock.seconds())
            except Exception as err:
                errors.append("failed to auth against %s - %s" % (address, err))
                continue
            return state
        raise AuthError("; ".join(errors))

    def _request(self, address: str, params: dict):
        endpoint = address if "://" in address else "http://%s/auth" % (address,)
        headers = Headers({b"Accept": [ACCEPT]})
        if self.method == "post":
            headers.addRawHeader(b"Content-Type", b"application/x-www-form-urlencoded")
            request = self._agent.request(b"POST", endpoint.encode(), headers,
                                          FileBodyProducer(BytesIO(urlencode(params).encode())))
        else:
            request = self._agent.request(b"GET", ("%s?%s" % (endpoint, urlencode(params))).encode(), headers)
        request.addCallback(_ok_body)
        return request.addTimeout(self.request_timeout, self.clock)


def _ok_body(response):
    def check(body):
        if response.code != 200:
            raise AuthError("got response %d %r" % (response.code, body[:200]))
        return body
    return readBody(response).addCallback(check)
