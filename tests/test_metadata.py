"""nsqd.dat: the topics, channels and pause states a restart brings back, in Go nsqd's layout."""
from __future__ import annotations

import json
import os

from twisted.trial.unittest import TestCase

from nsqtx import metadata
from tests.support import data_dir, make_node


class MetadataFileTests(TestCase):
    def test_round_trip_excludes_ephemeral(self):
        path = data_dir(self)
        node, _ = make_node(self, data_path=path)
        topic = node.get_topic("t")
        topic.get_channel("c").pause()
        topic.get_channel("e#ephemeral")
        node.get_topic("gone#ephemeral")
        topic.pause()
        with open(os.path.join(path, "nsqd.dat")) as f:
            saved = json.load(f)
        self.assertEqual(saved, {"topics": [{"name": "t", "paused": True,
                                             "channels": [{"name": "c", "paused": True}]}],
                                 "version": "1.3.0"})
        self.assertEqual(metadata.read(path), [("t", True, [("c", True)])])

    def test_reads_go_nsqds_file(self):
        path = data_dir(self)
        with open(os.path.join(path, "nsqd.dat"), "w") as f:
            f.write('{"topics":[{"channels":null,"name":"a","paused":false},'
                    '{"channels":[{"name":"x","paused":true}],"name":"b","paused":false}],"version":"1.2.1"}')
        self.assertEqual(metadata.read(path), [("a", False, []), ("b", False, [("x", True)])])

    def test_missing_file_is_a_fresh_start(self):
        self.assertEqual(metadata.read(data_dir(self)), [])

    def test_unparseable_file_is_an_error(self):
        path = data_dir(self)
        with open(os.path.join(path, "nsqd.dat"), "w") as f:
            f.write('{"topics": [{"nam')
        self.assertRaises(metadata.MetadataError, metadata.read, path)

    def test_write_leaves_no_temporary_files(self):
        path = data_dir(self)
        metadata.write(path, {"topics": [], "version": "1.3.0"})
        self.assertEqual(os.listdir(path), ["nsqd.dat"])
