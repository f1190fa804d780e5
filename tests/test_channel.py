"""Channels: delivery in slices and shares, pause, empty, ephemeral cleanup, spilling to disk, heap hygiene."""
from __future__ import annotations

import gc
import json
import struct
import weakref

from nsqtx import channel as channel_module
from nsqtx.channel import _PUMP_SLICE
from nsqtx.errors import QueueError
from nsqtx.in_flight import _GROWTH, _SLACK
from nsqtx import backend_queue
from nsqtx.message import new_batch, to_disk
from tests.support import MESSAGE, Conn, NodeCase, attempts, body, decode, mpub_body, queued


class ChannelTests(NodeCase):
    def test_paused_channel_holds_messages_until_unpaused(self):
        conn = self.consumer()
        channel = self.node.topics["t"].channels["c"]
        channel.pause()
        self.publish(b"1", b"2")
        self.assertEqual(conn.messages(), [])
        self.assertEqual(channel.depth(), 2)
        channel.unpause()
        self.assertEqual([m[2] for m in conn.messages()], [b"1", b"2"])

    def test_pause_flushes_buffered_messages(self):
        conn = Conn(self.node).magic()
        conn.subscribe(rdy=10)
        conn.frames()
        self.publish(b"1")
        self.assertEqual(conn.messages(), [])
        self.node.topics["t"].channels["c"].pause()
        self.assertEqual(len(conn.messages()), 1)

    def test_empty_drops_queued_in_flight_and_deferred(self):
        conn = self.consumer(rdy=1)
        self.publish(b"1", b"2")
        [(_, msg_id, _)] = conn.messages()
        channel = self.node.topics["t"].channels["c"]
        channel.requeue(conn.client, msg_id, 10.0)
        channel.empty()
        self.assertEqual((channel.depth(), len(channel.in_flight), len(channel.deferred)), (0, 0, 0))
        self.assertEqual(conn.client.in_flight_count, 0)
        self.clock.advance(20)
        self.node.scan_queues()
        self.assertEqual(conn.messages(), [])

    def test_ephemeral_channel_deleted_when_last_consumer_leaves(self):
        first = self.consumer(channel=b"c#ephemeral", port=5001)
        second = self.consumer(channel=b"c#ephemeral", port=5002)
        topic = self.node.topics["t"]
        first.lose()
        self.assertIn("c#ephemeral", topic.channels)
        second.lose()
        self.assertNotIn("c#ephemeral", topic.channels)
        self.assertIn("t", self.node.topics)

    def test_durable_channel_survives_its_consumers(self):
        conn = self.consumer()
        conn.lose()
        self.assertIn("c", self.node.topics["t"].channels)

    def test_ephemeral_channel_drops_and_counts_beyond_bound(self):
        self.node.options.mem_queue_size = 2
        channel = self.node.get_topic("t").get_channel("c#ephemeral")
        self.publish(b"1", b"2", b"3")
        self.assertEqual((channel.depth(), channel.dropped_count, channel.message_count), (2, 1, 3))

    def test_durable_channel_spills_beyond_bound(self):
        self.node.options.mem_queue_size = 2
        channel = self.node.get_topic("t").get_channel("c")
        self.publish(b"1", b"2", b"3")
        self.assertEqual((len(channel.queue.memory), channel.backend_depth()), (2, 1))

    def test_a_publish_that_several_channels_spill_is_converted_for_disk_once(self):
        self.node.options.mem_queue_size = 0
        topic = self.node.get_topic("t")
        for name in ("a", "b", "c"):
            topic.get_channel(name)
        converted = []

        def counting_to_disk(batch):
            converted.append(batch.count)
            return to_disk(batch)

        self.patch(backend_queue, "to_disk", counting_to_disk)
        self.publish(b"1", b"2", b"3")
        self.publish(b"4")
        self.assertEqual(converted, [3, 1])
        for name in (b"a", b"b", b"c"):
            conn = Conn(self.node, 5000 + name[0]).magic()
            conn.identify(output_buffer_timeout=-1)
            conn.subscribe(b"t", name, rdy=10)
            self.assertEqual([body(data) for kind, data in conn.frames() if kind == MESSAGE],
                             [b"1", b"2", b"3", b"4"])

    def test_new_messages_queue_behind_a_disk_backlog_even_when_memory_has_room(self):
        self.node.options.mem_queue_size = 2
        channel = self.node.get_topic("t").get_channel("c")
        self.publish(b"1", b"2", b"3")
        conn = Conn(self.node).magic()
        conn.identify(output_buffer_timeout=-1)
        conn.subscribe(rdy=1)
        [(_, first_id, first)] = [decode(data) for kind, data in conn.frames() if kind == MESSAGE]
        self.assertEqual((first, len(channel.queue.memory), channel.backend_depth()), (b"1", 1, 1))
        self.publish(b"4")
        self.assertEqual((len(channel.queue.memory), channel.backend_depth()), (1, 2))
        got, msg_id = [first], first_id
        for _ in range(3):
            conn.command(b"FIN " + msg_id)
            [(_, msg_id, data)] = conn.messages()
            got.append(data)
        self.assertEqual(got, [b"1", b"2", b"3", b"4"])

    def test_deleted_channel_cannot_take_messages(self):
        channel = self.node.get_topic("t").get_channel("c")
        self.node.topics["t"].delete_channel("c")
        self.assertRaises(QueueError, channel.put, new_batch(self.node, [b"x"]))

    def test_timed_out_and_requeued_messages_are_never_dropped_by_the_bound(self):
        self.node.options.mem_queue_size = 1
        conn = self.consumer(rdy=1)
        self.publish(b"1")
        [(_, msg_id, _)] = conn.messages()
        conn.command(b"RDY 0")
        self.publish(b"2")
        channel = self.node.topics["t"].channels["c"]
        channel.requeue(conn.client, msg_id, 0)
        self.assertEqual([(attempts(m), body(m)) for m in queued(channel.queue.memory)], [(0, b"2"), (1, b"1")])

    def test_deleting_a_channel_closes_its_consumers(self):
        conn = self.consumer()
        self.assertTrue(self.node.topics["t"].delete_channel("c"))
        self.assertTrue(conn.closed)
        self.assertFalse(self.node.topics["t"].delete_channel("c"))

    def test_in_flight_heap_stays_bounded_under_many_touches(self):
        """Answers in delivery order leave nothing in the expiry heap; each TOUCH adds an entry, and
        the heap is rebuilt before the stale ones pile up."""
        conn = self.consumer(rdy=100)
        channel = self.node.topics["t"].channels["c"]
        self.publish(*[b"x"] * 100)
        ids = [m[1] for m in conn.messages()]
        self.assertEqual(channel.in_flight._heap, [])
        for _ in range(100):
            conn.send(b"".join(b"TOUCH " + i + b"\n" for i in ids))
        self.assertLessEqual(len(channel.in_flight._heap), _GROWTH * 100 + _SLACK + 1)
        conn.send(b"".join(b"FIN " + i + b"\n" for i in ids))
        self.assertEqual((len(channel.in_flight), conn.frames()), (0, []))

    def test_a_pump_delivers_a_slice_and_the_rest_in_later_reactor_turns(self):
        """A consumer with a large RDY gets a backlog a slice at a time, so that the reactor turns
        between serve everyone else (task.Clock runs the continuations of one advance together)."""
        count = 2 * _PUMP_SLICE + 100
        conn = self.consumer(rdy=2500)
        self.publish(*[b"x"] * count)
        self.assertEqual(len(conn.messages()), _PUMP_SLICE)
        self.clock.advance(0)
        self.assertEqual(len(conn.messages()), count - _PUMP_SLICE)

    def test_while_a_slice_is_pending_other_triggers_leave_delivery_to_it(self):
        conn = self.consumer(rdy=2500)
        self.publish(*[b"x"] * (3 * _PUMP_SLICE))
        ids = [msg_id for _, msg_id, _ in conn.messages()]
        conn.send(b"".join(b"FIN " + msg_id + b"\n" for msg_id in ids))
        self.publish(b"y")
        self.assertEqual(conn.messages(), [])
        self.clock.advance(0)
        self.assertEqual(len(conn.messages()), 2 * _PUMP_SLICE + 1)

    def test_deleting_a_channel_cancels_its_next_pump_slice(self):
        self.consumer(rdy=2500)
        self.publish(*[b"x"] * (_PUMP_SLICE + 1))
        channel = self.node.topics["t"].channels["c"]
        pending = [call for call in self.clock.getDelayedCalls() if call.func == channel._pump_next_slice]
        self.assertEqual(len(pending), 1)
        self.node.topics["t"].delete_channel("c")
        self.assertFalse(pending[0].active())

    def test_a_backlog_goes_to_consumers_in_whole_slices_taken_in_turn(self):
        consumers = [self.consumer(rdy=2500, port=5000 + i) for i in range(2)]
        self.publish(*[b"x"] * (2 * _PUMP_SLICE + 10))
        channel = self.node.topics["t"].channels["c"]

        def next_turn():
            """what the reactor's next turn does (task.Clock would run all the turns at once)"""
            [call] = [call for call in self.clock.getDelayedCalls() if call.func == channel._pump_next_slice]
            call.cancel()
            channel._pump_next_slice()
            return [len(c.messages()) for c in consumers]

        self.assertEqual([len(c.messages()) for c in consumers], [_PUMP_SLICE, 0])
        self.assertEqual(next_turn(), [0, _PUMP_SLICE])
        self.assertEqual(next_turn(), [5, 5])

    def test_a_share_that_ends_the_slice_leaves_nothing_in_the_output_buffer(self):
        """With output buffering on, the frames after the last full buffer of a consumer's share go
        out with the share, not a turn (or a timeout) later; a smaller burst still waits."""
        conns = [Conn(self.node, 5000 + i).magic() for i in range(2)]
        for conn in conns:
            conn.subscribe(rdy=2500)
            conn.frames()
        bodies = [b"x" * 100] * (2 * _PUMP_SLICE + 10)
        self.publish(*bodies)
        self.assertEqual([len(c.messages()) for c in conns], [_PUMP_SLICE, 0])
        self.assertEqual([c.client._wbuf for c in conns], [[], []])
        self.clock.advance(0)
        self.assertEqual([len(c.messages()) for c in conns], [0, _PUMP_SLICE])
        self.clock.advance(0)
        self.assertEqual([len(c.messages()) for c in conns], [0, 0])
        self.clock.advance(conns[0].client.output_buffer_timeout)
        self.assertEqual([len(c.messages()) for c in conns], [5, 5])

    def test_a_flush_empties_the_write_buffer_in_place(self):
        """The list is kept: a replaced one that PyPy had made old would keep its frames alive."""
        conn = Conn(self.node).magic()
        conn.subscribe(rdy=10)
        conn.frames()
        wbuf = conn.client._wbuf
        self.publish(b"1")
        self.assertEqual(len(wbuf), 1)
        self.clock.advance(conn.client.output_buffer_timeout)
        self.assertEqual(len(conn.messages()), 1)
        self.assertIs(conn.client._wbuf, wbuf)
        self.assertEqual(wbuf, [])

    def test_a_slice_from_a_backlog_goes_out_in_one_write(self):
        """Its frames fill several 16 KB output buffers, flushed while the pump hands them over and
        written together once it has (see ClientConnection.hold)."""
        conn = Conn(self.node).magic()
        conn.subscribe(rdy=2500)
        conn.frames()
        before = conn.transport.writes
        self.publish(*[b"x" * 100] * (_PUMP_SLICE + 10))
        self.assertEqual(conn.transport.writes - before, 1)
        self.assertEqual(len(conn.messages()), _PUMP_SLICE)

    def test_a_share_from_one_batch_is_sent_as_one_slice_of_it(self):
        """Its runs may take up to HOLD_LIMIT bytes, not just a 16 KB output buffer's worth."""
        conn = Conn(self.node).magic()
        conn.subscribe(rdy=2500)
        conn.frames()
        written = []
        write = conn.client._write

        def record(parts):
            written.append(len(parts))
            write(parts)

        conn.client._write = record
        self.publish(*[b"x" * 100] * 500)
        self.assertEqual((written, len(conn.messages())), ([1], 500))

    def test_frames_wait_in_the_output_buffer_as_a_view_of_their_batch_not_a_copy(self):
        conn = Conn(self.node).magic()
        conn.subscribe(rdy=10)
        conn.frames()
        self.publish(b"1", b"2", b"3")
        channel = self.node.topics["t"].channels["c"]
        [run] = conn.client._wbuf
        self.assertIsInstance(run, memoryview)
        self.assertIs(run.obj, channel.in_flight.records[0])
        self.clock.advance(conn.client.output_buffer_timeout)
        self.assertEqual([m[2] for m in conn.messages()], [b"1", b"2", b"3"])

    def test_a_pump_that_fails_does_not_leave_the_consumer_holding_its_flushes(self):
        conn = self.consumer(rdy=10)
        channel = self.node.topics["t"].channels["c"]

        def fail(*args):
            raise RuntimeError("bookkeeping bug")

        self.patch(channel.in_flight, "add_run", fail)
        self.assertRaises(RuntimeError, self.publish, b"1")
        conn.client.send_response(b"OK")
        self.assertEqual(conn.frames(), [(0, b"OK")])

    def test_round_robin_resumes_where_it_left_off(self):
        consumers = [self.consumer(rdy=100, port=5000 + i) for i in range(2)]
        for _ in range(3):
            self.publish(b"x")
        self.assertEqual([len(c.messages()) for c in consumers], [2, 1])
        self.publish(b"y")
        self.assertEqual([len(c.messages()) for c in consumers], [0, 1])

    def test_a_consumer_lost_while_being_written_to_leaves_delivery_consistent(self):
        """A transport may report the connection lost from inside write(); the pump that was writing
        carries on with the other consumer, and the lost one's message times out as usual."""
        self.node.options.msg_timeout = 5.0
        lost = self.consumer(rdy=10, port=5001)
        other = self.consumer(rdy=10, port=5002)

        def write_and_lose(data):
            lost.transport.write = lambda data: None
            lost.proto.connectionLost(None)

        lost.transport.write = write_and_lose
        self.publish(*[b"%d" % i for i in range(4)])
        channel = self.node.topics["t"].channels["c"]
        delivered = other.messages()
        # each got its share of two, the lost one in the write that lost it
        self.assertEqual((len(delivered), len(channel.in_flight), channel.depth()), (2, 4, 0))
        other.send(b"".join(b"FIN " + msg_id + b"\n" for _, msg_id, _ in delivered))
        self.clock.advance(6)
        self.node.scan_queues()
        self.assertEqual([attempts for attempts, _, _ in other.messages()], [2, 2])

    def test_a_consumer_that_left_is_let_go_once_its_messages_time_out(self):
        """Its messages stay in flight to it until they time out; after that the channel keeps
        nothing of it."""
        self.node.options.msg_timeout = 5.0
        left = self.consumer(rdy=10)
        self.publish(b"1", b"2")
        self.assertEqual(len(left.messages()), 2)
        left.lose()
        gone = weakref.ref(left.client)
        del left
        channel = self.node.topics["t"].channels["c"]
        self.assertEqual(len(channel.in_flight), 2)
        self.clock.advance(6)
        self.node.scan_queues()
        gc.collect()
        self.assertEqual((len(channel.in_flight), channel.depth()), (0, 2))
        self.assertIsNone(gone())

    def test_channels_share_one_queued_message_but_not_delivery_state(self):
        a = self.node.get_topic("t").get_channel("a")
        b = self.node.get_topic("t").get_channel("b")
        conn = Conn(self.node, 9000).magic()
        conn.command(b"MPUB t", mpub_body([b"shared"]))
        [batch_a], [batch_b] = a.queue.memory.take(), b.queue.memory.take()
        self.assertIs(batch_a, batch_b)
        a.queue.memory.put(batch_a)
        b.queue.memory.put(batch_b)
        first = Conn(self.node, 5001).magic()
        first.subscribe(b"t", b"a", rdy=1)
        msg_id = first.frames()[-1][1][10:26]
        first.command(b"REQ " + msg_id + b" 0")
        self.assertEqual(first.frames()[-1][1][8:10], struct.pack(">H", 2))
        self.assertEqual([attempts(m) for m in queued(b.queue.memory)], [0])


class SamplingTests(NodeCase):
    """A consumer that IDENTIFYs with sample_rate gets that share of the channel, as nsqd deals it:
    a message is delivered when a draw from [0, 100) is at most the rate, else dropped."""

    def test_each_message_is_delivered_or_dropped_by_the_draw(self):
        draws = iter([10, 60, 50, 99, 0, 51])
        self.patch(channel_module, "_chance", lambda n: next(draws))
        conn = Conn(self.node, 5000).magic()
        conn.identify(output_buffer_timeout=-1, sample_rate=50)
        conn.subscribe(rdy=10)
        conn.frames()
        self.publish(*[b"%d" % i for i in range(6)])
        self.assertEqual([m[2] for m in conn.messages()], [b"0", b"2", b"4"])
        channel = self.node.topics["t"].channels["c"]
        self.assertEqual((channel.depth(), len(channel.in_flight), conn.client.message_count), (0, 3, 3))
        self.assertEqual(conn.client.sample_rate, 50)

    def test_the_rate_is_reported(self):
        conn = Conn(self.node, 5000).magic()
        conn.identify(feature_negotiation=True, sample_rate=25)
        self.assertEqual(json.loads(conn.frames()[0][1])["sample_rate"], 25)
