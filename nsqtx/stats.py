"""nsqd's statistics: the structures /stats serves (and statsd and nsqadmin read), built from the node.

Every structure is a plain dict keyed by Go nsqd's JSON field names, in Go's field order, so the
JSON encoding of a dict is what nsqd sends. ``None`` stands where Go sends ``null`` (nil slices).
:func:`format_text` renders the same structures as nsqd's plain-text /stats page.
"""
from __future__ import annotations

import gc
import sys
import time
from collections import deque
from datetime import datetime

from nsqtx.durations import format_duration
from nsqtx.version import NSQD_VERSION, __version__

#: nsqd's e2e latency result when no --e2e-processing-latency-percentile is configured
#: (nsqtx has none yet): Go's empty quantile.Result.
def _no_latency() -> dict:
    return {"count": 0, "percentiles": None}


def health(node) -> str:
    """nsqd's GetHealth: "OK", or "NOK - <error>"."""
    return str(node.health)


# -- topics, channels, clients


def node_stats(node, topic_name: str = "", channel_name: str = "", include_clients: bool = True) -> dict:
    """nsqd's GetStats: {"topics": [...], "producers": [...]}, sorted by topic and channel name.

    As in Go, "topics" is None when `topic_name` names no topic, a topic without `channel_name` is
    left out, "clients" is None unless `include_clients`, and "producers" is None when there are none
    (or clients are not included).
    """
    if not topic_name:
        topics = sorted(node.topics.values(), key=_by_name)
    else:
        topic = node.topics.get(topic_name)
        if topic is None:
            return {"topics": None, "producers": None}
        topics = [topic]
    out = []
    for topic in topics:
        if not channel_name:
            channels = sorted(topic.channels.values(), key=_by_name)
        else:
            channel = topic.channels.get(channel_name)
            if channel is None:
                continue
            channels = [channel]
        channel_list = []
        for channel in channels:
            clients = None
            if include_clients:
                clients = [client_stats(client, topic_name) for client in channel.clients]
            channel_list.append(channel_stats(channel, clients))
        out.append(topic_stats(topic, channel_list))
    producers = None
    if include_clients:
        producers = [client_stats(client, topic_name) for client in node.clients if client.pub_counts] or None
    return {"topics": out, "producers": producers}


def _by_name(owner) -> str:
    return owner.name


def topic_stats(topic, channels: list) -> dict:
    return {
        "topic_name": topic.name,
        "channels": channels,
        "depth": topic.depth(),
        "backend_depth": topic.backend_depth(),
        "message_count": topic.message_count,
        "message_bytes": topic.message_bytes,
        "paused": topic.paused,
        # not in Go's stats: messages an ephemeral topic dropped because its memory queue was full
        "dropped_count": topic.dropped_count,
        "e2e_processing_latency": _no_latency(),
    }


def channel_stats(channel, clients) -> dict:
    """Go's zone/region/global message counts are omitted when zero, and nsqtx never counts them."""
    return {
        "channel_name": channel.name,
        "depth": channel.depth(),
        "backend_depth": channel.backend_depth(),
        "in_flight_count": len(channel.in_flight),
        "deferred_count": len(channel.deferred),
        "message_count": channel.message_count,
        "requeue_count": channel.requeue_count,
        "timeout_count": channel.timeout_count,
        # not in Go's stats: messages an ephemeral channel dropped because its memory queue was full
        "dropped_count": channel.dropped_count,
        "client_count": len(channel.clients),
        "clients": clients,
        "paused": channel.paused,
        "e2e_processing_latency": _no_latency(),
    }


