"""JSON encoded as Go's encoding/json does."""
from __future__ import annotations

from twisted.trial.unittest import TestCase

from nsqtx.http_responses import encode_json


class EncodeJSONTests(TestCase):
    def test_encode_json_is_compact_utf8(self):
        self.assertEqual(encode_json({"a": ["é", None, True]}), '{"a":["é",null,true]}'.encode())

    def test_characters_go_escapes_are_escaped(self):
        self.assertEqual(encode_json({"<&>": "\u2028\u2029"}), b'{"\\u003c\\u0026\\u003e":"\\u2028\\u2029"}')
