"""`twistd nsqtx`: flags, the TOML config file, their precedence, and start-up failures."""
from __future__ import annotations

import hashlib
import io
import os
import socket
import sys
import tempfile
import zlib

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from nsqtx import tap, tuning
from nsqtx.node import NSQD
from nsqtx.server_process import ServerProcess
from nsqtx.version import NSQD_VERSION, __version__
from tests.support import (FakeJIT, MakeServiceTestsMixin, ParseTestsMixin, TwistdTestsMixin, data_dir,
                           make_certificates, replace_module)

HOSTNAME = socket.gethostname()

#: nsqd 1.3's NewOptions(), converted to seconds.
GO_DEFAULTS = {
    "node_id": zlib.crc32(hashlib.md5(HOSTNAME.encode()).digest()) % 1024,
    "log_level": "info",
    "tcp_address": "0.0.0.0:4150",
    "http_address": "0.0.0.0:4151",
    "broadcast_address": HOSTNAME,
    "broadcast_tcp_port": 0,
    "broadcast_http_port": 0,
    "nsqlookupd_tcp_addresses": [],
    "auth_http_addresses": [],
    "auth_http_request_method": "get",
    "http_client_connect_timeout": 2.0,
    "http_client_request_timeout": 5.0,
    "data_path": "",
    "mem_queue_size": 10000,
    "max_bytes_per_file": 100 * 1024 * 1024,
    "sync_every": 2500,
    "sync_timeout": 2.0,
    "msg_timeout": 60.0,
    "max_msg_timeout": 900.0,
    "max_msg_size": 1024 * 1024,
    "max_body_size": 5 * 1024 * 1024,
    "max_req_timeout": 3600.0,
    "max_heartbeat_interval": 60.0,
    "max_rdy_count": 2500,
    "max_output_buffer_size": 64 * 1024,
    "max_output_buffer_timeout": 30.0,
    "min_output_buffer_timeout": 0.025,
    "output_buffer_timeout": 0.25,
    "max_channel_consumers": 0,
    "max_deflate_level": 6,
    "deflate": True,
    "snappy": True,
    "https_address": "",
    "tls_cert": "",
    "tls_key": "",
    "tls_client_auth_policy": "",
    "tls_root_ca_file": "",
    "tls_required": 0,
    "tls_min_version": "tls1.0",
}

#: Every flag with a non-default value, and the value it must produce.
FLAGS = [
    ("--node-id=7", "node_id", 7),
    ("--log-level=warn", "log_level", "warn"),
    ("--tcp-address=127.0.0.1:5150", "tcp_address", "127.0.0.1:5150"),
    ("--http-address=[::1]:5151", "http_address", "[::1]:5151"),
    ("--broadcast-address=nsq.example", "broadcast_address", "nsq.example"),
    ("--broadcast-tcp-port=6150", "broadcast_tcp_port", 6150),
    ("--broadcast-http-port=6151", "broadcast_http_port", 6151),
    ("--lookupd-tcp-address=127.0.0.1:4160", "nsqlookupd_tcp_addresses", ["127.0.0.1:4160"]),
    ("--auth-http-address=https://auth.example/check", "auth_http_addresses", ["https://auth.example/check"]),
    ("--auth-http-request-method=post", "auth_http_request_method", "post"),
    ("--http-client-connect-timeout=1s", "http_client_connect_timeout", 1.0),
    ("--http-client-request-timeout=3s", "http_client_request_timeout", 3.0),
    ("--data-path=" + tempfile.gettempdir(), "data_path", tempfile.gettempdir()),
    ("--mem-queue-size=0", "mem_queue_size", 0),
    ("--max-bytes-per-file=4096", "max_bytes_per_file", 4096),
    ("--sync-every=10", "sync_every", 10),
    ("--sync-timeout=500ms", "sync_timeout", 0.5),
    ("--msg-timeout=1m30s", "msg_timeout", 90.0),
    ("--max-msg-timeout=1h", "max_msg_timeout", 3600.0),
    ("--max-msg-size=2048", "max_msg_size", 2048),
    ("--max-req-timeout=10m", "max_req_timeout", 600.0),
    ("--max-body-size=4096", "max_body_size", 4096),
    ("--max-heartbeat-interval=2m", "max_heartbeat_interval", 120.0),
    ("--max-rdy-count=100", "max_rdy_count", 100),
    ("--max-output-buffer-size=1024", "max_output_buffer_size", 1024),
    ("--max-output-buffer-timeout=1s", "max_output_buffer_timeout", 1.0),
    ("--min-output-buffer-timeout=10ms", "min_output_buffer_timeout", 0.01),
    ("--output-buffer-timeout=100ms", "output_buffer_timeout", 0.1),
    ("--max-channel-consumers=3", "max_channel_consumers", 3),
    ("--max-deflate-level=9", "max_deflate_level", 9),
    ("--deflate=false", "deflate", False),
    ("--snappy=0", "snappy", False),
    ("--https-address=127.0.0.1:4152", "https_address", "127.0.0.1:4152"),
    # the files are made by the test (see test_every_flag)
    ("--tls-cert={server}", "tls_cert", "{server}"),
    ("--tls-key={server_key}", "tls_key", "{server_key}"),
    ("--tls-client-auth-policy=require-verify", "tls_client_auth_policy", "require-verify"),
    ("--tls-root-ca-file={ca}", "tls_root_ca_file", "{ca}"),
    ("--tls-required=tcp-https", "tls_required", 1),
    ("--tls-min-version=tls1.2", "tls_min_version", "tls1.2"),
]