def client_stats(client, topic_name: str = "") -> dict:
    """Go's ClientV2Stats. pub_counts (left out when empty) is restricted to `topic_name` if given.

    Go stops after the first entry of its (unordered) pub count map, so it shows one random topic of
    a producer that published to several; nsqtx lists them all, by topic name.
    """
    stats = {
        "client_id": client.client_id,
        "hostname": client.hostname,
        "version": "V2",
        "remote_address": client.remote_address,
        "state": client.state,
        "ready_count": client.ready_count,
        "in_flight_count": client.in_flight_count,
        "message_count": client.message_count,
        "finish_count": client.finish_count,
        "requeue_count": client.requeue_count,
        "connect_ts": int(client.connect_time),
        "sample_rate": client.sample_rate,
        "deflate": client.deflate,
        "snappy": client.snappy,
        "user_agent": client.user_agent,
    }
    # omitted when empty, as Go's omitempty
    if client.has_authorizations():
        stats["authed"] = True
        if client.auth_state.identity:
            stats["auth_identity"] = client.auth_state.identity
        if client.auth_state.identity_url:
            stats["auth_identity_url"] = client.auth_state.identity_url
    stats.update({
        "topology_zone": getattr(client, "topology_zone", ""),
        "topology_region": getattr(client, "topology_region", ""),
    })
    pub_counts = [{"topic": topic, "count": count} for topic, count in sorted(client.pub_counts.items())
                  if not topic_name or topic == topic_name]
    if pub_counts:
        stats["pub_counts"] = pub_counts
    stats["tls"] = client.tls
    cipher, version = client.tls_state()
    stats["tls_cipher_suite"] = cipher
    stats["tls_version"] = version
    stats["tls_negotiated_protocol"] = ""
    stats["tls_negotiated_protocol_is_mutual"] = False
    return stats


def stats_document(node, topic_name: str = "", channel_name: str = "", include_clients: bool = True,
                   include_mem: bool = True) -> dict:
    """The whole /stats?format=json answer, in Go's field order ("memory" only if `include_mem`)."""
    stats = node_stats(node, topic_name, channel_name, include_clients)
    doc = {
        "version": NSQD_VERSION,
        "health": health(node),
        "start_time": int(node.start_time),
        "topics": stats["topics"],
    }
    if include_mem:
        doc["memory"] = memory_stats()
    doc["producers"] = stats["producers"]
    return doc


# -- memory


class _GCPauses:
    """Durations of CPython's garbage collections, the last 256 as Go's MemStats.PauseNs keeps them."""

    def __init__(self):
        self.pauses = deque(maxlen=256)
        self._started = None
        self.installed = False

    def install(self) -> None:
        callbacks = getattr(gc, "callbacks", None)
        if self.installed or callbacks is None:
            return
        callbacks.append(self._callback)
        self.installed = True

    def _callback(self, phase, info) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        elif self._started is not None:
            self.pauses.append(time.perf_counter_ns() - self._started)
            self._started = None


_gc_pauses = _GCPauses()


def watch_gc_pauses() -> None:
    """Start timing garbage collections (CPython's gc.callbacks; PyPy has none), once per process."""
    _gc_pauses.install()


def _percentile(perc: float, ordered: list) -> int:
    """Go nsqd's percentile(): nearest rank, rounded half up."""
    index = int(perc / 100.0 * len(ordered) + 0.5)
    return ordered[min(index, len(ordered) - 1)]


def memory_stats() -> dict:
    """Those of Go's memStats fields this interpreter can actually measure; the rest are left out.

    - heap_objects: memory blocks the interpreter holds (CPython's sys.getallocatedblocks());
    - heap_in_use_bytes: bytes allocated by Python code, only while tracemalloc is tracing;
    - gc_pause_usec_100/99/95: over the last 256 collections timed since :func:`watch_gc_pauses`
      (present once one was timed);
    - gc_total_runs: collections of all generations (CPython's gc.get_stats()).
    Never reported: heap_idle_bytes, heap_released_bytes, next_gc_bytes (no Python equivalent), and
    on PyPy, whose gc module offers none of the above in these units, the result is empty.
    """
    out = {}
    blocks = getattr(sys, "getallocatedblocks", None)
    if blocks is not None:
        out["heap_objects"] = blocks()
    tracemalloc = sys.modules.get("tracemalloc")
    if tracemalloc is not None and tracemalloc.is_tracing():
        out["heap_in_use_bytes"] = tracemalloc.get_traced_memory()[0]
    pauses = sorted(_gc_pauses.pauses)
    if pauses:
        for perc in (100, 99, 95):
            out["gc_pause_usec_%d" % perc] = _percentile(perc, pauses) // 1000
    generations = gc.get_stats()
    if isinstance(generations, list):
        out["gc_total_runs"] = sum(generation.get("collections", 0) for generation in generations)
    return out


# -- nsqd's plain-text /stats page


