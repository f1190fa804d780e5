"""`twistd nsqtx-lookupd`: nsqlookupd's flags and TOML config file (see :mod:`nsqtx.settings`),
resolved into LookupdOptions and the service tree of a server process running an NSQLookupd."""
from __future__ import annotations

from nsqtx.log import set_log_level
from nsqtx.lookupd.node import NSQLookupd
from nsqtx.lookupd.options import LookupdOptions
from nsqtx.server_process import ServerProcess
from nsqtx.settings import ADDRESS, DURATION, LOG_LEVEL, STRING, SettingsOptions
from nsqtx.version import NSQLOOKUPD_VERSION, __version__

PROGRAM = "nsqtx-lookupd"

#: (LookupdOptions attribute, kind, help), in the order Go nsqlookupd lists its flags
SETTINGS = [
    ("log_level", LOG_LEVEL, "log verbosity: debug, info, warn, error or fatal"),
    ("tcp_address", ADDRESS, "<addr>:<port> to listen on for TCP clients"),
    ("http_address", ADDRESS, "<addr>:<port> to listen on for HTTP clients"),
    ("broadcast_address", STRING, "address of this lookupd node (default: the host name)"),
    ("inactive_producer_timeout", DURATION,
     "duration of time a producer will remain in the active list since its last ping"),
    ("tombstone_lifetime", DURATION,
     "duration of time a producer will remain tombstoned if registration remains"),
]


class LookupdConfig(SettingsOptions):
    longdesc = ("Runs nsqlookupd (protocol V1 and the HTTP API, wire-compatible with NSQ 1.3). Durations "
                "use Go syntax (300s, 45s, 5m). Flags override values from --config.")

    program = PROGRAM
    version_line = "%s v%s (nsqlookupd %s compatible)" % (PROGRAM, __version__, NSQLOOKUPD_VERSION)
    settings = SETTINGS
    options_class = LookupdOptions


#: The name twistd's ServiceMaker looks up.
Options = LookupdConfig


def server_service(options: LookupdOptions, reactor) -> ServerProcess:
    """The service tree of a server process, so that `twistd nsqtx-lookupd` and a deployment's .tac
    file (``tac/nsqlookupd.tac``) start, tune and stop the same way."""
    top = ServerProcess(PROGRAM, reactor)
    NSQLookupd(options).setServiceParent(top)
    return top


def makeService(config: LookupdConfig) -> ServerProcess:
    from twisted.internet import reactor

    set_log_level(config.options.log_level)
    return server_service(config.options, reactor)
