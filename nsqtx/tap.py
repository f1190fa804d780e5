"""`twistd nsqtx`: nsqd's flags and TOML config file (see :mod:`nsqtx.settings`), resolved into Options
and the service tree of a server process running an NSQD."""
from __future__ import annotations

from nsqtx.log import set_log_level
from nsqtx.node import NSQD
from nsqtx.options import Options as NodeOptions, check_data_path
from nsqtx.server_process import ServerProcess
from nsqtx.settings import (ADDRESS, ADDRESS_LIST, ANY, BOOLEAN, DURATION, EMPTY, INTEGER, LOG_LEVEL, STRING,
                            STRING_LIST, TLS_REQUIRED, Missing, SettingsOptions)
from nsqtx.tls import server_tls
from nsqtx.version import NSQD_VERSION, __version__

_ONE_SCANNER = "nsqtx checks every channel each cycle, on its one thread)"

#: (Options attribute, kind, help), in the order Go nsqd lists its flags. The flag is the attribute
#: with dashes, the config file key is the attribute itself (Go's file also calls node_id "id").
SETTINGS = [
    ("log_level", LOG_LEVEL, "log verbosity: debug, info, warn, error or fatal"),
    ("log_prefix", STRING, "log message prefix (no effect here: twistd's log format prefixes every line)"),
    ("node_id", INTEGER, "unique part for message IDs, in [0,1024) (default: hash of the host name)"),
    ("http_address", ADDRESS, "<addr>:<port> to listen on for HTTP clients"),
    ("tcp_address", ADDRESS, "<addr>:<port> to listen on for TCP clients"),
    ("broadcast_address", STRING, "address registered with lookupd (default: the host name)"),
    ("broadcast_tcp_port", INTEGER, "TCP port registered with lookupd (default: the listening port)"),
    ("broadcast_http_port", INTEGER, "HTTP port registered with lookupd (default: the listening port)"),
    ("nsqlookupd_tcp_addresses", ADDRESS_LIST, "lookupd TCP address (may be given multiple times)"),
    ("auth_http_addresses", STRING_LIST,
     "<addr>:<port> or a full url to query auth server (may be given multiple times)"),
    ("auth_http_request_method", STRING, "HTTP method to use for auth server requests (get or post)"),
    ("http_client_connect_timeout", DURATION, "timeout for HTTP connect (to the auth servers)"),
    ("http_client_request_timeout", DURATION, "timeout for HTTP request (to the auth servers)"),
    ("data_path", STRING, "path to store disk-backed messages (default: the current directory)"),
    ("mem_queue_size", INTEGER, "number of messages to keep in memory (per topic/channel)"),
    ("max_bytes_per_file", INTEGER, "number of bytes per diskqueue file before rolling"),
    ("sync_every", INTEGER, "number of messages per diskqueue fsync"),
    ("sync_timeout", DURATION, "duration of time per diskqueue fsync"),
    ("queue_scan_worker_pool_max", INTEGER, "max concurrency for checking in-flight and deferred message "
     "timeouts (no effect here: " + _ONE_SCANNER),
    ("queue_scan_selection_count", INTEGER, "number of channels to check per cycle (every 100ms) for "
     "in-flight and deferred timeouts (no effect here: " + _ONE_SCANNER),
    ("msg_timeout", DURATION, "default duration to wait before auto-requeueing a message"),
    ("max_msg_timeout", DURATION, "maximum duration before a message will time out"),
    ("max_msg_size", INTEGER, "maximum size of a single message in bytes"),
    ("max_req_timeout", DURATION, "maximum requeueing timeout for a message"),
    ("max_body_size", INTEGER, "maximum size of a single command body"),
    ("max_heartbeat_interval", DURATION,
     "maximum client configurable duration of time between client heartbeats"),
    ("max_rdy_count", INTEGER, "maximum RDY count for a client"),
    ("max_output_buffer_size", INTEGER,
     "maximum client configurable size (in bytes) for a client output buffer"),
    ("max_output_buffer_timeout", DURATION,
     "maximum client configurable duration of time between flushing to a client"),
    ("min_output_buffer_timeout", DURATION,
     "minimum client configurable duration of time between flushing to a client"),
    ("output_buffer_timeout", DURATION, "default duration of time between flushing data to clients"),
    ("max_channel_consumers", INTEGER,
     "maximum channel consumer connection count per nsqd instance (0: unlimited)"),
    ("max_deflate_level", INTEGER, "max deflate compression level a client can negotiate"),
    ("deflate", BOOLEAN, "enable deflate feature negotiation (client compression)"),
    ("snappy", BOOLEAN, "enable snappy feature negotiation (client compression)"),
    ("https_address", STRING, "<addr>:<port> to listen on for HTTPS clients, given --tls-cert and --tls-key"),
    ("tls_cert", STRING, "path to certificate file"),
    ("tls_key", STRING, "path to key file"),
    ("tls_client_auth_policy", STRING, "client certificate auth policy ('require' or 'require-verify')"),
    ("tls_root_ca_file", STRING, "path to certificate authority file"),
    ("tls_required", TLS_REQUIRED,
     "require TLS for client connections (true, false, tcp-https): tcp-https exempts HTTP (default: false)"),
    ("tls_min_version", STRING, "minimum SSL/TLS version acceptable ('tls1.0', 'tls1.1', 'tls1.2' or 'tls1.3')"),
]

