"""Go's time.ParseDuration syntax, which every nsqd duration flag and config value uses."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from nsqtx.durations import format_duration, parse_duration


class ParseDurationTests(unittest.TestCase):
    def test_units(self):
        for text, seconds in [
            ("1h", 3600.0),
            ("1m", 60.0),
            ("60s", 60.0),
            ("250ms", 0.25),
            ("5us", 5e-6),
            ("5\u00b5s", 5e-6),
            ("5\u03bcs", 5e-6),
            ("100ns", 1e-7),
        ]:
            self.assertAlmostEqual(parse_duration(text), seconds, places=12, msg=text)

    def test_compound(self):
        self.assertEqual(parse_duration("1m30s"), 90.0)
        self.assertEqual(parse_duration("1h2m3s"), 3723.0)
        self.assertAlmostEqual(parse_duration("1s500ms"), 1.5)

    def test_fractions(self):
        self.assertEqual(parse_duration("1.5h"), 5400.0)
        self.assertEqual(parse_duration(".5s"), 0.5)
        self.assertEqual(parse_duration("1.s"), 1.0)

    def test_sign(self):
        self.assertEqual(parse_duration("-1m"), -60.0)
        self.assertEqual(parse_duration("+2s"), 2.0)

    def test_bare_zero(self):
        """Go allows "0" without a unit, and only that number."""
        self.assertEqual(parse_duration("0"), 0.0)
        self.assertEqual(parse_duration("-0"), 0.0)

    def test_errors(self):
        for text in ["", "-", "+", "60", "1.5", "s", "ms", ".s", "banana", "1x", "1s2",
                     "1d", "--1s", "1.5.5s", "1 s", "s1"]:
            self.assertRaises(ValueError, parse_duration, text)

    def test_error_names_the_input(self):
        e = self.assertRaises(ValueError, parse_duration, "banana")
        self.assertIn("banana", str(e))


class FormatDurationTests(unittest.TestCase):
    def test_like_go_duration_string(self):
        for seconds, text in [
            (0.0, "0s"),
            (60.0, "1m0s"),
            (90.0, "1m30s"),
            (3600.0, "1h0m0s"),
            (1.5, "1.5s"),
            (0.25, "250ms"),
            (0.025, "25ms"),
            (2e-6, "2\u00b5s"),
            (5e-9, "5ns"),
            (-90.0, "-1m30s"),
        ]:
            self.assertEqual(format_duration(seconds), text)

    @given(st.integers(min_value=-10**9, max_value=10**9))
    def test_round_trip_milliseconds(self, ms):
        self.assertAlmostEqual(parse_duration(format_duration(ms / 1000.0)), ms / 1000.0, places=9)
