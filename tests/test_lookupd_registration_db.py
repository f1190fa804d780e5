"""nsqtx.lookupd.registration_db against Go nsqlookupd 1.3's registration_db.go (and its tests)."""
from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from nsqtx.lookupd.registration_db import (CLIENT, ZERO_TIME_NS, PeerInfo, Producer, Registration, RegistrationDB,
                                           channel_registration, topic_registration)


def peer(id: str, **fields) -> PeerInfo:
    fields.setdefault("broadcast_address", "host-" + id)
    fields.setdefault("tcp_port", 4150)
    fields.setdefault("http_port", 4151)
    fields.setdefault("version", "1.3.0")
    return PeerInfo(id, remote_address=id, **fields)


class DBCase(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000.0)
        self.db = RegistrationDB(self.clock)


class RegistrationTests(DBCase):
    def test_add_producer_once_per_node(self):
        """A second record of the same node is refused: the first (and its tombstone) stays."""
        info = peer("a:1")
        first = Producer(info)
        self.assertTrue(self.db.add_producer(topic_registration("t"), first))
        self.assertFalse(self.db.add_producer(topic_registration("t"), Producer(info)))
        self.assertEqual(self.db.find_producers("topic", "t", ""), [first])

    def test_remove_producer_says_whether_and_how_many_are_left(self):
        t = topic_registration("t")
        self.db.add_producer(t, Producer(peer("a:1")))
        self.db.add_producer(t, Producer(peer("b:1")))
        self.assertEqual(self.db.remove_producer(t, "a:1"), (True, 1))
        self.assertEqual(self.db.remove_producer(t, "a:1"), (False, 1))
        self.assertEqual(self.db.remove_producer(topic_registration("other"), "a:1"), (False, 0))

    def test_a_registration_outlives_its_producers(self):
        t = topic_registration("t")
        self.db.add_producer(t, Producer(peer("a:1")))
        self.db.remove_producer(t, "a:1")
        self.assertEqual(self.db.find_registrations("topic", "t", ""), [t])
        self.assertEqual(self.db.find_producers("topic", "t", ""), [])
        self.db.remove_registration(t)
        self.assertEqual(self.db.find_registrations("topic", "t", ""), [])

    def test_add_registration_keeps_existing_producers(self):
        t = topic_registration("t")
        producer = Producer(peer("a:1"))
        self.db.add_producer(t, producer)
        self.db.add_registration(t)
        self.assertEqual(self.db.find_producers("topic", "t", ""), [producer])

    def test_removing_what_is_not_there_is_no_error(self):
        self.db.remove_registration(topic_registration("nope"))
        self.assertEqual(self.db.registrations, {})


class FindTests(DBCase):
    """Go's TestRegistrationDB: exact finds, and "*" for the key or subkey."""

    def setUp(self):
        DBCase.setUp(self)
        self.a, self.b = peer("a:1"), peer("b:1")
        db = self.db
        for info, topic, channel in [(self.a, "t1", "c1"), (self.a, "t1", "c2"), (self.b, "t1", "c1"),
                                     (self.b, "t2", "c1")]:
            db.add_producer(channel_registration(topic, channel), Producer(info))
            db.add_producer(topic_registration(topic), Producer(info))
            db.add_producer(CLIENT, Producer(info))

    def ids(self, producers):
        return [p.peer_info.id for p in producers]

    def test_exact(self):
        self.assertEqual(self.db.find_registrations("channel", "t1", "c2"), [channel_registration("t1", "c2")])
        self.assertEqual(self.db.find_registrations("channel", "t1", "c3"), [])
        self.assertEqual(self.ids(self.db.find_producers("channel", "t1", "c1")), ["a:1", "b:1"])
        self.assertEqual(self.db.find_producers("channel", "t9", "c1"), [])

    def test_wildcards(self):
        db = self.db
        self.assertEqual([r.subkey for r in db.find_registrations("channel", "t1", "*")], ["c1", "c2"])
        self.assertEqual([r.key for r in db.find_registrations("topic", "*", "")], ["t1", "t2"])
        self.assertEqual([(r.key, r.subkey) for r in db.find_registrations("channel", "*", "c1")],
                         [("t1", "c1"), ("t2", "c1")])
        self.assertEqual(len(db.find_registrations("channel", "*", "*")), 3)
        # a category never matches another's registrations
        self.assertEqual(db.find_registrations("topic", "*", "*"), [topic_registration("t1"), topic_registration("t2")])

    def test_wildcard_finds_each_node_once(self):
        self.assertEqual(self.ids(self.db.find_producers("channel", "*", "*")), ["a:1", "b:1"])
        self.assertEqual(self.ids(self.db.find_producers("channel", "t2", "*")), ["b:1"])

    def test_lookup_registrations_of_a_node(self):
        self.assertEqual(self.db.lookup_registrations("a:1"), [
            channel_registration("t1", "c1"), topic_registration("t1"), CLIENT, channel_registration("t1", "c2")])
        self.assertEqual(self.db.lookup_registrations("nobody"), [])

    def test_producer_record(self):
        record = self.db.producer(topic_registration("t2"), "b:1")
        self.assertIs(record.peer_info, self.b)
        self.assertIsNone(self.db.producer(topic_registration("t2"), "a:1"))
        self.assertIsNone(self.db.producer(topic_registration("t9"), "a:1"))


