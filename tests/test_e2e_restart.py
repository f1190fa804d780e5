"""Durable queues, end to end: the real `twistd -n nsqtx` in a subprocess, driven over real sockets,
stopped by a real signal (SIGTERM for a clean shutdown, SIGKILL for a crash) and restarted on the
same --data-path, including over a torn last record and a garbage segment file; and the lock that
keeps a second server off that path while one runs.

Only the subprocess is waited on with a clock: bounded polls for /ping, for process exit and for
/stats to show a condition, and bounded socket timeouts. Everything else waits for an actual frame.
"""
from __future__ import annotations

import collections
import glob
import json
import os
import signal
import socket
import struct
import subprocess
import time
import urllib.request

from twisted.trial import unittest

from tests.support import data_dir, free_port, subprocess_env, twistd, wait_for_ping

RESPONSE, ERROR, MESSAGE = 0, 1, 2
HEARTBEAT = b"_heartbeat_"
_FRAME = struct.Struct(">lL")
_LENGTH = struct.Struct(">l")

Message = collections.namedtuple("Message", "attempts id body")


class V2Client:
    """A blocking protocol V2 connection: every read waits at most `timeout` seconds for a frame."""

    def __init__(self, port: int, timeout: float):
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.sendall(b"  V2")
        self._buf = bytearray()
        self._frames = collections.deque()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: bytes, body: bytes | None = None) -> None:
        data = line + b"\n"
        if body is not None:
            data += _LENGTH.pack(len(body)) + body
        self.send(data)

    def _parse(self) -> None:
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 8:
            size, kind = _FRAME.unpack_from(buf, pos)
            if len(buf) - pos < 4 + size:
                break
            data = bytes(buf[pos + 8:pos + 4 + size])
            pos += 4 + size
            if kind == RESPONSE and data == HEARTBEAT:
                self.send(b"NOP\n")
            else:
                self._frames.append((kind, data))
        del buf[:pos]

    def read(self):
        """Every frame received so far, waiting for at least one; socket.timeout if none comes."""
        while not self._frames:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buf += chunk
            self._parse()
        frames = list(self._frames)
        self._frames.clear()
        return frames

    def read_available(self, wait: float):
        """The frames that arrive within `wait` seconds (possibly none; 0: only those already here)."""
        self.sock.settimeout(wait)
        try:
            return self.read()
        except (socket.timeout, BlockingIOError):
            return []
        finally:
            self.sock.settimeout(self.timeout)

    def response(self) -> bytes:
        """The next frame, which must be a response (an error frame or a message fails)."""
        if not self._frames:
            self._frames.extend(self.read())
        kind, data = self._frames.popleft()
        if kind != RESPONSE:
            raise AssertionError("expected a response, got frame type %d: %r" % (kind, data[:200]))
        return data

    def ok(self, line: bytes, body: bytes | None = None) -> None:
        self.command(line, body)
        data = self.response()
        if data != b"OK":
            raise AssertionError("%r answered %r" % (line, data))

    def pub(self, topic: str, body: bytes) -> None:
        self.ok(b"PUB " + topic.encode(), body)

    def mpub(self, topic: str, bodies) -> None:
        self.ok(b"MPUB " + topic.encode(),
                _LENGTH.pack(len(bodies)) + b"".join(_LENGTH.pack(len(b)) + b for b in bodies))

    def sub(self, topic: str, channel: str, rdy: int) -> None:
        self.ok(b"SUB %s %s" % (topic.encode(), channel.encode()))
        self.command(b"RDY %d" % rdy)

    def messages(self, frames):
        """The messages among `frames`; any other frame fails."""
        out = []
        for kind, data in frames:
            if kind != MESSAGE:
                raise AssertionError("expected a message, got frame type %d: %r" % (kind, data[:200]))
            out.append(Message(struct.unpack(">H", data[8:10])[0], data[10:26], data[26:]))
        return out

    def fin(self, messages) -> None:
        if messages:
            self.send(b"".join(b"FIN " + m.id + b"\n" for m in messages))


