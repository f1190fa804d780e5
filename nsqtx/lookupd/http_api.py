"""nsqlookupd's HTTP API on Klein: the routes of Go nsqlookupd 1.3 (http.go), each a method of
:class:`HTTPAPI`, answering as nsqd's do (:mod:`nsqtx.http_responses`) from the registration
database (:mod:`nsqtx.lookupd.registration_db`).

As in Go 1.3, every route answers the same whatever the request's Accept header: the
``application/vnd.nsq; version=1.0`` that clients send once chose between two response formats;
since NSQ 1.0 there is only this one. Topic names are checked where Go checks them (creating a topic
or a channel, deleting a channel) and nowhere else, so that a ``*`` in /lookup, /channels or
/topic/delete matches every topic, as Go's wildcard does.
"""
from __future__ import annotations

from klein import Klein

from nsqtx.http_params import Params
from nsqtx.http_responses import HTTPError, logged, plain_text, v1
from nsqtx.http_router import Router, answer_unrouted
from nsqtx.http_site import NSQSite
from nsqtx.log import NSQLogger
from nsqtx.lookupd.registration_db import CLIENT, channel_registration, topic_registration
from nsqtx.version import NSQLOOKUPD_VERSION

log = NSQLogger()


class HTTPAPI:
    app = Klein()
    answer_unrouted(app)

    def __init__(self, lookupd):
        self.lookupd = lookupd
        self.db = lookupd.db
        #: what nsqlookupd's router answers when no route takes a request
        self.router = Router(self.app.url_map)

    def _active(self, producers, tombstone_lifetime: float) -> list:
        return self.db.active(producers, self.lookupd.options.inactive_producer_timeout, tombstone_lifetime)

    # -- the lookupd

    @app.route("/ping", methods=["GET"])
    @plain_text
    @logged
    def ping(self, request):
        return "OK"

    @app.route("/info", methods=["GET"])
    @v1
    @logged
    def info(self, request):
        return {"version": NSQLOOKUPD_VERSION}

    @app.route("/debug", methods=["GET"])
    @v1
    @logged
    def debug(self, request):
        """Every registration's producers, with what the database keeps of them (Go maps: keys sorted);
        a registration without producers is not shown."""
        data = {}
        for registration, producers in self.db.registrations.items():
            key = "%s:%s:%s" % registration
            for producer in producers.values():
                info = producer.peer_info
                data.setdefault(key, []).append({
                    "broadcast_address": info.broadcast_address,
                    "hostname": info.hostname,
                    "http_port": info.http_port,
                    "id": info.id,
                    "last_update": info.last_update,
                    "tcp_port": info.tcp_port,
                    "tombstoned": producer.tombstoned,
                    "tombstoned_at": producer.tombstoned_at,
                    "version": info.version,
                })
        return {key: data[key] for key in sorted(data)}

    # -- finding

    @app.route("/lookup", methods=["GET"])
    @v1
    @logged
    def lookup(self, request):
        """The topic's channels and its active producers not tombstoned."""
        topic = Params(request).require("topic", "MISSING_ARG_TOPIC")
        db = self.db
        if not db.find_registrations("topic", topic, ""):
            raise HTTPError(404, "TOPIC_NOT_FOUND")
        channels = [r.subkey for r in db.find_registrations("channel", topic, "*")]
        producers = self._active(db.find_producers("topic", topic, ""), self.lookupd.options.tombstone_lifetime)
        return {"channels": channels, "producers": [p.peer_info.document() for p in producers]}

    @app.route("/topics", methods=["GET"])
    @v1
    @logged
    def topics(self, request):
        return {"topics": [r.key for r in self.db.find_registrations("topic", "*", "")]}

    @app.route("/channels", methods=["GET"])
    @v1
    @logged
    def channels(self, request):
        topic = Params(request).require("topic", "MISSING_ARG_TOPIC")
        return {"channels": [r.subkey for r in self.db.find_registrations("channel", topic, "*")]}

    @app.route("/nodes", methods=["GET"])
    @v1
    @logged
    def nodes(self, request):
        """Every active node with its topics, and for each topic whether the node is tombstoned in it
        (tombstoned nodes are listed)."""
        db = self.db
        lifetime = self.lookupd.options.tombstone_lifetime
        nodes = []
        for producer in self._active(db.find_producers(*CLIENT), 0):
            info = producer.peer_info
            topics = [r.key for r in db.lookup_registrations(info.id) if r.category == "topic" and not r.subkey]
            tombstones = []
            for topic in topics:
                record = db.producer(topic_registration(topic), info.id)
                tombstones.append(record is not None and db.is_tombstoned(record, lifetime))
            node = info.document()
            node.update(tombstones=tombstones, topics=topics)
            nodes.append(node)
        return {"producers": nodes}

    # -- changing

    @app.route("/topic/create", methods=["POST"])
    @v1
    @logged
    def create_topic(self, request):
        topic = Params(request).topic_name("INVALID_ARG_TOPIC")
        log.info("DB: adding topic({topic})", topic=topic)
        self.db.add_registration(topic_registration(topic))

    @app.route("/topic/delete", methods=["POST"])
    @v1
    @logged
    def delete_topic(self, request):
        """The topic and its channels, whoever produces them."""
        topic = Params(request).require("topic", "MISSING_ARG_TOPIC")
        db = self.db
        for registration in db.find_registrations("channel", topic, "*"):
            log.info("DB: removing channel({channel}) from topic({topic})", channel=registration.subkey, topic=topic)
            db.remove_registration(registration)
        for registration in db.find_registrations("topic", topic, ""):
            log.info("DB: removing topic({topic})", topic=topic)
            db.remove_registration(registration)

    @app.route("/topic/tombstone", methods=["POST"])
    @v1
    @logged
    def tombstone_topic_producer(self, request):
        """The node (its "broadcast_address:http_port") is left out of the topic's /lookup for
        --tombstone-lifetime, so that consumers stop connecting to it while it deletes the topic."""
        params = Params(request)
        topic = params.require("topic", "MISSING_ARG_TOPIC")
        node = params.require("node", "MISSING_ARG_NODE")
        log.info("DB: setting tombstone for producer@{node} of topic({topic})", node=node, topic=topic)
        for producer in self.db.find_producers("topic", topic, ""):
            info = producer.peer_info
            if "%s:%d" % (info.broadcast_address, info.http_port) == node:
                self.db.tombstone(producer)

    @app.route("/channel/create", methods=["POST"])
    @v1
    @logged
    def create_channel(self, request):
        topic, channel = Params(request).topic_and_channel_names()
        db = self.db
        log.info("DB: adding channel({channel}) in topic({topic})", channel=channel, topic=topic)
        db.add_registration(channel_registration(topic, channel))
        log.info("DB: adding topic({topic})", topic=topic)
        db.add_registration(topic_registration(topic))

    @app.route("/channel/delete", methods=["POST"])
    @v1
    @logged
    def delete_channel(self, request):
        topic, channel = Params(request).topic_and_channel_names()
        registrations = self.db.find_registrations("channel", topic, channel)
        if not registrations:
            raise HTTPError(404, "CHANNEL_NOT_FOUND")
        log.info("DB: removing channel({channel}) from topic({topic})", channel=channel, topic=topic)
        for registration in registrations:
            self.db.remove_registration(registration)


def make_site(lookupd) -> NSQSite:
    """The HTTP listener's factory: no route reads a body, so none is stored (Go reads and drops it)."""
    return NSQSite(HTTPAPI(lookupd), lookupd.reactor, 0)