def parse(*argv):
    config = tap.NSQDOptions()
    config.parseOptions(list(argv))
    return config.options


class FlagTests(ParseTestsMixin, unittest.TestCase):
    config_class = tap.NSQDOptions

    def test_defaults_match_go_nsqd(self):
        options = parse()
        for name, value in GO_DEFAULTS.items():
            self.assertEqual(getattr(options, name), value, name)

    def test_every_flag(self):
        self.assertEqual(len(FLAGS), len(tap.SETTINGS))
        certificates = make_certificates(self)
        flags = [(flag.format(**certificates), name, value.format(**certificates) if isinstance(value, str) else value)
                 for flag, name, value in FLAGS]
        options = parse(*[flag for flag, _, _ in flags])
        for flag, name, value in flags:
            self.assertEqual(getattr(options, name), value, flag)

    def test_unreadable_tls_files_are_refused(self):
        missing = os.path.join(data_dir(self), "cert.pem")
        self.assertStartupError(["--tls-cert=" + missing, "--tls-key=" + missing], "failed to build TLS config",
                                missing)

    def test_missing_data_path_is_refused(self):
        missing = os.path.join(data_dir(self), "nope")
        self.assertStartupError(["--data-path=" + missing], "--data-path", "is not a directory")

    def test_separate_argument(self):
        self.assertEqual(parse("--msg-timeout", "250ms").msg_timeout, 0.25)

    def test_log_level_is_case_insensitive(self):
        self.assertEqual(parse("--log-level=DEBUG").log_level, "debug")

    def test_bad_flag_values(self):
        for argv, needle in [
            (["--msg-timeout=banana"], "--msg-timeout"),
            (["--msg-timeout=60"], "--msg-timeout"),
            (["--msg-timeout=-1s"], "--msg-timeout"),
            (["--sync-timeout=0"], "--sync-timeout"),
            (["--mem-queue-size=ten"], "--mem-queue-size"),
            (["--mem-queue-size=1.5"], "--mem-queue-size"),
            (["--mem-queue-size=-1"], "--mem-queue-size"),
            (["--max-bytes-per-file=0"], "--max-bytes-per-file"),
            (["--tcp-address=nowhere"], "--tcp-address"),
            (["--http-address=127.0.0.1:99999"], "--http-address"),
            (["--log-level=loud"], "--log-level"),
            (["--node-id=1024"], "--node-id"),
            (["--max-deflate-level=0"], "--max-deflate-level"),
            (["--broadcast-tcp-port=70000"], "--broadcast-tcp-port"),
            (["--max-msg-size=10", "--max-body-size=5"], "--max-msg-size"),
        ]:
            self.assertStartupError(argv, needle)

    def test_unknown_flag(self):
        self.assertStartupError(["--bogus"], "bogus")

    def test_missing_value(self):
        self.assertStartupError(["--msg-timeout"], "msg-timeout")

    def test_stray_argument(self):
        self.assertStartupError(["extra"])

    def test_version(self):
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        e = self.assertRaises(SystemExit, parse, "--msg-timeout=banana", "--version")
        self.assertEqual(e.code, 0)
        self.assertEqual(out.getvalue(), "nsqtx v%s (nsqd %s compatible)\n" % (__version__, NSQD_VERSION))

    def test_help_shows_go_defaults(self):
        text = str(tap.NSQDOptions())
        for flag in ["--tcp-address", "--msg-timeout", "--config", "--version"]:
            self.assertIn(flag, text)
        self.assertIn("0.0.0.0:4150", text)
        self.assertIn("1m0s", text)
        self.assertIn("250ms", text)


