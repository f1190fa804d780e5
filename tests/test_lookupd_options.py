"""nsqtx.lookupd.options: Go nsqlookupd 1.3's defaults (NewOptions) and what validate() refuses."""
from __future__ import annotations

import socket

from twisted.trial.unittest import TestCase

from nsqtx.lookupd.options import LookupdOptions

#: nsqlookupd 1.3's NewOptions(), durations in seconds
GO_DEFAULTS = {
    "log_level": "info",
    "tcp_address": "0.0.0.0:4160",
    "http_address": "0.0.0.0:4161",
    "broadcast_address": socket.gethostname(),
    "inactive_producer_timeout": 300.0,
    "tombstone_lifetime": 45.0,
}


class LookupdOptionsTests(TestCase):
    def test_defaults_are_go_s(self):
        self.assertEqual(vars(LookupdOptions()), GO_DEFAULTS)

    def test_overrides(self):
        options = LookupdOptions(tcp_address="127.0.0.1:0", tombstone_lifetime=0.0)
        self.assertEqual((options.tcp_address, options.tombstone_lifetime), ("127.0.0.1:0", 0.0))
        options.validate()

    def test_unknown_option(self):
        error = self.assertRaises(TypeError, LookupdOptions, data_path="/tmp")
        self.assertIn("data_path", str(error))

    def test_validate_names_the_flag(self):
        for overrides, flag in [
            ({"tcp_address": "nowhere"}, "--tcp-address"),
            ({"http_address": "127.0.0.1:70000"}, "--http-address"),
            ({"log_level": "loud"}, "--log-level"),
            ({"inactive_producer_timeout": -1.0}, "--inactive-producer-timeout"),
            ({"tombstone_lifetime": -0.5}, "--tombstone-lifetime"),
        ]:
            error = self.assertRaises(ValueError, LookupdOptions(**overrides).validate)
            self.assertIn(flag, str(error))

    def test_zero_durations_are_allowed(self):
        """0 is meaningful: no tombstone holds, or a producer is inactive once a moment has passed."""
        LookupdOptions(inactive_producer_timeout=0.0, tombstone_lifetime=0.0).validate()
