"""The lookupd: a service tree that owns the registration database and the nsqd nodes' connections.

`NSQLookupd` is both what `twistd nsqtx-lookupd` runs and what a Python program embeds::

    lookupd = NSQLookupd(LookupdOptions(tcp_address="127.0.0.1:0", http_address="127.0.0.1:0"))
    lookupd.startService()       # listening now; lookupd.tcp_port / lookupd.http_port are the bound ports
    ...
    yield lookupd.stopService()  # closes the listeners and the nodes' connections

Its children are the TCP listener (protocol V1, :mod:`nsqtx.lookupd.protocol_v1`) and the HTTP
listener (:mod:`nsqtx.lookupd.http_api`). Nothing is kept across a restart: nsqd nodes register
again when they reconnect, as with Go nsqlookupd.
"""
from __future__ import annotations

from twisted.application.service import MultiService, Service
from twisted.internet import defer

from nsqtx.listener import ListeningServer
from nsqtx.log import NSQLogger, set_log_level
from nsqtx.lookupd.http_api import make_site
from nsqtx.lookupd.options import LookupdOptions
from nsqtx.lookupd.protocol_v1 import V1Factory
from nsqtx.lookupd.registration_db import RegistrationDB
from nsqtx.version import NSQLOOKUPD_VERSION, __version__

log = NSQLogger()

#: how long a stop waits for the nodes to take their last responses before cutting them off
CLOSE_GRACE = 2.0


class NSQLookupd(ListeningServer):
    name = "nsqlookupd"

    def __init__(self, options: LookupdOptions | None = None, reactor=None):
        """`reactor` defaults to the global one; it is also the clock (a MemoryReactorClock in tests).
        `clients` holds the nodes' connections (ProtocolV1)."""
        ListeningServer.__init__(self, reactor)
        self.options = options if options is not None else LookupdOptions()
        self.options.validate()
        self.db = RegistrationDB(self.clock)
        self.listen(V1Factory(self), make_site(self))

    def startService(self):
        set_log_level(self.options.log_level)
        MultiService.startService(self)
        log.info("nsqtx-lookupd v{version} (nsqlookupd {lookupd} protocol) TCP: listening on {tcp}, "
                 "HTTP: listening on {http}", version=__version__, lookupd=NSQLOOKUPD_VERSION,
                 tcp=self.tcp.port.getHost(), http=self.http.port.getHost())

    def stopService(self):
        """Stop listening and close every node's connection, as Go's Exit (their registrations go with
        them); a Deferred that fires once they are all gone."""
        Service.stopService(self)
        waits = [defer.maybeDeferred(service.stopService) for service in reversed(list(self))]
        waits.append(self.clients.close_all(self.clock, CLOSE_GRACE))
        log.info("nsqtx-lookupd: stopping")
        return defer.DeferredList(waits)
