"""nsqlookupd's registration database (Go's RegistrationDB): which nsqd nodes produce which topics
and channels.

A registration is a (category, key, subkey) triple: ``("client", "", "")`` for every identified
node, ``("topic", topic, "")`` and ``("channel", topic, channel)``. Each maps producer ids (a
connection's remote address) to a :class:`Producer`, the registration's own record of one node:
tombstones are per topic registration, while the node's :class:`PeerInfo` (and its last update) is
shared by all of its producers. A key or subkey of ``"*"`` in a find matches any. A registration
outlives its last producer, as in Go: a topic stays listed until deleted.

Pure data: time comes from the injected clock, in integer nanoseconds as Go keeps it.
"""
from __future__ import annotations

from typing import NamedTuple

WILDCARD = "*"
#: Go's time.Time{}.UnixNano(), which /debug shows for a producer never tombstoned
ZERO_TIME_NS = -6795364578871345152


class Registration(NamedTuple):
    category: str
    key: str
    subkey: str


CLIENT = Registration("client", "", "")


def topic_registration(topic: str) -> Registration:
    return Registration("topic", topic, "")


def channel_registration(topic: str, channel: str) -> Registration:
    return Registration("channel", topic, channel)


class PeerInfo:
    """What an nsqd node said of itself in IDENTIFY, and when it was last heard from."""

    __slots__ = ("id", "remote_address", "hostname", "broadcast_address", "tcp_port", "http_port", "version",
                 "last_update")

    def __init__(self, id: str, remote_address: str = "", hostname: str = "", broadcast_address: str = "",
                 tcp_port: int = 0, http_port: int = 0, version: str = "", last_update: int = 0):
        self.id = id
        self.remote_address = remote_address
        self.hostname = hostname
        self.broadcast_address = broadcast_address
        self.tcp_port = tcp_port
        self.http_port = http_port
        self.version = version
        #: nanoseconds, set on IDENTIFY and every PING
        self.last_update = last_update

    def document(self) -> dict:
        """The node as /lookup shows it: Go's PeerInfo JSON, fields in its order."""
        return {
            "remote_address": self.remote_address,
            "hostname": self.hostname,
            "broadcast_address": self.broadcast_address,
            "tcp_port": self.tcp_port,
            "http_port": self.http_port,
            "version": self.version,
        }


class Producer:
    """One node in one registration."""

    __slots__ = ("peer_info", "tombstoned", "tombstoned_at")

    def __init__(self, peer_info: PeerInfo):
        self.peer_info = peer_info
        self.tombstoned = False
        #: nanoseconds; the flag stays set once tombstoned, the tombstone holds only for its lifetime
        self.tombstoned_at = ZERO_TIME_NS


def _matches(registration: Registration, category: str, key: str, subkey: str) -> bool:
    return (registration.category == category and key in (WILDCARD, registration.key)
            and subkey in (WILDCARD, registration.subkey))


class RegistrationDB:
    def __init__(self, clock):
        """`clock.seconds()` is the time (a reactor, or task.Clock in tests)."""
        self.clock = clock
        #: Registration -> {producer id: Producer}, in the order registered
        self.registrations = {}

    def now(self) -> int:
        return int(self.clock.seconds() * 1e9)

    # -- changes

    def add_registration(self, registration: Registration) -> None:
        """The registration exists from now on, with or without producers (HTTP's /topic/create)."""
        self.registrations.setdefault(registration, {})

    def add_producer(self, registration: Registration, producer: Producer) -> bool:
        """Whether it was added: a node already there keeps its record (and its tombstone)."""
        producers = self.registrations.setdefault(registration, {})
        if producer.peer_info.id in producers:
            return False
        producers[producer.peer_info.id] = producer
        return True

    def remove_producer(self, registration: Registration, id: str):
        """(whether it was there, how many producers are left); the registration stays."""
        producers = self.registrations.get(registration)
        if producers is None:
            return False, 0
        removed = producers.pop(id, None) is not None
        return removed, len(producers)

    def remove_registration(self, registration: Registration) -> None:
        self.registrations.pop(registration, None)

    def touch(self, peer_info: PeerInfo) -> None:
        """The node was heard from (IDENTIFY, PING): it counts as active again."""
        peer_info.last_update = self.now()

    def tombstone(self, producer: Producer) -> None:
        producer.tombstoned = True
        producer.tombstoned_at = self.now()

    # -- finds

    def find_registrations(self, category: str, key: str, subkey: str) -> list:
        if WILDCARD not in (key, subkey):
            registration = Registration(category, key, subkey)
            return [registration] if registration in self.registrations else []
        return [r for r in self.registrations if _matches(r, category, key, subkey)]

    def find_producers(self, category: str, key: str, subkey: str) -> list:
        """The producers of every matching registration, each node once (its first record)."""
        if WILDCARD not in (key, subkey):
            return list(self.registrations.get(Registration(category, key, subkey), {}).values())
        found = {}
        for registration, producers in self.registrations.items():
            if _matches(registration, category, key, subkey):
                for id, producer in producers.items():
                    found.setdefault(id, producer)
        return list(found.values())

    def producer(self, registration: Registration, id: str):
        """The node's record in that registration, or None."""
        return self.registrations.get(registration, {}).get(id)

    def lookup_registrations(self, id: str) -> list:
        """Every registration the node is a producer of."""
        return [r for r, producers in self.registrations.items() if id in producers]

    # -- time

    def is_tombstoned(self, producer: Producer, lifetime: float) -> bool:
        return producer.tombstoned and self.now() - producer.tombstoned_at < lifetime * 1e9

    def active(self, producers, inactivity_timeout: float, tombstone_lifetime: float) -> list:
        """Go's FilterByActive: those heard from within `inactivity_timeout` and not tombstoned
        within `tombstone_lifetime` (0: tombstones ignored)."""
        now = self.now()
        timeout_ns = inactivity_timeout * 1e9
        return [p for p in producers
                if now - p.peer_info.last_update <= timeout_ns and not self.is_tombstoned(p, tombstone_lifetime)]