def version_line() -> str:
    """Go prints "nsqd v1.3.0 (built w/go1.21.5)"; we name ourselves and the interpreter instead."""
    implementation = sys.implementation
    return "nsqd v%s (built w/nsqtx %s, %s %d.%d.%d)" % (
        NSQD_VERSION, __version__, implementation.name, *implementation.version[:3])


def _rfc3339(seconds: float) -> str:
    """Go's Time.Format(time.RFC3339) in local time: 2006-01-02T15:04:05-07:00, "Z" when UTC."""
    moment = datetime.fromtimestamp(int(seconds)).astimezone()
    offset = moment.utcoffset()
    if not offset:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + "%s%02d:%02d" % (sign, hours, minutes)


def _latency_text(latency: dict) -> str:
    """Go's quantile.Result String(): the percentile values, empty when there are none."""
    return ", ".join(format_duration(item["value"] / 1e9) for item in latency["percentiles"] or ())


def format_client(stats: dict, now: float) -> str:
    """Go's ClientV2Stats.String(): one line for a producer (with pub counts) or a consumer."""
    connected = format_duration(max(int(now) - stats["connect_ts"], 0))
    port = stats["remote_address"].rpartition(":")[2]
    ident = "%s:%s %s" % (stats["hostname"], port, stats["user_agent"])
    pub_counts = stats.get("pub_counts")
    if pub_counts:
        return "[%s %-21s] msgs: %-8d topics: %s connected: %s" % (
            stats["version"], ident, sum(item["count"] for item in pub_counts),
            ",".join("%s=%d" % (item["topic"], item["count"]) for item in pub_counts), connected)
    return "[%s %-21s] state: %d inflt: %-4d rdy: %-4d fin: %-8d re-q: %-8d msgs: %-8d connected: %s" % (
        stats["version"], ident, stats["state"], stats["in_flight_count"], stats["ready_count"],
        stats["finish_count"], stats["requeue_count"], stats["message_count"], connected)


def format_text(doc: dict, now: float) -> str:
    """nsqd's printStats layout for a :func:`stats_document`; `now` is clock seconds."""
    start = doc["start_time"]
    lines = [
        version_line(),
        "start_time %s" % _rfc3339(start),
        "uptime %s" % format_duration(max(now - start, 0.0)),
        "",
        "Health: %s" % doc["health"],
    ]
    memory = doc.get("memory")
    if memory is not None:
        lines += ["", "Memory:"]
        for key in ("heap_objects", "heap_idle_bytes", "heap_in_use_bytes", "heap_released_bytes",
                    "gc_pause_usec_100", "gc_pause_usec_99", "gc_pause_usec_95", "next_gc_bytes",
                    "gc_total_runs"):
            if key in memory:
                lines.append("   %-25s\t%d" % (key, memory[key]))
    topics = doc["topics"] or []
    lines.append("")
    lines.append("Topics: None" if not topics else "Topics:")
    for index, topic in enumerate(topics):
        if index:
            # Go ends "Topics:" without a newline and starts every topic with one
            lines.append("")
        lines.append("%s[%-15s] depth: %-5d be-depth: %-5d msgs: %-8d e2e%%: %s" % (
            "*P " if topic["paused"] else "   ", topic["topic_name"], topic["depth"],
            topic["backend_depth"], topic["message_count"], _latency_text(topic["e2e_processing_latency"])))
        for channel in topic["channels"]:
            lines.append(
                "%s[%-25s] depth: %-5d be-depth: %-5d inflt: %-4d def: %-4d re-q: %-5d timeout: %-5d "
                "msgs: %-8d e2e%%: %s" % (
                    "   *P " if channel["paused"] else "      ", channel["channel_name"], channel["depth"],
                    channel["backend_depth"], channel["in_flight_count"], channel["deferred_count"],
                    channel["requeue_count"], channel["timeout_count"], channel["message_count"],
                    _latency_text(channel["e2e_processing_latency"])))
            for client in channel["clients"] or ():
                lines.append("        %s" % format_client(client, now))
    producers = doc["producers"] or []
    lines.append("")
    if not producers:
        lines.append("Producers: None")
    else:
        lines.append("Producers:")
        for client in producers:
            lines.append("   %s" % format_client(client, now))
    return "\n".join(lines) + "\n"
