"""Queries parsed as strictly as Go's url.ParseQuery."""
from __future__ import annotations

from twisted.trial.unittest import TestCase

from nsqtx.http_params import parse_query
from nsqtx.http_responses import HTTPError


class ParseQueryTests(TestCase):
    def test_parse_query_is_go_s(self):
        self.assertEqual(parse_query(b"a=1&b=x+y&a=2&&c&d=%2B"),
                         {"a": ["1", "2"], "b": ["x y"], "c": [""], "d": ["+"]})
        for bad in (b"a=%", b"a=%g1", b"a;b", b"%zz=1"):
            self.assertRaises(HTTPError, parse_query, bad)