class ConfigFileTests(ParseTestsMixin, unittest.TestCase):
    config_class = tap.NSQDOptions

    def test_values(self):
        path = self.write_config(
            'tcp_address = "127.0.0.1:5150"\n'
            'log_level = "debug"\n'
            "id = 42\n"
            "mem_queue_size = 5\n"
            'max_bytes_per_file = "4096"\n'
            'msg_timeout = "1m30s"\n'
            "sync_timeout = 1500\n"
            'data_path = "%s"\n' % tempfile.gettempdir()
        )
        options = parse("--config", path)
        self.assertEqual(options.tcp_address, "127.0.0.1:5150")
        self.assertEqual(options.log_level, "debug")
        self.assertEqual(options.node_id, 42)
        self.assertEqual(options.mem_queue_size, 5)
        self.assertEqual(options.max_bytes_per_file, 4096)
        self.assertEqual(options.msg_timeout, 90.0)
        self.assertEqual(options.data_path, tempfile.gettempdir())
        self.assertEqual(options.http_address, GO_DEFAULTS["http_address"])

    def test_booleans_tls_required_and_lists(self):
        certificates = make_certificates(self)
        tls = 'tls_cert = "%s"\ntls_key = "%s"\n' % (certificates["server"], certificates["server_key"])
        cases = [("snappy = false\n", "snappy", False), ('deflate = "f"\n', "deflate", False),
                 ("tls_required = false\n", "tls_required", 0),
                 ('tls_required = "tcp-https"\n' + tls, "tls_required", 1), ("tls_required = true\n" + tls, "tls_required", 2),
                 ('nsqlookupd_tcp_addresses = ["127.0.0.1:4160", "lookupd:4160"]\n', "nsqlookupd_tcp_addresses",
                  ["127.0.0.1:4160", "lookupd:4160"])]
        for text, name, value in cases:
            self.assertEqual(getattr(parse("--config", self.write_config(text)), name), value, text)
        for text in ("snappy = 1.5\n", 'deflate = "maybe"\n', "tls_required = 3\n",
                     'nsqlookupd_tcp_addresses = "127.0.0.1:4160"\n', "nsqlookupd_tcp_addresses = [4160]\n"):
            self.assertStartupError(["--config", self.write_config(text)], "invalid value")
        self.assertStartupError(["--config", self.write_config("tls_required = true\n")],
                                "cannot require TLS client connections without TLS key and cert")

    def test_integer_duration_is_milliseconds(self):
        """Go nsqd's go-options coerces an integer duration from the file as milliseconds."""
        self.assertEqual(parse("--config", self.write_config("sync_timeout = 1500\n")).sync_timeout, 1.5)

    def test_node_id_key(self):
        self.assertEqual(parse("--config", self.write_config("node_id = 9\n")).node_id, 9)

    def test_id_and_node_id_together(self):
        path = self.write_config("id = 1\nnode_id = 2\n")
        self.assertStartupError(["--config", path], "node_id")

    def test_flags_override_file(self):
        path = self.write_config('msg_timeout = "5s"\nmem_queue_size = 5\nid = 3\n')
        options = parse("--msg-timeout=7s", "--config", path, "--node-id=4")
        self.assertEqual(options.msg_timeout, 7.0)
        self.assertEqual(options.node_id, 4)
        self.assertEqual(options.mem_queue_size, 5)

    def test_file_values_are_validated(self):
        path = self.write_config("mem_queue_size = -1\n")
        self.assertStartupError(["--config", path], "mem-queue-size")

    def test_unknown_key_is_ignored_with_a_warning(self):
        path = self.write_config('msg_timeout = "5s"\nstatsd_address = "127.0.0.1:8125"\n')
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        options = parse("--config", path)
        self.assertEqual(options.msg_timeout, 5.0)
        self.assertEqual(stderr.getvalue(),
                         "nsqtx: config file %s: ignoring unknown key 'statsd_address'\n" % (path,))

    def test_bad_values(self):
        for line, needle in [
            ('msg_timeout = "banana"', "msg_timeout"),
            ("msg_timeout = 1.5", "msg_timeout"),
            ('msg_timeout = "60"', "msg_timeout"),
            ("mem_queue_size = 1.5", "mem_queue_size"),
            ("mem_queue_size = true", "mem_queue_size"),
            ('mem_queue_size = "ten"', "mem_queue_size"),
            ("tcp_address = 4150", "tcp_address"),
            ('tcp_address = "nowhere"', "tcp_address"),
            ('log_level = "loud"', "log_level"),
            ("id = [1]", "id"),
        ]:
            path = self.write_config(line + "\n")
            self.assertStartupError(["--config", path], needle, path)

    def test_bad_toml(self):
        path = self.write_config("msg_timeout = = 5s\n")
        self.assertStartupError(["--config", path], "TOML", path)

    def test_missing_file(self):
        path = os.path.join(data_dir(self), "missing.cfg")
        self.assertStartupError(["--config", path], path)


class MakeServiceTests(MakeServiceTestsMixin, unittest.TestCase):
    tap = tap
    server_class = NSQD
    tac = "nsqd.tac"

    def test_started_service_tunes_the_interpreter(self):
        """Only the server process is tuned (see nsqtx.tuning): makeService alone changes nothing."""
        jit = FakeJIT()
        replace_module(self, "pypyjit", jit)
        self.patch(tuning, "_jit_chosen", lambda cmdline_path: False)
        config = tap.Options()
        config.parseOptions([])
        tap.makeService(config)
        self.assertEqual(jit.params, [])
        ServerProcess("nsqtx", MemoryReactorClock()).startService()
        self.assertEqual(jit.params, [tuning.JIT_PARAMS])


class TwistdTests(TwistdTestsMixin, unittest.TestCase):
    program = "nsqtx"
    bad_flag = ("--msg-timeout=banana", "msg-timeout", "banana")

    def server_args(self) -> list:
        return ["--data-path=" + self.workdir]

    def exchange(self, client) -> None:
        """A published message answered OK: the server has accepted and is serving this client."""
        client.sendall(b"  V2PUB t\n\x00\x00\x00\x02hi")
        self.assertEqual(client.recv(10), b"\x00\x00\x00\x06\x00\x00\x00\x00OK")