class Server:
    """One `twistd -n nsqtx` process on `data_path`, logging to its own file."""

    def __init__(self, case, data_path: str, log_path: str, flags):
        self.case = case
        self.tcp_port, self.http_port = free_port(), free_port()
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                twistd("-n", "--pidfile=", "nsqtx", "--tcp-address=127.0.0.1:%d" % self.tcp_port,
                       "--http-address=127.0.0.1:%d" % self.http_port, "--data-path=" + data_path, *flags),
                cwd=os.path.dirname(log_path), env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        case.addCleanup(self._reap)

    def _reap(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_ready(self, timeout: float) -> None:
        body = wait_for_ping(self.case, self.proc, self.http_port, timeout, self.output)
        self.case.assertEqual(body, b"OK", self.output())

    def http(self, method: str, path: str) -> bytes:
        request = urllib.request.Request("http://127.0.0.1:%d%s" % (self.http_port, path),
                                         data=b"" if method == "POST" else None, method=method)
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.read()

    def stats(self) -> dict:
        return json.loads(self.http("GET", "/stats?format=json"))

    def topic_stats(self, topic: str) -> dict:
        for t in self.stats()["topics"] or []:
            if t["topic_name"] == topic:
                return t
        self.case.fail("no topic %r in /stats" % (topic,))

    def channel_stats(self, topic: str, channel: str) -> dict:
        for c in self.topic_stats(topic)["channels"] or []:
            if c["channel_name"] == channel:
                return c
        self.case.fail("no channel %r of topic %r in /stats" % (channel, topic))

    def client(self, timeout: float) -> V2Client:
        client = V2Client(self.tcp_port, timeout)
        self.case.addCleanup(client.close)
        return client

    def assert_no_traceback(self) -> None:
        out = self.output()
        self.case.assertNotIn("Traceback", out, out)

    def terminate(self, timeout: float) -> None:
        """SIGTERM: a clean shutdown, exiting 0 within `timeout`."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.case.fail("twistd still running %ss after SIGTERM:\n%s" % (timeout, self.output()))
        self.case.assertEqual(status, 0, self.output())
        self.assert_no_traceback()

    def kill(self, timeout: float) -> None:
        """SIGKILL: a crash, no shutdown code runs."""
        self.proc.send_signal(signal.SIGKILL)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.case.fail("twistd still running %ss after SIGKILL" % (timeout,))
        self.case.assertEqual(status, -signal.SIGKILL)
        self.assert_no_traceback()


class ServerTestCase(unittest.TestCase):
    """Servers started one after the other on one data path."""

    timeout = 120
    START_TIMEOUT = 60.0
    STOP_TIMEOUT = 30.0
    #: longest wait for a frame, or for /stats to show a condition
    READ_TIMEOUT = 30.0

    def setUp(self):
        self.data_path = data_dir(self)
        self.log_dir = data_dir(self)
        self.servers = []

    def start(self, *flags) -> Server:
        log_path = os.path.join(self.log_dir, "twistd-%d.out" % (len(self.servers) + 1,))
        server = Server(self, self.data_path, log_path, flags)
        self.servers.append(server)
        server.wait_ready(self.START_TIMEOUT)
        return server

    def assert_no_traceback_anywhere(self) -> None:
        for server in self.servers:
            server.assert_no_traceback()


class RestartTests(ServerTestCase):
    """Each test: start, publish, stop by a signal, (damage the files,) restart, consume everything."""

    def wait_for(self, condition, describe) -> None:
        """Poll `condition` (a bounded poll of the subprocess' state) until true or READ_TIMEOUT."""
        deadline = time.monotonic() + self.READ_TIMEOUT
        while not condition():
            if time.monotonic() > deadline:
                self.fail("timed out after %ss waiting for %s" % (self.READ_TIMEOUT, describe()))
            time.sleep(0.02)

    def consume(self, server: Server, topic: str, channel: str, want, rdy: int = 2500):
        """Subscribe and FIN everything until every body of `want` has been received, then until the
        channel is drained (nothing queued, in flight or deferred); return every delivery."""
        want = set(want)
        client = server.client(self.READ_TIMEOUT)
        client.sub(topic, channel, rdy)
        got = []
        seen = set()
        while not want <= seen:
            try:
                frames = client.read()
            except socket.timeout:
                self.fail("%s:%s stopped delivering: %d of %d bodies received, missing e.g. %r\n%s"
                          % (topic, channel, len(want & seen), len(want), sorted(want - seen)[:5], server.output()))
            messages = client.messages(frames)
            client.fin(messages)
            got.extend(messages)
            seen.update(m.body for m in messages)

        last = [None]

        def drained():
            # Anything delivered beyond `want` (a duplicate) is read, counted and finished too.
            messages = client.messages(client.read_available(0.0))
            client.fin(messages)
            got.extend(messages)
            stats = last[0] = server.channel_stats(topic, channel)
            return (stats["depth"], stats["in_flight_count"], stats["deferred_count"]) == (0, 0, 0)

        self.wait_for(drained, lambda: "%s:%s to drain, /stats: %r" % (topic, channel, last[0]))
        client.close()
        return got

    def assert_exactly_once(self, got, want) -> None:
        bodies = [m.body for m in got]
        counts = collections.Counter(bodies)
        missing = set(want) - set(counts)
        self.assertEqual(missing, set(), "%d bodies lost, e.g. %r" % (len(missing), sorted(missing)[:5]))
        extra = set(counts) - set(want)
        self.assertEqual(extra, set(), "unexpected bodies, e.g. %r" % (sorted(extra)[:5],))
        duplicated = {b: n for b, n in counts.items() if n > 1}
        self.assertEqual(duplicated, {}, "delivered more than once")

    # -- the tests

    def test_clean_shutdown_keeps_queued_in_flight_and_paused(self):
        """SIGTERM with 20 000 messages queued (mostly on disk), some in flight and a paused channel:
        exit 0, and after a restart every message is delivered, the in-flight ones again."""
        server = self.start("--mem-queue-size=100")
        server.http("POST", "/topic/create?topic=t")
        server.http("POST", "/channel/create?topic=t&channel=c")
        server.http("POST", "/channel/create?topic=t&channel=p")
        server.http("POST", "/channel/pause?topic=t&channel=p")
        bodies = [b"msg-%05d" % i for i in range(20000)]
        publisher = server.client(self.READ_TIMEOUT)
        for i in range(0, len(bodies), 500):
            publisher.mpub("t", bodies[i:i + 500])

        # Ten delivered; five of them finished, five left in flight at shutdown.
        consumer = server.client(self.READ_TIMEOUT)
        consumer.sub("t", "c", 10)
        delivered = []
        while len(delivered) < 10:
            delivered.extend(consumer.messages(consumer.read()))
        self.assertEqual(len(delivered), 10)
        self.assertTrue(all(m.attempts == 1 for m in delivered), delivered)
        finished, in_flight = delivered[:5], delivered[5:]
        consumer.send(b"RDY 0\n")
        consumer.fin(finished)
        self.wait_for(lambda: server.channel_stats("t", "c")["in_flight_count"] == 5,
                      lambda: "5 in flight on t:c, /stats: %r" % (server.channel_stats("t", "c"),))
        server.terminate(self.STOP_TIMEOUT)
        self.assertIn("Server Shut Down.", server.output())

        server = self.start("--mem-queue-size=100")
        paused = server.channel_stats("t", "p")
        self.assertTrue(paused["paused"])
        self.assertEqual(paused["depth"], 20000)
        self.assertEqual(server.channel_stats("t", "c")["depth"], 20000 - len(finished))
        self.assertFalse(server.channel_stats("t", "c")["paused"])

        got = self.consume(server, "t", "c", set(bodies) - {m.body for m in finished})
        # At least once: across both runs every body was delivered, and only the ones in flight at
        # shutdown twice (again, with the same ID and a higher attempts count).
        self.assert_exactly_once(finished + got, bodies)
        again = {m.body: m for m in got if m.body in {f.body for f in in_flight}}
        for m in in_flight:
            self.assertEqual(again[m.body].id, m.id)
            self.assertGreaterEqual(again[m.body].attempts, 2, again[m.body])

        paused = server.channel_stats("t", "p")
        self.assertTrue(paused["paused"])
        self.assertEqual(paused["depth"], 20000)
        server.terminate(self.STOP_TIMEOUT)
        self.assert_no_traceback_anywhere()

    def test_acknowledged_messages_survive_sigkill(self):
        """--mem-queue-size=0 --sync-every=1: every PUB answered OK survives a SIGKILL, both in a
        channel's queue and in the queue of a topic without channels."""
        flags = ("--mem-queue-size=0", "--sync-every=1")
        server = self.start(*flags)
        server.http("POST", "/topic/create?topic=t")
        server.http("POST", "/channel/create?topic=t&channel=c")
        with_channel = [b"t-%04d" % i for i in range(1000)]
        without_channel = [b"u-%04d" % i for i in range(1000)]
        publisher = server.client(self.READ_TIMEOUT)
        for body in with_channel:
            publisher.pub("t", body)
        for body in without_channel:
            publisher.pub("u", body)
        server.kill(self.STOP_TIMEOUT)

        server = self.start(*flags)
        self.assertEqual(server.channel_stats("t", "c")["depth"], 1000)
        self.assertEqual(server.topic_stats("u")["depth"], 1000)
        self.assertEqual(server.topic_stats("u")["channels"], [])
        self.assert_exactly_once(self.consume(server, "t", "c", with_channel), with_channel)
        self.assert_exactly_once(self.consume(server, "u", "c", without_channel), without_channel)
        server.terminate(self.STOP_TIMEOUT)
        self.assert_no_traceback_anywhere()

    def _publish_then_kill(self, flags, bodies) -> None:
        """A server with channel t/c, given `bodies` in MPUBs of 50, then SIGKILLed."""
        server = self.start(*flags)
        server.http("POST", "/topic/create?topic=t")
        server.http("POST", "/channel/create?topic=t&channel=c")
        publisher = server.client(self.READ_TIMEOUT)
        for i in range(0, len(bodies), 50):
            publisher.mpub("t", bodies[i:i + 50])
        server.kill(self.STOP_TIMEOUT)

    def _torn_last_record(self, flags, remove_meta: bool) -> None:
        bodies = [b"torn-%04d" % i for i in range(300)]
        self._publish_then_kill(flags, bodies)

        segments = sorted(glob.glob(os.path.join(self.data_path, "t:c.diskqueue.*.dat")))
        segments = [s for s in segments if not s.endswith(".meta.dat")]
        self.assertTrue(segments, os.listdir(self.data_path))
        # A crash in the middle of a write: the length says 100 bytes, only 10 made it.
        with open(segments[-1], "ab") as f:
            f.write(_LENGTH.pack(100) + b"0123456789")
        meta = os.path.join(self.data_path, "t:c.diskqueue.meta.dat")
        if remove_meta:
            if os.path.exists(meta):
                os.remove(meta)
        else:
            self.assertTrue(os.path.exists(meta), os.listdir(self.data_path))

        server = self.start(*flags)
        self.assertEqual(server.channel_stats("t", "c")["depth"], len(bodies))
        self.assert_exactly_once(self.consume(server, "t", "c", bodies), bodies)
        # Still serving: a new message goes through the same queue.
        publisher = server.client(self.READ_TIMEOUT)
        publisher.pub("t", b"after")
        self.assert_exactly_once(self.consume(server, "t", "c", [b"after"]), [b"after"])
        server.terminate(self.STOP_TIMEOUT)
        self.assert_no_traceback_anywhere()

    def test_torn_last_record_after_metadata_sync(self):
        """The metadata points at the end of the last whole record; a torn record follows it."""
        self._torn_last_record(("--mem-queue-size=0", "--sync-every=1"), remove_meta=False)

    def test_torn_last_record_without_metadata(self):
        """A crash before the first metadata sync: the records are recounted, the torn one cut off."""
        self._torn_last_record(("--mem-queue-size=0",), remove_meta=True)

    def test_garbage_segment_is_set_aside(self):
        """The read segment overwritten with garbage: one error line, the file renamed to .bad, the
        later segments still delivered, and new messages served."""
        flags = ("--mem-queue-size=0", "--sync-every=1", "--max-bytes-per-file=4096")
        bodies = [b"g-%05d" % i for i in range(300)]
        self._publish_then_kill(flags, bodies)

        first = os.path.join(self.data_path, "t:c.diskqueue.000000.dat")
        with open(os.path.join(self.data_path, "t:c.diskqueue.meta.dat"), "rb") as f:
            meta = f.read()
        self.assertEqual(meta.split(b"\n")[:2], [b"300", b"0,0"], "the metadata must reference %s" % first)
        self.assertTrue(os.path.exists(os.path.join(self.data_path, "t:c.diskqueue.000001.dat")),
                        os.listdir(self.data_path))
        lost = set(_records(first))
        self.assertTrue(lost)
        # Garbage of the same size, starting with an invalid record length (-1).
        size = os.path.getsize(first)
        with open(first, "wb") as f:
            f.write(b"\xff\xff\xff\xff" + os.urandom(size - 4))

        server = self.start(*flags)
        self.assertEqual(server.channel_stats("t", "c")["depth"], len(bodies))
        survivors = [b for b in bodies if b not in lost]
        self.assertTrue(survivors)
        self.assert_exactly_once(self.consume(server, "t", "c", survivors), survivors)
        self.assertTrue(os.path.exists(first + ".bad"), os.listdir(self.data_path))
        self.assertFalse(os.path.exists(first))
        mentions = [line for line in server.output().splitlines() if os.path.basename(first) + ".bad" in line]
        self.assertEqual(len(mentions), 1, server.output())
        self.assertIn("#error]", mentions[0])

        publisher = server.client(self.READ_TIMEOUT)
        publisher.pub("t", b"after")
        self.assert_exactly_once(self.consume(server, "t", "c", [b"after"]), [b"after"])
        self.assertEqual(server.stats()["health"], "OK")
        server.terminate(self.STOP_TIMEOUT)
        self.assert_no_traceback_anywhere()


class DataPathLockTests(ServerTestCase):
    def test_second_server_refused_and_a_killed_ones_lock_gone(self):
        """As Go nsqd: a second server on the data path exits 1 with one line naming it; the lock
        dies with a SIGKILLed server, so the next start serves."""
        first = self.start()
        log_path = os.path.join(self.log_dir, "second.out")
        second = Server(self, self.data_path, log_path, [])
        try:
            status = second.proc.wait(self.START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail("a second server on the same data path did not exit:\n" + second.output())
        self.assertEqual(status, 1, second.output())
        second.assert_no_traceback()
        self.assertEqual(second.output().splitlines()[-1].split("] ", 1)[-1],
                         "nsqtx: failed to lock data-path %s - Resource temporarily unavailable (possibly in "
                         "use by another instance of nsqd or nsqtx)" % (self.data_path,))
        self.assertEqual(first.http("GET", "/ping"), b"OK")

        first.kill(self.STOP_TIMEOUT)
        third = self.start()
        self.assertEqual(third.http("GET", "/ping"), b"OK")
        third.terminate(self.STOP_TIMEOUT)


def _records(path: str):
    """The bodies of the encoded messages in a go-diskqueue segment file."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + 4 <= len(data):
        length = _LENGTH.unpack_from(data, pos)[0]
        yield data[pos + 4 + 26:pos + 4 + length]
        pos += 4 + length