class TimeTests(DBCase):
    def test_touch_sets_last_update_in_nanoseconds(self):
        info = peer("a:1")
        self.db.touch(info)
        self.assertEqual(info.last_update, 1000 * 10 ** 9)

    def test_inactive_producers_are_filtered_out(self):
        """Go's FilterByActive: more than the timeout since the last update is inactive."""
        fresh, stale = Producer(peer("a:1")), Producer(peer("b:1"))
        self.db.touch(stale.peer_info)
        self.clock.advance(10)
        self.db.touch(fresh.peer_info)
        self.assertEqual(self.db.active([fresh, stale], 10.0, 0), [fresh, stale])
        self.clock.advance(0.001)
        self.assertEqual(self.db.active([fresh, stale], 10.0, 0), [fresh])

    def test_tombstones_last_their_lifetime(self):
        producer = Producer(peer("a:1"))
        self.db.touch(producer.peer_info)
        self.assertEqual((producer.tombstoned, producer.tombstoned_at), (False, ZERO_TIME_NS))
        self.db.tombstone(producer)
        self.assertEqual((producer.tombstoned, producer.tombstoned_at), (True, 1000 * 10 ** 9))
        self.assertTrue(self.db.is_tombstoned(producer, 45.0))
        self.assertEqual(self.db.active([producer], 300.0, 45.0), [])
        # a lifetime of 0 ignores tombstones (/nodes lists tombstoned nodes)
        self.assertEqual(self.db.active([producer], 300.0, 0), [producer])
        self.clock.advance(45)
        self.assertFalse(self.db.is_tombstoned(producer, 45.0))
        self.assertTrue(producer.tombstoned)
        self.assertEqual(self.db.active([producer], 300.0, 45.0), [producer])

    def test_tombstone_is_per_registration(self):
        """A node's records share its PeerInfo (and so its activity), not their tombstones."""
        info = peer("a:1")
        in_t1, in_t2 = Producer(info), Producer(info)
        self.db.tombstone(in_t1)
        self.assertTrue(self.db.is_tombstoned(in_t1, 45.0))
        self.assertFalse(self.db.is_tombstoned(in_t2, 45.0))


class PeerInfoTests(TestCase):
    def test_document_is_go_s_peer_info_json(self):
        info = PeerInfo("1.2.3.4:5", remote_address="1.2.3.4:5", hostname="h", broadcast_address="b", tcp_port=1,
                        http_port=2, version="1.3.0", last_update=7)
        self.assertEqual(list(info.document().items()), [
            ("remote_address", "1.2.3.4:5"), ("hostname", "h"), ("broadcast_address", "b"), ("tcp_port", 1),
            ("http_port", 2), ("version", "1.3.0")])

    def test_registration_is_a_triple(self):
        self.assertEqual(CLIENT, Registration("client", "", ""))
        self.assertEqual(topic_registration("t"), ("topic", "t", ""))
        self.assertEqual(channel_registration("t", "c"), ("channel", "t", "c"))
