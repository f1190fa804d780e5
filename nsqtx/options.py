"""nsqd's options: the names (underscored flag names), defaults and bounds of Go nsqd 1.3.

Durations are float seconds, sizes are ints. The same object configures `twistd nsqtx` (see
:mod:`nsqtx.tap`, which fills it from flags and a TOML file) and an embedded :class:`NSQD`.
"""
from __future__ import annotations

import hashlib
import os
import socket
import zlib

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
#: --tls-client-auth-policy: no client certificate asked for, any certificate required, or one
#: required that verifies against --tls-root-ca-file
TLS_CLIENT_AUTH_POLICIES = ("", "require", "require-verify")
#: --tls-min-version, as nsqd spells them
TLS_MIN_VERSIONS = ("tls1.0", "tls1.1", "tls1.2", "tls1.3")
#: --tls-required: not required, required except over HTTP (Go's "tcp-https"), required
TLS_NOT_REQUIRED, TLS_REQUIRED_EXCEPT_HTTP, TLS_REQUIRED = 0, 1, 2


def default_node_id(hostname: str) -> int:
    """nsqd derives its default node id from the host name, so IDs stay unique per host."""
    return zlib.crc32(hashlib.md5(hostname.encode()).digest()) % 1024


class Options:
    """Every setting nsqd takes; construct with keyword overrides, e.g. ``Options(mem_queue_size=0)``."""

    def __init__(self, **overrides):
        hostname = socket.gethostname()
        self.node_id = default_node_id(hostname)
        self.log_level = "info"
        self.log_prefix = "[nsqd] "
        self.tcp_address = "0.0.0.0:4150"
        self.http_address = "0.0.0.0:4151"
        self.broadcast_address = hostname
        self.broadcast_tcp_port = 0
        self.broadcast_http_port = 0
        self.nsqlookupd_tcp_addresses = []
        self.auth_http_addresses = []
        self.auth_http_request_method = "get"
        self.http_client_connect_timeout = 2.0
        self.http_client_request_timeout = 5.0
        self.data_path = ""
        self.mem_queue_size = 10000
        self.max_bytes_per_file = 100 * 1024 * 1024
        self.sync_every = 2500
        self.sync_timeout = 2.0
        self.queue_scan_interval = 0.1
        self.queue_scan_selection_count = 20
        self.queue_scan_worker_pool_max = 4
        self.msg_timeout = 60.0
        self.max_msg_timeout = 15 * 60.0
        self.max_msg_size = 1024 * 1024
        self.max_body_size = 5 * 1024 * 1024
        self.max_req_timeout = 3600.0
        self.client_timeout = 60.0
        self.max_heartbeat_interval = 60.0
        self.max_rdy_count = 2500
        self.max_output_buffer_size = 64 * 1024
        self.max_output_buffer_timeout = 30.0
        self.min_output_buffer_timeout = 0.025
        self.output_buffer_timeout = 0.25
        self.max_channel_consumers = 0
        self.max_deflate_level = 6
        self.deflate = True
        self.snappy = True
        #: listened on only with a certificate (--tls-cert, --tls-key), as nsqd does
        self.https_address = "0.0.0.0:4152"
        self.tls_cert = ""
        self.tls_key = ""
        self.tls_client_auth_policy = ""
        self.tls_root_ca_file = ""
        self.tls_required = TLS_NOT_REQUIRED
        self.tls_min_version = "tls1.0"
        for name, value in overrides.items():
            if not hasattr(self, name):
                raise TypeError("unknown nsqd option %r" % (name,))
            setattr(self, name, value)

    def validate(self) -> None:
        """Raise ValueError naming the flag, for values nsqd itself would refuse or that make no sense."""
        for name in ("mem_queue_size", "max_bytes_per_file", "sync_every", "max_channel_consumers",
                     "broadcast_tcp_port", "broadcast_http_port"):
            if getattr(self, name) < 0:
                raise ValueError("--%s must not be negative" % name.replace("_", "-"))
        for name in ("max_msg_size", "max_body_size", "max_rdy_count", "max_output_buffer_size",
                     "max_bytes_per_file", "sync_every"):
            if getattr(self, name) <= 0:
                raise ValueError("--%s must be positive" % name.replace("_", "-"))
        for name in ("queue_scan_interval", "msg_timeout", "max_msg_timeout", "max_heartbeat_interval",
                     "client_timeout", "sync_timeout", "http_client_connect_timeout", "http_client_request_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError("--%s must be a positive duration" % name.replace("_", "-"))
        for name in ("max_req_timeout", "max_output_buffer_timeout", "min_output_buffer_timeout",
                     "output_buffer_timeout"):
            if getattr(self, name) < 0:
                raise ValueError("--%s must not be negative" % name.replace("_", "-"))
        for name in ("broadcast_tcp_port", "broadcast_http_port"):
            if getattr(self, name) > 65535:
                raise ValueError("--%s must be at most 65535" % name.replace("_", "-"))
        if self.max_msg_size > self.max_body_size:
            raise ValueError("--max-msg-size (%d) must not exceed --max-body-size (%d)"
                             % (self.max_msg_size, self.max_body_size))
        if not 0 <= self.node_id < 1024:
            raise ValueError("--node-id must be in [0,1024) (%d)" % self.node_id)
        if self.log_level not in LOG_LEVELS:
            raise ValueError("--log-level must be one of %s" % ", ".join(LOG_LEVELS))
        if not 1 <= self.max_deflate_level <= 9:
            raise ValueError("--max-deflate-level must be in [1,9]")
        for name in ("tcp_address", "http_address"):
            parse_address(getattr(self, name), "--" + name.replace("_", "-"))
        for address in self.nsqlookupd_tcp_addresses:
            parse_address(address, "--lookupd-tcp-address")
        if self.https_address:
            parse_address(self.https_address, "--https-address")
        if self.auth_http_request_method not in ("get", "post"):
            raise ValueError("--auth-http-request-method must be get or post (%r)" % (self.auth_http_request_method,))
        if self.tls_client_auth_policy not in TLS_CLIENT_AUTH_POLICIES:
            raise ValueError("--tls-client-auth-policy must be require or require-verify (%r)"
                             % (self.tls_client_auth_policy,))
        # as nsqd reads it: any case, and empty for the default
        self.tls_min_version = (self.tls_min_version or "tls1.0").lower()
        if self.tls_min_version not in TLS_MIN_VERSIONS:
            raise ValueError("--tls-min-version must be tls1.0, tls1.1, tls1.2 or tls1.3 (%r)" % (self.tls_min_version,))
        if self.tls_required not in (TLS_NOT_REQUIRED, TLS_REQUIRED_EXCEPT_HTTP, TLS_REQUIRED):
            raise ValueError("--tls-required must be true, false or tcp-https")
        if self.tls_client_auth_policy and not self.tls_required:
            # as nsqd: asking clients for certificates requires TLS of them
            self.tls_required = TLS_REQUIRED
        if self.tls_required and not (self.tls_cert and self.tls_key):
            raise ValueError("cannot require TLS client connections without TLS key and cert")


def check_data_path(path: str) -> None:
    """Where nsqd keeps its queues must exist before it starts; it is not created silently."""
    if path and not os.path.isdir(path):
        raise ValueError("--data-path %r is not a directory" % (path,))


def parse_address(text: str, flag: str = "address"):
    """Split "host:port" / "[v6]:port" / ":port" into (interface, port) for listenTCP."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError("%s %r is not host:port" % (flag, text))
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)
