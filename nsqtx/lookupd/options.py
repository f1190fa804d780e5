"""nsqlookupd's options: the names (underscored flag names) and defaults of Go nsqlookupd 1.3.

Durations are float seconds. The same object configures `twistd nsqtx-lookupd` (see
:mod:`nsqtx.lookupd.tap`, which fills it from flags and a TOML file) and an embedded
:class:`~nsqtx.lookupd.node.NSQLookupd`.
"""
from __future__ import annotations

import socket

from nsqtx.options import LOG_LEVELS, parse_address


class LookupdOptions:
    """Every setting nsqlookupd takes; construct with keyword overrides, e.g.
    ``LookupdOptions(tcp_address="127.0.0.1:0")``."""

    def __init__(self, **overrides):
        self.log_level = "info"
        self.tcp_address = "0.0.0.0:4160"
        self.http_address = "0.0.0.0:4161"
        #: the address this lookupd tells the nsqd nodes that IDENTIFY to it
        self.broadcast_address = socket.gethostname()
        #: a producer with no IDENTIFY or PING for longer is left out of /lookup and /nodes
        self.inactive_producer_timeout = 300.0
        #: how long a tombstoned topic producer is left out of /lookup
        self.tombstone_lifetime = 45.0
        for name, value in overrides.items():
            if not hasattr(self, name):
                raise TypeError("unknown nsqlookupd option %r" % (name,))
            setattr(self, name, value)

    def validate(self) -> None:
        """Raise ValueError naming the flag, for values that make no sense. Go takes a negative
        duration silently (every producer inactive, no tombstone holding); here it is refused."""
        for name in ("tcp_address", "http_address"):
            parse_address(getattr(self, name), "--" + name.replace("_", "-"))
        if self.log_level not in LOG_LEVELS:
            raise ValueError("--log-level must be one of %s" % ", ".join(LOG_LEVELS))
        for name in ("inactive_producer_timeout", "tombstone_lifetime"):
            if getattr(self, name) < 0:
                raise ValueError("--%s must not be negative" % name.replace("_", "-"))
