"""Topics: fan-out to channels, holding messages while a topic has no channel or is paused, deferred
messages held, ephemeral topics going away with their last channel."""
from __future__ import annotations

from tests.support import Conn, NodeCase, mpub_body


class TopicTests(NodeCase):
    def test_paused_topic_holds_messages_for_all_channels(self):
        a = self.consumer(channel=b"a", port=5001)
        b = self.consumer(channel=b"b", port=5002)
        topic = self.node.topics["t"]
        topic.pause()
        self.publish(b"1")
        self.assertEqual((a.messages(), b.messages(), topic.depth()), ([], [], 1))
        topic.unpause()
        self.clock.advance(0)
        self.assertEqual([m[2] for m in a.messages()], [b"1"])
        self.assertEqual([m[2] for m in b.messages()], [b"1"])
        self.assertEqual(topic.depth(), 0)

    def test_ephemeral_topic_deleted_with_its_last_channel(self):
        conn = self.consumer(topic=b"t#ephemeral", channel=b"c#ephemeral")
        self.assertIn("t#ephemeral", self.node.topics)
        conn.lose()
        self.assertNotIn("t#ephemeral", self.node.topics)

    def test_topic_with_no_channel_holds_until_first_channel_only(self):
        self.publish(b"1", b"2")
        first = self.node.get_topic("t").get_channel("first")
        self.clock.advance(0)
        second = self.node.get_topic("t").get_channel("second")
        self.clock.advance(0)
        self.assertEqual((first.depth(), second.depth()), (2, 0))

    def test_held_deferred_messages_are_deferred_from_when_a_channel_appears(self):
        conn = Conn(self.node, 9000).magic()
        conn.command(b"DPUB t 1000", b"later")
        conn.frames()
        self.clock.advance(5)
        channel = self.node.get_topic("t").get_channel("c")
        self.clock.advance(0)
        self.assertEqual((channel.depth(), len(channel.deferred)), (0, 1))
        self.clock.advance(1)
        self.node.scan_queues()
        self.assertEqual((channel.depth(), len(channel.deferred)), (1, 0))

    def test_deferred_messages_held_by_a_topic_without_channels_respect_the_memory_bound(self):
        """A topic without channels keeps a DPUB in memory only while it holds fewer than
        --mem-queue-size messages of any kind; beyond that it goes to disk (without its delay)."""
        self.node.options.mem_queue_size = 3
        conn = Conn(self.node, 9000).magic()
        conn.command(b"MPUB t", mpub_body([b"1"]))
        for payload in (b"d1", b"d2", b"d3", b"d4"):
            conn.command(b"DPUB t 1000", payload)
        self.assertEqual(len(conn.frames()), 5)
        topic = self.node.topics["t"]
        self.assertEqual((len(topic.queue.memory), len(topic.held_deferred), topic.backend_depth()), (1, 2, 2))
        self.assertEqual(topic.depth(), 5)
