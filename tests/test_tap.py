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

from nsqtx import settings, tap, tuning
from nsqtx.node import NSQD
from nsqtx.server_process import ServerProcess
from nsqtx.version import NSQD_VERSION, __version__
from tests.support import (FakeJIT, MakeServiceTestsMixin, ParseTestsMixin, TwistdTestsMixin, data_dir, free_port,
                           make_certificates, replace_module, wait_for_ping)

HOSTNAME = socket.gethostname()

#: nsqd 1.3's NewOptions(), converted to seconds.
GO_DEFAULTS = {
    "node_id": zlib.crc32(hashlib.md5(HOSTNAME.encode()).digest()) % 1024,
    "log_level": "info",
    "log_prefix": "[nsqd] ",
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
    "queue_scan_selection_count": 20,
    "queue_scan_worker_pool_max": 4,
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
    "https_address": "0.0.0.0:4152",
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
    ("--log-prefix=[x] ", "log_prefix", "[x] "),
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
    ("--queue-scan-selection-count=5", "queue_scan_selection_count", 5),
    ("--queue-scan-worker-pool-max=2", "queue_scan_worker_pool_max", 2),
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
    ("--tls-min-version=TLS1.2", "tls_min_version", "tls1.2"),
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
        """queue_scan_dirty_percent is an option of Go nsqd without a flag, hence no config key."""
        path = self.write_config('msg_timeout = "5s"\nqueue_scan_dirty_percent = 0.5\n')
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        options = parse("--config", path)
        self.assertEqual(options.msg_timeout, 5.0)
        self.assertEqual(stderr.getvalue(),
                         "nsqtx: config file %s: ignoring unknown key 'queue_scan_dirty_percent'\n" % (path,))

    def test_a_flag_overrides_a_bad_file_value_unread(self):
        """As go-options: a key whose flag is given is not read at all."""
        path = self.write_config('msg_timeout = "banana"\ntls_required = true\n')
        options = parse("--config", path, "--msg-timeout=5s", "--tls-required=false")
        self.assertEqual(options.msg_timeout, 5.0)

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


#: Go's flag package's rules (flag.FlagSet.parseOne), each with the usage.Options arguments it must
#: become: one dash or two, the value after "=" or in the next argument whatever that holds, a
#: boolean alone true, "--" the end.
GO_SYNTAX = [
    (["-tcp-address=127.0.0.1:5150"], ["--tcp-address=127.0.0.1:5150"]),
    (["-tcp-address", "127.0.0.1:5150"], ["--tcp-address=127.0.0.1:5150"]),
    (["--tcp-address=127.0.0.1:5150"], ["--tcp-address=127.0.0.1:5150"]),
    (["--tcp-address", "127.0.0.1:5150"], ["--tcp-address=127.0.0.1:5150"]),
    (["-mem-queue-size", "-5"], ["--mem-queue-size=-5"]),
    (["-tcp-address", "-http-address=x"], ["--tcp-address=-http-address=x"]),
    (["-broadcast-address=a=b"], ["--broadcast-address=a=b"]),
    (["-data-path="], ["--data-path="]),
    (["-data-path", ""], ["--data-path="]),
    (["-snappy"], ["--snappy=true"]),
    (["-snappy=false"], ["--snappy=false"]),
    (["--deflate=0", "--tls-required=F"], ["--deflate=0", "--tls-required=F"]),
    (["-lookupd-tcp-address=a:1", "--lookupd-tcp-address", "b:2"],
     ["--lookupd-tcp-address=a:1", "--lookupd-tcp-address=b:2"]),
    # the class's own switches are Go booleans too
    (["-verbose", "--worker-id"], ["--verbose", "--worker-id"]),
    (["-verbose=false", "-worker-id=1"], ["--worker-id"]),
    (["-version"], ["--version"]),
    # Go answers -h and -help with its usage
    (["-h"], ["--help"]),
    (["-help"], ["--help"]),
    (["-msg-timeout=1s", "--"], ["--msg-timeout=1s"]),
    ([], []),
]

#: What Go's flag package refuses, with the line nsqtx answers; and what it takes but nsqtx refuses.
GO_SYNTAX_ERRORS = [
    (["---tcp-address=x"], "bad flag syntax: ---tcp-address=x"),
    (["-=x"], "bad flag syntax: -=x"),
    (["--=x"], "bad flag syntax: --=x"),
    (["-tcp-address"], "flag needs an argument: -tcp-address"),
    (["-bogus=1"], "flag provided but not defined: -bogus"),
    (["-verbose=banana"], "invalid value 'banana' for -verbose: not a boolean (true or false)"),
    # getopt would take an unambiguous abbreviation; Go's flag package does not
    (["--tcp=127.0.0.1:5150"], "flag provided but not defined: --tcp"),
    # Go stops at the first argument that is not a flag and ignores the rest (here every flag after it)
    (["-snappy", "false", "-tcp-address=127.0.0.1:5150"],
     "unexpected argument 'false' (a boolean flag takes its value after =, as in -snappy=false)"),
    (["-msg-timeout=1s", "extra"], "unexpected argument 'extra'"),
    (["-"], "unexpected argument '-'"),
    (["--", "extra"], "unexpected argument 'extra' after --"),
]

#: Go nsqd 1.3's flags (apps/nsqd/options.go, nsqdFlagSet)
GO_FLAGS = [
    "version", "config", "log-level", "log-prefix", "verbose", "node-id", "worker-id", "https-address",
    "http-address", "tcp-address", "auth-http-address", "broadcast-address", "broadcast-tcp-port",
    "broadcast-http-port", "lookupd-tcp-address", "http-client-connect-timeout",
    "http-client-request-timeout", "data-path", "mem-queue-size", "max-bytes-per-file", "sync-every",
    "sync-timeout", "queue-scan-worker-pool-max", "queue-scan-selection-count", "msg-timeout",
    "max-msg-timeout", "max-msg-size", "max-req-timeout", "max-body-size", "max-heartbeat-interval",
    "max-rdy-count", "max-output-buffer-size", "max-output-buffer-timeout", "min-output-buffer-timeout",
    "output-buffer-timeout", "max-channel-consumers", "statsd-address", "statsd-interval",
    "statsd-mem-stats", "statsd-prefix", "statsd-udp-packet-size", "statsd-exclude-ephemeral",
    "e2e-processing-latency-percentile", "e2e-processing-latency-window-time", "tls-cert", "tls-key",
    "tls-client-auth-policy", "tls-root-ca-file", "tls-required", "tls-min-version", "deflate",
    "max-deflate-level", "snappy",
]

#: A config file with every key Go nsqd 1.3 reads (its Options fields with a flag tag), at Go's
#: defaults (TLS_REQUIRED's as the boolean Go's file takes).
GO_DEFAULTS_FILE = """
id = 5
log_level = "info"
log_prefix = "[nsqd] "
tcp_address = "0.0.0.0:4150"
http_address = "0.0.0.0:4151"
https_address = "0.0.0.0:4152"
broadcast_address = "nsq.example"
broadcast_tcp_port = 0
broadcast_http_port = 0
nsqlookupd_tcp_addresses = []
auth_http_addresses = []
http_client_connect_timeout = "2s"
http_client_request_timeout = "5s"
data_path = ""
mem_queue_size = 10000
max_bytes_per_file = 104857600
sync_every = 2500
sync_timeout = "2s"
queue_scan_selection_count = 20
queue_scan_worker_pool_max = 4
msg_timeout = "60s"
max_msg_timeout = "15m"
max_msg_size = 1048576
max_body_size = 5242880
max_req_timeout = "1h"
max_heartbeat_interval = "60s"
max_rdy_count = 2500
max_output_buffer_size = 65536
max_output_buffer_timeout = "30s"
min_output_buffer_timeout = "25ms"
output_buffer_timeout = "250ms"
max_channel_consumers = 0
statsd_address = ""
statsd_prefix = "nsq.%s"
statsd_interval = "60s"
statsd_mem_stats = true
statsd_udp_packet_size = 508
statsd_exclude_ephemeral = false
e2e_processing_latency_window_time = "10m"
e2e_processing_latency_percentiles = []
tls_cert = ""
tls_key = ""
tls_client_auth_policy = ""
tls_root_ca_file = ""
tls_required = false
tls_min_version = ""
deflate = true
max_deflate_level = 6
snappy = true
"""



def asking_value(missing):
    """(flag text, TOML text) that ask for a missing feature."""
    return ("true", "true") if missing.off == settings.FALSE else ("x", '"x"')


class GoFlagSyntaxTests(ParseTestsMixin, unittest.TestCase):
    config_class = tap.NSQDOptions

    def test_go_syntax(self):
        for argv, expected in GO_SYNTAX:
            self.assertEqual(tap.NSQDOptions().go_flags(argv), expected, argv)

    def test_go_syntax_errors(self):
        for argv, message in GO_SYNTAX_ERRORS:
            self.assertEqual(self.assertStartupError(argv), "nsqtx: " + message)

    def test_the_issues_command_line(self):
        options = parse("-tcp-address=127.0.0.1:4150", "-mem-queue-size", "123")
        self.assertEqual((options.tcp_address, options.mem_queue_size), ("127.0.0.1:4150", 123))

    def test_tls_required_alone_is_true_as_go_reads_it(self):
        certs = make_certificates(self)
        tls = ["--tls-cert=" + certs["server"], "--tls-key=" + certs["server_key"]]
        for argv, value in ((["-tls-required"], 2), (["-tls-required=tcp-https"], 1), (["-tls-required=false"], 0)):
            self.assertEqual(self.parse(*(tls + argv)).tls_required, value, argv)

    def test_every_go_flag_is_known(self):
        names = {opt.rstrip("=") for opt in tap.NSQDOptions().longOpt}
        # --auth-http-request-method came to nsqd after 1.3
        self.assertEqual(names, set(GO_FLAGS) | {"help", "auth-http-request-method"})

    def test_behind_twistds_own_options(self):
        from twisted.scripts.twistd import ServerOptions

        config = ServerOptions()
        config.parseOptions(["-n", "--pidfile=", "nsqtx", "-tcp-address=127.0.0.1:4150", "-mem-queue-size", "123",
                             "-lookupd-tcp-address", "127.0.0.1:4160", "--lookupd-tcp-address=127.0.0.2:4160"])
        options = config.subOptions.options
        self.assertEqual((config["nodaemon"], config["pidfile"]), (True, ""))
        self.assertEqual((options.tcp_address, options.mem_queue_size, options.nsqlookupd_tcp_addresses),
                         ("127.0.0.1:4150", 123, ["127.0.0.1:4160", "127.0.0.2:4160"]))

    def test_help_says_what_has_no_effect_and_why(self):
        text = " ".join(str(tap.NSQDOptions()).split())
        for flag in ["--log-prefix", "--queue-scan-worker-pool-max", "--queue-scan-selection-count"]:
            help_text = text.split(flag + "=", 1)[1].split(" --", 1)[0]
            self.assertIn("(no effect here: ", help_text, flag)
        self.assertIn("-name=value, -name value", text)


class MissingFeatureTests(ParseTestsMixin, unittest.TestCase):
    """Go nsqd's settings for statsd and end-to-end latency, which nsqtx does not have: refused where
    they ask for the feature, accepted where they do not."""

    config_class = tap.NSQDOptions

    def test_every_go_config_key_is_honoured_or_missing(self):
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        options = parse("--config", self.write_config(GO_DEFAULTS_FILE))
        self.assertEqual(stderr.getvalue(), "")
        self.assertEqual(options.node_id, 5)
        for name, value in GO_DEFAULTS.items():
            if name not in ("node_id", "broadcast_address"):
                self.assertEqual(getattr(options, name), value, name)
        # not an option here: their /config answers come with their features
        for name, _, _, _ in tap.MISSING:
            self.assertFalse(hasattr(options, name), name)

    def test_asking_flags_are_refused_in_one_line(self):
        for name, _, _, missing in tap.MISSING:
            if missing.off == settings.ANY:
                continue
            flag = "--" + (missing.flag or name.replace("_", "-"))
            text, _ = asking_value(missing)
            line = self.assertStartupError([flag + "=" + text])
            self.assertEqual(line, "nsqtx: %s=%s asks for %s, which nsqtx does not have yet: leave it out or %s"
                             % (flag, text, missing.feature,
                                "empty" if missing.off == settings.EMPTY else "set it to false"))

    def test_asking_keys_are_refused_in_one_line(self):
        for name, _, _, missing in tap.MISSING:
            if missing.off == settings.ANY:
                continue
            _, toml = asking_value(missing)
            path = self.write_config("%s = %s\n" % (name, toml))
            self.assertStartupError(["--config", path], path,
                                    "%s = %s asks for %s" % (name, toml, missing.feature))

    def test_values_that_ask_for_nothing(self):
        options = parse("--statsd-address=", "-statsd-prefix=x", "-statsd-mem-stats", "--statsd-interval=1s",
                        "--e2e-processing-latency-window-time=1m", "--e2e-processing-latency-percentile=")
        self.assertEqual(vars(options), vars(parse()))

    def test_values_of_settings_without_effect_are_still_checked(self):
        for argv, needle in [(["--statsd-interval=soon"], "--statsd-interval"),
                             (["--statsd-udp-packet-size=big"], "--statsd-udp-packet-size"),
                             (["--statsd-exclude-ephemeral=maybe"], "--statsd-exclude-ephemeral")]:
            self.assertStartupError(argv, needle)
        path = self.write_config('statsd_interval = "soon"\n')
        self.assertStartupError(["--config", path], "statsd_interval", path)


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

    def test_python_m_nsqtx_runs_servers_side_by_side_without_pidfiles(self):
        """`python -m nsqtx` runs as `twistd -n --pidfile= nsqtx`: two servers started from one
        directory both serve (with twistd's default twistd.pid, the second would be refused), Go's
        flag syntax included."""
        servers = []
        for name in ("one", "two"):
            data_path = os.path.join(self.workdir, name)
            os.mkdir(data_path)
            http_port = free_port()
            proc, output = self.start([sys.executable, "-m", "nsqtx", "-tcp-address=127.0.0.1:%d" % free_port(),
                                       "-http-address", "127.0.0.1:%d" % http_port, "-data-path=" + data_path], name)
            servers.append((proc, http_port, output))
        for proc, http_port, output in servers:
            self.assertEqual(wait_for_ping(self, proc, http_port, self.START_TIMEOUT, output), b"OK")
        self.assertEqual(sorted(os.listdir(self.workdir)), ["one", "two"])
        for proc, _, output in servers:
            self.terminate(proc, output)
