"""`twistd nsqtx-lookupd` (nsqtx.lookupd.tap): Go nsqlookupd 1.3's flags, the TOML config file, their
precedence, the service tree, and the real twistd process."""
from __future__ import annotations

import io
import json
import struct
import sys

from twisted.trial import unittest

from nsqtx.lookupd import tap
from nsqtx.lookupd.node import NSQLookupd
from nsqtx.version import __version__
from tests.support import MakeServiceTestsMixin, ParseTestsMixin, TwistdTestsMixin, identity, v1_responses
from tests.test_lookupd_options import GO_DEFAULTS

#: Every flag with a non-default value, and the value it must produce.
FLAGS = [
    ("--log-level=warn", "log_level", "warn"),
    ("--tcp-address=127.0.0.1:5160", "tcp_address", "127.0.0.1:5160"),
    ("--http-address=[::1]:5161", "http_address", "[::1]:5161"),
    ("--broadcast-address=lookupd.example", "broadcast_address", "lookupd.example"),
    ("--inactive-producer-timeout=1m30s", "inactive_producer_timeout", 90.0),
    ("--tombstone-lifetime=500ms", "tombstone_lifetime", 0.5),
]


class FlagTests(ParseTestsMixin, unittest.TestCase):
    config_class = tap.LookupdConfig

    def test_defaults_are_go_s(self):
        self.assertEqual(vars(self.parse()), GO_DEFAULTS)

    def test_every_flag(self):
        self.assertEqual(len(FLAGS), len(tap.SETTINGS))
        options = self.parse(*[flag for flag, _, _ in FLAGS])
        for flag, name, value in FLAGS:
            self.assertEqual(getattr(options, name), value, flag)

    def test_bad_values(self):
        for argv, *needles in [
            (["--tombstone-lifetime=banana"], "--tombstone-lifetime"),
            (["--tombstone-lifetime=45"], "--tombstone-lifetime"),
            (["--inactive-producer-timeout=-1s"], "--inactive-producer-timeout"),
            (["--tcp-address=nowhere"], "--tcp-address"),
            (["--http-address=127.0.0.1:99999"], "--http-address"),
            (["--log-level=loud"], "--log-level"),
            (["--bogus"], "bogus"),
            (["--data-path=/tmp"], "data-path"),
            (["--tcp-address"], "tcp-address"),
            (["extra"],),
        ]:
            self.assertStartupError(argv, *needles)

    def test_version(self):
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        e = self.assertRaises(SystemExit, self.parse, "--tombstone-lifetime=banana", "--version")
        self.assertEqual(e.code, 0)
        self.assertEqual(out.getvalue(), "nsqtx-lookupd v%s (nsqlookupd 1.3.0 compatible)\n" % __version__)

    def test_help_shows_go_s_flags_and_defaults(self):
        text = str(tap.LookupdConfig())
        for flag in ["--tcp-address", "--http-address", "--broadcast-address", "--inactive-producer-timeout",
                     "--tombstone-lifetime", "--log-level", "--config", "--version"]:
            self.assertIn(flag, text)
        for default in ["0.0.0.0:4160", "0.0.0.0:4161", "5m0s", "45s"]:
            self.assertIn(default, text)


class ConfigFileTests(ParseTestsMixin, unittest.TestCase):
    config_class = tap.LookupdConfig

    def test_values_and_precedence(self):
        path = self.write_config('tcp_address = "127.0.0.1:5160"\nlog_level = "debug"\n'
                                 'inactive_producer_timeout = "10m"\ntombstone_lifetime = 1500\n'
                                 'broadcast_address = "from-file"\n')
        options = self.parse("--config", path, "--broadcast-address=from-flag")
        self.assertEqual((options.tcp_address, options.log_level, options.inactive_producer_timeout,
                          options.tombstone_lifetime, options.broadcast_address),
                         ("127.0.0.1:5160", "debug", 600.0, 1.5, "from-flag"))
        self.assertEqual(options.http_address, GO_DEFAULTS["http_address"])

    def test_go_s_other_keys_are_ignored_with_a_warning(self):
        path = self.write_config('log_prefix = "[lookupd] "\ntombstone_lifetime = "5s"\n')
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        self.assertEqual(self.parse("--config", path).tombstone_lifetime, 5.0)
        self.assertEqual(stderr.getvalue(),
                         "nsqtx-lookupd: config file %s: ignoring unknown key 'log_prefix'\n" % (path,))

    def test_bad_values(self):
        for line, needle in [('tombstone_lifetime = "banana"', "tombstone_lifetime"),
                             ("tcp_address = 4160", "tcp_address"), ('log_level = "loud"', "log_level"),
                             ("tcp_address = = 1", "TOML")]:
            path = self.write_config(line + "\n")
            self.assertStartupError(["--config", path], needle, path)

    def test_file_values_are_validated(self):
        path = self.write_config('tombstone_lifetime = "-1s"\n')
        self.assertStartupError(["--config", path], "--tombstone-lifetime must not be negative")


class MakeServiceTests(MakeServiceTestsMixin, unittest.TestCase):
    tap = tap
    server_class = NSQLookupd
    tac = "nsqlookupd.tac"


class TwistdTests(TwistdTestsMixin, unittest.TestCase):
    program = "nsqtx-lookupd"
    bad_flag = ("--tombstone-lifetime=banana", "tombstone-lifetime", "banana")

    def exchange(self, client) -> None:
        """A node identified and registered: the server has accepted and is serving this client."""
        body = json.dumps(identity()).encode()
        client.sendall(b"  V1IDENTIFY\n" + struct.pack(">l", len(body)) + body + b"REGISTER t\n")
        data = b""
        # the reply's size and body, then "OK"'s
        while len(data) < 4 or len(data) < 4 + struct.unpack_from(">l", data)[0] + 6:
            chunk = client.recv(1000)
            self.assertTrue(chunk, "closed after %r" % (data,))
            data += chunk
        reply, ok = v1_responses(data)
        self.assertEqual((json.loads(reply)["version"], ok), ("1.3.0", b"OK"))
