"""The in-flight table against a plain model: slots are reused, heap entries go stale, answers come in
and out of order, clients leave, and still every message is found by its owner alone and expires
exactly when its own deadline has come."""
from __future__ import annotations

from collections import deque
from itertools import product

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from nsqtx.batch import Batch
from nsqtx.errors import QueueError
from nsqtx.in_flight import _KEEP_SLOTS, InFlight
from nsqtx.int_deque import IntDeque
from tests.support import attempts, from_memory, in_memory, message_id

CLIENTS = ("a", "b")
#: what holds a client's deliveries: CPython's choice and PyPy's; both are tested on both
FIFOS = st.sampled_from([deque, IntDeque])
#: every (deque type, whether IDs are kept in columns) pair: CPython's choices, PyPy's and the mixes
FLAVOURS = list(product((deque, IntDeque), (False, True)))

operations = st.lists(st.one_of(
    st.tuples(st.just("deliver"), st.integers(1, 70), st.sampled_from(CLIENTS), st.integers(1, 30),
              st.integers(1, 3000)),
    st.tuples(st.just("finish"), st.integers(0, 200), st.sampled_from(CLIENTS), st.booleans()),
    st.tuples(st.just("finish_oldest"), st.integers(1, 40), st.sampled_from(CLIENTS)),
    st.tuples(st.just("leave"), st.sampled_from(CLIENTS)),
    st.tuples(st.just("requeue"), st.integers(0, 200), st.sampled_from(CLIENTS), st.booleans()),
    st.tuples(st.just("touch"), st.integers(0, 200), st.sampled_from(CLIENTS), st.booleans(), st.integers(1, 30)),
    st.tuples(st.just("advance"), st.integers(0, 20)),
), max_size=80)


#: a test message's record: length, frame type, timestamp, attempts, ID, b"body"
RECORD_SIZE = 4 + 4 + 8 + 2 + 16 + 4


def deliver(table, ids, now, deadline):
    """Deliver one new message per ID to client "a", in one run."""
    records = Batch.of(in_memory(7, 0, msg_id, b"body") for msg_id in ids).records
    table.add_run(records, 0, len(ids), len(records), "a", now, deadline)