#: Go nsqd's settings for the features nsqtx does not have yet, (config key, kind, help, Missing), in
#: Go's order: accepted where they ask for nothing (an empty statsd_address), refused where they ask
#: for the feature, since running without the statsd a deployment counts on would be worse than not
#: starting. Their /config answers come with their features.
_STATSD = "statsd"
_E2E = "end-to-end latency percentiles"
MISSING = [
    ("statsd_address", STRING, "UDP <addr>:<port> of a statsd daemon for pushing stats", Missing(_STATSD, EMPTY)),
    ("statsd_interval", DURATION, "duration between pushing to statsd", Missing(_STATSD, ANY)),
    ("statsd_mem_stats", BOOLEAN, "toggle sending memory and GC stats to statsd", Missing(_STATSD, ANY)),
    ("statsd_prefix", STRING, "prefix used for keys sent to statsd (%s for host replacement)",
     Missing(_STATSD, ANY)),
    ("statsd_udp_packet_size", INTEGER, "the size in bytes of statsd UDP packets", Missing(_STATSD, ANY)),
    ("statsd_exclude_ephemeral", BOOLEAN, "skip ephemeral topics and channels when sending stats to statsd",
     Missing(_STATSD, ANY)),
    ("e2e_processing_latency_percentiles", STRING, "message processing time percentiles (as float (0, 1.0]) "
     "to track (may be given multiple times or comma separated)",
     Missing(_E2E, EMPTY, flag="e2e-processing-latency-percentile")),
    ("e2e_processing_latency_window_time", DURATION, "calculate end to end latency quantiles for this "
     "duration of time", Missing(_E2E, ANY)),
]

#: Go nsqd's config file names the node id "id"; "node_id" matches the flag and is accepted too.
FILE_ALIASES = {"id": "node_id"}


class NSQDOptions(SettingsOptions):
    longdesc = ("Runs nsqd (protocol V2, wire-compatible with NSQ 1.3). Flags take Go's syntax too "
                "(-name=value, -name value, a boolean as -name or -name=false); durations are Go's "
                "(60s, 250ms, 1m30s). Flags override values from --config.")

    program = "nsqtx"
    version_line = "nsqtx v%s (nsqd %s compatible)" % (__version__, NSQD_VERSION)
    settings = SETTINGS
    options_class = NodeOptions
    aliases = FILE_ALIASES
    missing = MISSING

    options: NodeOptions

    def opt_lookupd_tcp_address(self, address):
        """lookupd TCP address (may be given multiple times)"""
        self.add_to_list("nsqlookupd_tcp_addresses", "--lookupd-tcp-address", address)

    def opt_auth_http_address(self, address):
        """<addr>:<port> or a full url to query auth server (may be given multiple times)"""
        self.add_to_list("auth_http_addresses", "--auth-http-address", address, STRING)

    def opt_worker_id(self):
        """[deprecated] no effect, as in Go nsqd 1.3: use --node-id"""

    def postOptions(self):
        """Files the options name are read now, so that a bad one is a one-line error too."""
        SettingsOptions.postOptions(self)
        check_data_path(self.options.data_path)
        server_tls(self.options)


#: The name twistd's ServiceMaker looks up.
Options = NSQDOptions


def server_service(options: NodeOptions, reactor) -> ServerProcess:
    """The service tree of a server process, so that `twistd nsqtx` and a deployment's .tac file
    (``tac/nsqd.tac``) start, tune and stop the same way."""
    top = ServerProcess("nsqtx", reactor)
    NSQD(options).setServiceParent(top)
    return top


def makeService(config: NSQDOptions) -> ServerProcess:
    from twisted.internet import reactor

    set_log_level(config.options.log_level)
    return server_service(config.options, reactor)