class InFlightTests(TestCase):
    @settings(max_examples=300, deadline=None)
    @given(FIFOS, st.sampled_from([0, 1, 4, 1000]), st.booleans(), operations)
    def test_matches_a_model(self, fifo, scan_credit, id_columns, ops):
        """scan_credit 0 indexes every deque at each ID found nowhere, 1000 never does"""
        table = InFlight(fifo, scan_credit, id_columns)
        model = {}  # id -> (client, deadline, delivered_at, attempts), in delivery order
        now = 0.0
        serial = 0
        max_timeout = 40

        for op in ops:
            kind = op[0]
            if kind == "deliver":
                _, count, client, timeout, max_bytes = op
                ids = [b"%016d" % (serial + i) for i in range(count)]
                serial += count
                records = Batch.of(in_memory(7, 2, msg_id, b"body") for msg_id in ids).records
                deadline = now + timeout
                pos = 0
                left = count
                while left:
                    pos, recorded = table.add_run(records, pos, left, max_bytes, client, now, deadline)
                    # runs stop at the first record that reaches max_bytes
                    self.assertEqual(recorded, min(left, -(-max_bytes // RECORD_SIZE)))
                    left -= recorded
                for msg_id in ids:
                    model[msg_id] = (client, deadline, now, 3)
                self.assertEqual(pos, len(records))
            elif kind == "finish_oldest":
                # as most consumers answer: in the order of delivery
                _, count, client = op
                for msg_id in [i for i, entry in model.items() if entry[0] == client][:count]:
                    table.finish(b"FIN " + msg_id + b"\n", client, 4)
                    del model[msg_id]
            elif kind == "leave":
                table.forget(op[1])
            elif kind == "advance":
                now += op[1]
                expired = sorted((client, message_id(data), attempts(data))
                                 for client, data in ((c, from_memory(d)) for c, d in table.expire(now)))
                due = sorted((c, i, a) for i, (c, d, _, a) in model.items() if d <= now)
                self.assertEqual(expired, due)
                for _, msg_id, _ in due:
                    del model[msg_id]
            else:
                _, n, client, known = op[:4]
                # mostly a message in flight (to either client), else any ID, in flight or not
                msg_id = list(model)[n % len(model)] if known and model else b"%016d" % n
                owned = model.get(msg_id, (None,))[0] == client
                if kind == "finish":
                    # the ID where a FIN line has it, as the protocol passes it
                    action = lambda: table.finish(b"FIN " + msg_id + b"\n", client, 4)  # noqa: E731
                elif kind == "requeue":
                    action = lambda: table.requeue(msg_id, client)  # noqa: E731
                else:
                    timeout = op[4]
                    action = lambda: table.touch(msg_id, client, now, timeout, max_timeout)  # noqa: E731
                if not owned:
                    error = self.assertRaises(QueueError, action)
                    self.assertEqual(str(error),
                                     "client does not own message" if msg_id in model else "ID not in flight")
                    continue
                result = action()
                if kind == "touch":
                    c, _, delivered_at, a = model[msg_id]
                    model[msg_id] = (c, min(now + timeout, delivered_at + max_timeout), delivered_at, a)
                else:
                    if kind == "requeue":
                        result = from_memory(result)
                        self.assertEqual((message_id(result), attempts(result)), (msg_id, 3))
                    del model[msg_id]
            self.assertEqual(len(table), len(model))
        self.assertEqual(sorted(message_id(from_memory(data)) for data in table.take_all()), sorted(model))
        self.assertEqual(len(table), 0)

    def test_an_answer_is_matched_on_all_16_bytes_of_its_id(self):
        """IDs alike in either half are told apart (the columns hold each half in an integer)."""
        for fifo, id_columns in FLAVOURS:
            for ids in ([b"1234567800000000", b"8765432100000000"], [b"0000000012345678", b"0000000087654321"]):
                table = InFlight(fifo, id_columns=id_columns)
                deliver(table, ids, 0.0, 60.0)
                table.finish(ids[1], "a")
                self.assertEqual([message_id(from_memory(data)) for data in table.take_all()], [ids[0]])

    def test_answers_in_delivery_order_are_matched_at_the_front_without_a_search(self):
        """The fast path, for IDs given alone and inside a FIN line: a miss there would still find
        the message, by searching the client's deque."""
        for fifo, id_columns in FLAVOURS:
            table = InFlight(fifo, id_columns=id_columns)
            searches = []
            table._position = lambda sent, msg_id: searches.append(msg_id)
            ids = [b"%016d" % i for i in range(6)]
            deliver(table, ids, 0.0, 60.0)
            for msg_id in ids[:3]:
                table.finish(msg_id, "a")
            for msg_id in ids[3:]:
                table.finish(b"FIN " + msg_id + b"\n", "a", 4)
            self.assertEqual((searches, len(table)), ([], 0))

    def test_no_reference_to_a_client_is_kept_once_nothing_is_in_flight_to_it(self):
        """Whether its deliveries were answered in place, found in the index (passed over, or the
        client left) or expired from it."""
        for fifo, id_columns in FLAVOURS:
            table = InFlight(fifo, id_columns=id_columns)
            owner = object()
            ids = [b"%016d" % i for i in range(6)]
            records = Batch.of(in_memory(7, 0, msg_id, b"body") for msg_id in ids).records
            table.add_run(records, 0, len(ids), len(records), owner, 0.0, 60.0)
            table.finish(ids[0], owner)
            table.finish(ids[2], owner)  # passes over ids[1], which is indexed
            table.touch(ids[3], owner, 0.0, 10.0, 100.0)
            table.finish(ids[1], owner)
            table.forget(owner)
            table.finish(ids[4], owner)
            self.assertEqual([client for client, _ in table.expire(61.0)], [owner, owner])
            self.assertEqual(len(table), 0)
            self.assertNotIn(owner, table.client)

    def test_an_answer_for_a_finished_message_does_not_match_the_next_one_in_its_slot(self):
        for fifo, id_columns in FLAVOURS:
            table = InFlight(fifo, id_columns=id_columns)
            first, second = b"%016d" % 1, b"%016d" % 2
            deliver(table, [first], 0.0, 60.0)
            table.finish(first, "a")
            deliver(table, [second], 0.0, 60.0)
            self.assertEqual(len(table.records), 1)
            self.assertEqual(str(self.assertRaises(QueueError, table.finish, first, "a")), "ID not in flight")
            table.finish(second, "a")
            self.assertEqual(len(table), 0)

    def test_slots_of_expired_messages_are_reused(self):
        """A consumer that never answers gets its messages taken back at each timeout; the table
        reuses their slots rather than growing."""
        for fifo, id_columns in FLAVOURS:
            table = InFlight(fifo, id_columns=id_columns)
            now = 0.0
            for round_ in range(50):
                deliver(table, [b"%016d" % (round_ * 10 + i) for i in range(10)], now, now + 5)
                now += 6
                self.assertEqual(len(table.expire(now)), 10)
            self.assertEqual((len(table), len(table.records)), (0, 10))

    def test_messages_with_an_earlier_deadline_than_the_last_expire_on_time(self):
        """A client's messages delivered with an earlier deadline than those before them (the wall
        clock went back) expire at their own deadline, not behind the others; the slots of all of
        them are reused."""
        for fifo, id_columns in FLAVOURS:
            table = InFlight(fifo, id_columns=id_columns)
            serial = iter(range(1000))

            def deliver_new(count, timeout):
                ids = [b"%016d" % next(serial) for _ in range(count)]
                deliver(table, ids, 0.0, timeout)
                return ids

            [first] = deliver_new(1, 30.0)
            deliver_new(4, 5.0)
            self.assertEqual(len(table.expire(6.0)), 4)
            table.finish(first, "a")
            for count in (4, 4, 8):
                for msg_id in deliver_new(count, 30.0):
                    table.finish(msg_id, "a")
            self.assertEqual((len(table), len(table.records)), (0, 8))

    def test_an_id_found_nowhere_is_looked_for_in_place_while_deliveries_pay_for_it(self):
        """A late FIN (its message timed out) leaves the deliveries in their deques, so that later
        answers stay on the fast path; once unknown IDs have used up what the deliveries paid for,
        every deque is moved to the index, and the next ones look in place at what came since."""
        def fails(msg_id, client):
            return str(self.assertRaises(QueueError, table.finish, msg_id, client))

        for fifo, id_columns in FLAVOURS:
            table = InFlight(fifo, 4, id_columns)
            ids = [b"%016d" % i for i in range(100)]
            deliver(table, ids, 0.0, 60.0)
            self.assertEqual(fails(ids[50], "b"), "client does not own message")
            for unknown in range(3):
                self.assertEqual(fails(b"%016d" % (1000 + unknown), "b"), "ID not in flight")
            for msg_id in ids[:10]:
                table.finish(msg_id, "a")
            self.assertEqual((table._index, table._heap), ({}, []))
            self.assertEqual(fails(b"%016d" % 2000, "a"), "ID not in flight")
            self.assertEqual(len(table._index), 90)
            deliver(table, [b"%016d" % 3000], 0.0, 60.0)
            self.assertEqual(fails(b"%016d" % 2001, "a"), "ID not in flight")
            self.assertEqual(len(table._index), 90)
            for msg_id in ids[10:] + [b"%016d" % 3000]:
                table.finish(msg_id, "a")
            self.assertEqual(len(table), 0)

    def test_an_empty_table_lets_go_of_what_a_burst_grew(self):
        for fifo, id_columns in FLAVOURS:
            table = InFlight(fifo, id_columns=id_columns)
            burst = [b"%016d" % i for i in range(_KEEP_SLOTS + 1)]
            deliver(table, burst, 0.0, 60.0)
            for msg_id in burst[:-1]:
                table.finish(msg_id, "a")
            table.expire(1.0)
            self.assertEqual(len(table.records), _KEEP_SLOTS + 1)
            table.finish(burst[-1], "a")
            table.expire(1.0)
            self.assertEqual((len(table.records), table._free, table._sent), (0, [], {}))
            small = [b"%016d" % i for i in range(10)]
            deliver(table, small, 1.0, 60.0)
            for msg_id in small:
                table.finish(msg_id, "a")
            table.expire(2.0)
            self.assertEqual(len(table.records), 10)
